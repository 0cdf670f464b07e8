"""Feeds: text, CSV, JSON, STIX 2.1, MISP and TAXII 2.1, with their bad input."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mailward.intel.feeds import FeedError, parse_csv, parse_json, parse_text, read_feed
from mailward.trap.intake import poll_taxii
from tests.support.dnsserver import free_port

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def stix_indicator(number: int, pattern: str, **extra) -> dict:
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--00000000-0000-4000-8000-{number:012d}",
            "created": "2026-12-01T10:00:00.000Z", "modified": "2026-12-01T10:00:00.000Z",
            "pattern": pattern, "pattern_type": "stix", "valid_from": "2026-12-01T10:00:00Z",
            **extra}


def bundle(*objects) -> dict:
    return {"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000001",
            "objects": list(objects)}


def test_text_lines_are_typed_by_shape_and_bad_lines_reported():
    feed = parse_text("# feed\nhttps://evil.example/a\nevil.example\n203.0.113.0/24\n"
                      "@bad.example\nceo@bad.example\n" + SHA + "\nlocalhost\n"
                      "two words here\nhttps://evil.example/a\n", "t")
    assert [(i.kind, i.value) for i in feed.indicators] == [
        ("url", "https://evil.example/a"), ("domain", "evil.example"), ("ip", "203.0.113.0/24"),
        ("sender_domain", "bad.example"), ("sender", "ceo@bad.example"), ("sha256", SHA)]
    assert feed.duplicates == 1
    assert len(feed.errors) == 2 and "line 8" in feed.errors[0] and "line 9" in feed.errors[1]


def test_csv_with_header_expired_and_malformed_rows():
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    feed = parse_csv("type,value,category,confidence,expires\n"
                     f"url,https://a.example/x,phish,80,\n"
                     f"domain,old.example,spam,50,{past}\n"
                     f"sha256,not-a-hash,malware,,\n"
                     f"domain,b.example,nonsense,,\n"
                     f"domain,c.example,phish,high,\n"
                     f"domain,d.example,phish,1,,extra\n", "c")
    assert [(i.kind, i.value, i.confidence) for i in feed.indicators] == [
        ("url", "https://a.example/x", 80)]
    assert feed.expired == 1
    assert len(feed.errors) == 4


def test_json_list_and_rejects_other_shapes():
    feed = parse_json({"indicators": [{"type": "domain", "value": "x.example"}, "y.example",
                                      42, {"value": ""}]}, "j")
    assert [i.value for i in feed.indicators] == ["x.example", "y.example"]
    assert len(feed.errors) == 2
    with pytest.raises(FeedError, match="expected a list"):
        parse_json({"what": 1}, "j")


def test_stix_bundle_keeps_indicators_and_counts_unknown_types():
    later = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = bundle(
        stix_indicator(1, "[url:value = 'https://kit.example/login']",
                       indicator_types=["malicious-activity"], name="kit", valid_until=later),
        stix_indicator(2, f"[file:hashes.'SHA-256' = '{SHA}']",
                       indicator_types=["malicious-activity"]),
        stix_indicator(3, "[domain-name:value = 'phish.example' OR "
                          "ipv4-addr:value = '198.51.100.7']", labels=["phishing"]),
        stix_indicator(4, "[url:value = 'https://old.example/']",
                       valid_until="2026-12-01T11:00:00Z"),
        stix_indicator(5, "[url:value = 'https://revoked.example/']", revoked=True),
        stix_indicator(6, "this is not a pattern"),
        stix_indicator(7, "[process:name = 'evil.exe']"),
        {"type": "x-vendor-thing", "id": "x-vendor-thing--1", "anything": True},
        {"type": "malware", "spec_version": "2.1", "id": "malware--1", "name": "m"},
        "not even an object")
    feed = parse_json(data, "stix-feed")
    got = {(i.kind, i.value, i.category) for i in feed.indicators}
    assert got == {("url", "https://kit.example/login", "phish"),
                   ("sha256", SHA, "malware"),
                   ("domain", "phish.example", "phish"), ("ip", "198.51.100.7", "phish")}
    expiring = next(i for i in feed.indicators if i.kind == "url")
    assert expiring.expires_at is not None
    assert feed.expired == 1 and feed.skipped["revoked"] == 1
    assert feed.skipped["STIX x-vendor-thing"] == 1 and feed.skipped["STIX malware"] == 1
    assert feed.skipped["pattern without a supported comparison"] == 1
    assert len(feed.errors) == 2  # the bad pattern, the string


def test_misp_event_export_to_ids_attributes(tmp_path):
    event = {"Event": {"info": "campaign", "uuid": "5f0c1c1e-0000-4000-8000-000000000001",
                       "Attribute": [
                           {"type": "url", "value": "https://misp-kit.example/a",
                            "to_ids": True, "category": "Network activity"},
                           {"type": "filename|sha256", "value": f"invoice.exe|{SHA}",
                            "to_ids": True, "category": "Payload delivery"},
                           {"type": "comment", "value": "hello", "to_ids": False},
                           {"type": "domain", "value": "context-only.example",
                            "to_ids": False}]}}
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    feed = read_feed(path)
    assert {(i.kind, i.value) for i in feed.indicators} == {
        ("url", "https://misp-kit.example/a"), ("sha256", SHA)}
    assert feed.skipped["MISP not for detection"] == 2


def test_a_feed_that_is_not_json_or_too_big_is_one_clear_error(tmp_path):
    path = tmp_path / "feed.json"
    path.write_text("{not json")
    with pytest.raises(FeedError, match="not valid JSON"):
        read_feed(path)
    with pytest.raises(FeedError, match="No such file"):
        read_feed(tmp_path / "missing.txt")


class TaxiiServer:
    """A TAXII 2.1 collection: two pages of objects, filtered by added_after."""

    MEDIA = "application/taxii+json;version=2.1"

    def __init__(self, objects: list[tuple[str, dict]]) -> None:
        self.port = free_port()
        self.objects = objects  # (date_added, object)
        self.queries: list[dict] = []
        app = FastAPI()
        server = self

        @app.get("/api1/collections/c1/")
        async def collection(request: Request):
            if request.headers.get("authorization", "") == "":
                return JSONResponse({"title": "auth"}, status_code=401, media_type=self.MEDIA)
            return JSONResponse({"id": "c1", "title": "phish", "can_read": True,
                                 "can_write": False, "media_types": [self.MEDIA]},
                                media_type=self.MEDIA)

        @app.get("/api1/collections/c1/objects/")
        async def objects(request: Request):
            query = dict(request.query_params)
            server.queries.append(query)
            after = query.get("added_after", "")
            items = [o for added, o in server.objects if added > after]
            start = int(query.get("next", 0) or 0)
            page = items[start:start + 2]
            more = start + 2 < len(items)
            body = {"objects": page, "more": more}
            if more:
                body["next"] = str(start + 2)
            return JSONResponse(body, media_type=self.MEDIA)

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))

    def __enter__(self) -> "TaxiiServer":
        threading.Thread(target=self.server.run, daemon=True).start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True


def test_taxii_collection_is_polled_page_by_page_from_the_cursor():
    objects = [("2026-12-01T10:00:00Z", stix_indicator(n, f"[domain-name:value = 'd{n}.example']"))
               for n in range(1, 4)]
    objects.append(("2026-12-01T10:00:00Z", {"type": "identity", "id": "identity--1",
                                             "name": "feed", "spec_version": "2.1"}))
    with TaxiiServer(objects) as server:
        url = f"http://127.0.0.1:{server.port}/api1/collections/c1/"
        feed, cursor = poll_taxii(url, "reader", "secret", "", "taxii-1", None)
        assert sorted(i.value for i in feed.indicators) == ["d1.example", "d2.example",
                                                            "d3.example"]
        assert feed.skipped == {"STIX identity": 1}
        assert len(server.queries) == 2 and server.queries[1]["next"] == "2"
        feed, _ = poll_taxii(url, "reader", "secret", cursor, "taxii-1", None)
        assert feed.indicators == []
        assert server.queries[-1]["added_after"] == cursor


def misp_attribute(kind: str, value: str, to_ids: bool = True) -> dict:
    return {"type": kind, "value": value, "to_ids": to_ids, "category": "Network activity",
            "event_id": "1", "uuid": "5f0c1c1e-0000-4000-8000-00000000000a"}


def test_misp_is_polled_over_its_rest_api_from_the_cursor():
    from mailward.trap.intake import poll_misp
    from tests.support.mispserver import MispServer

    with MispServer("automation-key") as server:
        server.events.append((time.time() - 3 * 86400, [
            misp_attribute("url", "https://misp-kit.example/a"),
            misp_attribute("filename|sha256", f"invoice.exe|{SHA}"),
            misp_attribute("domain", "context-only.example", to_ids=False)]))
        server.events.append((time.time() - 30 * 86400, [
            misp_attribute("domain", "old-event.example")]))
        feed, cursor = poll_misp(server.url, "automation-key", "", "misp")
        assert {(i.kind, i.value) for i in feed.indicators} == {
            ("url", "https://misp-kit.example/a"), ("sha256", SHA)}
        first = server.searches[0]
        assert first["to_ids"] in (1, True) and first["publish_timestamp"] == "14d"

        # The next poll asks only for what was published since the cursor.
        feed, _ = poll_misp(server.url, "automation-key", cursor, "misp")
        assert feed.indicators == [] and server.searches[-1]["publish_timestamp"] == cursor
        server.events.append((time.time() + 1, [misp_attribute("ip-dst", "198.51.100.9")]))
        feed, _ = poll_misp(server.url, "automation-key", cursor, "misp")
        assert [(i.kind, i.value) for i in feed.indicators] == [("ip", "198.51.100.9")]

        # A refused search is an error, never an empty answer that moves the cursor.
        server.refuse_search = True
        with pytest.raises(FeedError, match="MISP search failed: 405"):
            poll_misp(server.url, "automation-key", cursor, "misp")
        with pytest.raises(Exception, match="(?i)authentication failed|user settings"):
            poll_misp(server.url, "wrong-key", cursor, "misp")

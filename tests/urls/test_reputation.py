"""Reputation: the intelligence and the heuristics judge the URLs before delivery."""

from __future__ import annotations

import json

import pytest

from mailward.config import load_settings
from mailward.envelope import Envelope, new_queue_id
from mailward.gateway import Gateway
from mailward.intel.store import NewIndicator
from mailward.verdict import Action
from tests.urls import builders as b


@pytest.fixture
async def gateway(tmp_path, database_url):
    settings = load_settings(overrides={
        "storage.data_dir": str(tmp_path / "data"), "storage.database_url": database_url,
        "urls.protected_domains": ["bank.example"], "urls.new_domain_warmup": 3})
    gateway = Gateway(settings)
    await gateway.start()
    yield gateway
    await gateway.close()


async def judge(gateway: Gateway, raw: bytes):
    envelope = Envelope(queue_id=new_queue_id(), mail_from="dana@example.org",
                        rcpt_to=["user@example.com"], peer_ip="192.0.2.9")
    message, verdict, task = await gateway.judge(envelope, raw)
    return {f.symbol: f for f in verdict.findings}, verdict


def html(body: str) -> bytes:
    return b.message(b.text_part(body, "text/html"))


async def test_homoglyph_lookalike_of_a_protected_domain(gateway, shared):
    found, verdict = await judge(gateway, (shared / "cases/C24_url_homoglyph_idn.eml").read_bytes())
    lookalike = found["URL_LOOKALIKE"]
    assert set(lookalike.data["urls"]) == {"https://xn--bnk-6cd.example/login",
                                           "https://xn--bnk-6cd.example/reset"}
    assert "bank.example" in lookalike.detail
    assert set(found["URL_MIXED_SCRIPT"].data["urls"]) == set(lookalike.data["urls"])
    assert found["URL_ANCHOR_MISMATCH"].data["urls"] == ["https://xn--bnk-6cd.example/login"]
    assert "bank.example" in found["URL_ANCHOR_MISMATCH"].detail
    for symbol in ("URL_LOOKALIKE", "URL_MIXED_SCRIPT", "URL_ANCHOR_MISMATCH"):
        assert "https://xn--bcher-kva.example/" not in found[symbol].data["urls"]
    assert verdict.action in (Action.QUARANTINE, Action.TAG)


async def test_links_to_the_gateways_own_web_service_are_not_judged(gateway):
    # A forwarded or reported copy carries our click and report links; on an
    # IP host (the default public URL) they must not read as the sender's.
    base = gateway.settings.public_url
    assert base.startswith("http://127.0.0.1:")
    body = (f'<a href="{base}/u/1.1.QID.TOKEN.SIG?u=http://10.9.8.7/login">a</a> '
            f'<a href="{base}/report/QID.TOKEN.SIG">report</a> '
            '<a href="http://127.0.0.2:8025/u/1.1.QID.TOKEN.SIG?u=https://ok.example/">b</a>')
    found, _ = await judge(gateway, html(body))
    # The wrapped link is judged; the look-alike wrapper on another host is too.
    assert found["URL_IP_HOST"].data["urls"] == ["http://10.9.8.7/login",
                                                 "http://127.0.0.2:8025/u/1.1.QID.TOKEN.SIG"
                                                 "?u=https://ok.example/"]


async def test_form_heuristics(gateway):
    body = ('<a href="http://3232235777/login">a</a> <a href="https://paypal.com@evil.example.net/">'
            'b</a> <a href="https://bit.ly/3xYz">c</a> <a href="https://steal.netlify.app/">d</a>'
            ' <a href="https://docs.google.com/forms/d/e/1/viewform">e</a> '
            '<a href="https://a.b.c.d.e.f.example.net/">f</a> '
            f'<a href="https://long.example.net/{"x" * 600}">g</a> '
            '<a href="https://paypa1.com/signin">PayPal</a> '
            '<a href="https://microsoft-login.example.net/">m</a> '
            '<a href="javascript:steal()">j</a> <iframe src="data:text/html,<p>x"></iframe>')
    found, _ = await judge(gateway, html(body))
    assert found["URL_IP_HOST"].data["urls"] == ["http://192.168.1.1/login"]
    assert found["URL_IP_OBFUSCATED"].data["urls"] == ["http://192.168.1.1/login"]
    assert found["URL_USERINFO"].data["urls"] == ["https://evil.example.net/"]
    assert found["URL_SHORTENER"].data["urls"] == ["https://bit.ly/3xYz"]
    assert found["URL_FREE_HOSTING"].data["urls"] == ["https://steal.netlify.app/"]
    assert found["URL_FORM_SERVICE"].data["urls"] == ["https://docs.google.com/forms/d/e/1/viewform"]
    assert found["URL_MANY_SUBDOMAINS"].data["urls"] == ["https://a.b.c.d.e.f.example.net/"]
    assert len(found["URL_LONG"].data["urls"]) == 1
    assert found["URL_LOOKALIKE"].data["urls"] == ["https://paypa1.com/signin"]
    assert "paypal.com" in found["URL_LOOKALIKE"].detail
    assert found["URL_BRAND_IN_HOST"].data["urls"] == ["https://microsoft-login.example.net/"]
    assert "URL_SCRIPT_URI" in found and "URL_DATA_URI" in found


async def test_brand_domains_and_plain_links_are_quiet(gateway):
    body = ('<a href="https://www.paypal.com/signin">https://www.paypal.com/signin</a> '
            '<a href="https://login.microsoftonline.com/">Microsoft</a> '
            '<a href="https://news.example.org/story">read the story</a>')
    found, verdict = await judge(gateway, html(body))
    assert not [s for s in found if s.startswith("URL_")]


async def test_qr_code_link_is_a_finding(gateway):
    raw = b.message(b.text_part("scan to keep your mailbox"),
                    b.attachment("scan.png", "image/png", b.qr_png("https://qr.example.net/k")))
    found, _ = await judge(gateway, raw)
    assert found["URL_QR_CODE"].data["urls"] == ["https://qr.example.net/k"]


async def test_corpus_feeds_make_the_message_phish_and_quarantined(gateway, shared):
    feeds = shared / "corpus/urls/malicious"
    phish = json.loads((feeds / "openphish-archive_2025-01-01_to_2025-01-18.json").read_text())
    hosts = [line.strip() for line in
             (feeds / "urlhaus-filter-domains-online_2022-03-14.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    ips = [h for h in hosts if h.replace(".", "").isdigit()]
    names = [h for h in hosts if h not in ips]
    items = [NewIndicator("url", url, "openphish") for url in list(phish)[:3000]]
    items += [NewIndicator("domain", name, "urlhaus", "malware") for name in names[:2000]]
    items += [NewIndicator("ip", ip, "urlhaus", "malware") for ip in ips[:500]]
    await gateway.services.intel.add_many(items)
    await gateway.services.intel_cache.refresh(force=True)
    listed_url = list(phish)[10]
    found, verdict = await judge(gateway, b.message(b.text_part(f"Sign in: {listed_url}")))
    assert found["URL_BLOCKLISTED"].data["source"] == "openphish"
    assert verdict.action == Action.QUARANTINE and verdict.category == "phish"
    found, verdict = await judge(gateway, html(f'<a href="http://cdn.{names[5]}/x.exe">x</a>'))
    assert found["URL_DOMAIN_BLOCKLISTED"].category == "malware"
    assert verdict.action == Action.QUARANTINE
    found, _ = await judge(gateway, b.message(b.text_part(f"get http://{ips[0]}/bin.sh now")))
    assert found["URL_IP_BLOCKLISTED"].data["indicator"] == ips[0]


async def test_never_seen_domain_after_warm_up(gateway):
    known = " ".join(f"https://www.known{i}.org/" for i in range(3))
    envelope = Envelope(queue_id=new_queue_id(), mail_from="dana@example.org",
                        rcpt_to=["user@example.com"])
    found, _ = await judge(gateway, b.message(b.text_part(known)))
    assert "URL_NEW_DOMAIN" not in found  # warm-up: nothing seen yet
    reply = await gateway.receive(envelope, b.message(b.text_part(known)))
    assert reply.code == 250
    found, _ = await judge(gateway, b.message(b.text_part("https://mail.known1.org/x")))
    assert "URL_NEW_DOMAIN" not in found
    found, _ = await judge(gateway, b.message(b.text_part("https://fresh.example.net/x")))
    assert found["URL_NEW_DOMAIN"].data["urls"] == ["https://fresh.example.net/x"]


def test_lists_file_replaces_brands(tmp_path):
    from mailward.urls.heuristics import Protected, load_lists

    site = tmp_path / "lists.toml"
    site.write_text('[brands.acme]\ndomains = ["acme-corp.com"]\n'
                    '[services]\nshorteners = ["sho.rt"]\n')
    lists = load_lists(str(site))
    assert lists.shorteners == ("sho.rt",) and lists.free_hosting  # others kept
    protected = Protected([], lists)
    assert protected.lookalike("acme-c0rp.com").target == "acme-corp.com"
    assert protected.lookalike("paypa1.com") is None  # shipped brands replaced
    bad = tmp_path / "bad.toml"
    bad.write_text("[brands.x]\ndomains = 3\n")
    from mailward.config import ConfigError

    with pytest.raises(ConfigError, match="brands.x.domains"):
        load_lists(str(bad))


def test_one_letter_lookalikes_keep_the_first_letter():
    from mailward.urls.heuristics import Protected, load_lists

    protected = Protected(["windows.net"], load_lists(None))
    for host in ("windws.net", "wimdows.com", "wnidows.org", "windowss.net", "www.wind0ws.net"):
        assert protected.lookalike(host).target == "windows.net", host
    # Another first letter makes another word, not a disguise.
    for host in ("lindows.com", "www.lindows.com", "cf.bstatic.com"):
        assert protected.lookalike(host) is None, host


def _first_matching_service(host: str, path: str, entries: tuple[str, ...]) -> str | None:
    """The plain form of the service match: each entry in order."""
    host = host.lower()
    for entry in entries:
        entry_host, slash, prefix = entry.partition("/")
        if host == entry_host or host.endswith("." + entry_host):
            if not slash or path.lower().startswith("/" + prefix):
                return entry
    return None


def test_service_lists_match_the_first_entry_in_order(shared):
    import random

    from mailward.message import Message
    from mailward.urls.heuristics import load_lists, matches_service
    from mailward.urls.normalize import parse_url

    lists = load_lists()
    made_up = ("docs.google.com/forms", "google.com", "b.c/x", "a.b.c", "b.c", "c", "",
               "/only-path", "x.y/", "Mixed.Case", "b.c/X")
    hosts = {"docs.google.com", "sites.google.com", "a.b.c", "x.a.b.c", "b.c", "c", "",
             "bit.ly", "evil-bit.ly", "a.bit.ly", "forms.gle.", "mixed.case", "x.mixed.case"}
    for folder in ("corpus/phishing", "corpus/spam/spam"):
        for path in sorted((shared / folder).iterdir())[:150]:
            for url in Message(path.read_bytes()).urls:
                parsed = parse_url(url.url)
                if parsed is not None:
                    hosts.add(parsed.host)
    rng = random.Random(5)
    paths = ["", "/", "/forms", "/Forms/d/1", "/x", "/X/y", "/only-path/a", "/formsx"]
    hits = 0
    for host in sorted(hosts):
        for entries in (lists.shorteners, lists.free_hosting, lists.form_services, made_up,
                        tuple(rng.sample(made_up, 6))):
            for url_path in paths:
                expected = _first_matching_service(host, url_path, entries)
                assert matches_service(host, url_path, entries) == expected, (host, url_path)
                hits += expected is not None
    assert len(hosts) > 100 and hits > 50

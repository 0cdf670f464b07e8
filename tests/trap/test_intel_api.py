"""The intelligence API refuses indicators that cannot be meant and removes one by name."""

from __future__ import annotations

import httpx


def call(gateway, token: str, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{gateway.web_url}{path}", timeout=30,
                         headers={"Authorization": f"Bearer {token}"}, **kwargs)


def test_api_refuses_suffixes_and_own_domains_and_removes_an_indicator(gateway_factory):
    gateway = gateway_factory({"smtp": {"accepted_domains": ["example.com"]}})
    token = gateway.token()
    added = call(gateway, token, "POST", "/api/v1/trap/indicators", json={"indicators": [
        {"type": "domain", "value": "co.uk"}, {"type": "domain", "value": "example.com"},
        {"type": "domain", "value": "evil.example.org"}]})
    assert added.status_code == 200, added.text
    report = added.json()
    assert report["added"] == 1
    reasons = {r["indicator"]: r["reason"] for r in report["refused"]}
    assert "public suffix" in reasons["domain:co.uk"]
    assert "smtp.accepted_domains" in reasons["domain:example.com"]
    forced = call(gateway, token, "POST", "/api/v1/trap/indicators", json={
        "indicators": [{"type": "domain", "value": "co.uk"},
                       {"type": "domain", "value": "example.com"}], "force": True}).json()
    assert forced["added"] == 1 and [r["indicator"] for r in forced["refused"]] == [
        "domain:co.uk"]

    path = "/api/v1/trap/indicators"
    reader = gateway.cli("token", "create", "reader", "--scope", "trap:read"
                         ).stdout.decode().strip()
    query = {"type": "domain", "value": "Evil.Example.org"}
    assert httpx.delete(f"{gateway.web_url}{path}", params=query).status_code == 401
    assert call(gateway, reader, "DELETE", path, params=query).status_code == 403
    bad = call(gateway, token, "DELETE", path, params={"type": "domain", "value": "a b"})
    assert bad.status_code == 422 and "not a valid domain" in bad.json()["detail"]
    assert call(gateway, token, "DELETE", path,
                params={"type": "nosuch", "value": "x"}).status_code == 422
    removed = call(gateway, token, "DELETE", path, params=query)
    assert removed.status_code == 200, removed.text
    assert removed.json() == {"type": "domain", "value": "evil.example.org", "removed": 1}
    again = call(gateway, token, "DELETE", path, params=query)
    assert again.status_code == 404 and "no domain indicator" in again.json()["detail"]
    listed = gateway.cli("intel", "list").stdout.decode()
    assert "evil.example.org" not in listed and "\texample.com\t" in listed
    audit = call(gateway, token, "GET", "/api/v1/audit",
                 params={"action": "intel.remove"}).json()
    assert [item["target"] for item in audit["items"]] == ["domain:evil.example.org"]

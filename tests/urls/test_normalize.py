"""Normalisation reads a URL as a browser opens it, not as urllib parses it."""

from __future__ import annotations

import pytest

from mailward.urls.normalize import host_to_ascii, normalize_url, parse_url, trim_trailing


@pytest.mark.parametrize("written, canonical", [
    ("HTTPS://Example.COM:443/a/../b?x=1#frag", "https://example.com/b?x=1"),
    ("http:\\\\evil.example.net\\path\\x", "http://evil.example.net/path/x"),
    ("https://evil%2Eexample%2Enet/", "https://evil.example.net/"),
    ("http://3232235777/", "http://192.168.1.1/"),
    ("http://0300.0250.0001.0001/", "http://192.168.1.1/"),
    ("http://0xC0A80101/", "http://192.168.1.1/"),
    ("http://0xc0.168.1.1/", "http://192.168.1.1/"),
    ("https://bаnk.example/login", "https://xn--bnk-6cd.example/login"),
    ("https://b\u200bank\u200d.example/", "https://bank.example/"),
    ("//cdn.example.net/track", "https://cdn.example.net/track"),
    ("www.example.org/x", "http://www.example.org/x"),
    ("https://paypal.com@evil.example.net/", "https://evil.example.net/"),
    ("https://example.com./a", "https://example.com/a"),
])
def test_browser_reading(written, canonical):
    assert normalize_url(written) == canonical


def test_what_was_hidden_is_kept_as_evidence():
    parsed = parse_url("https://paypal.com:secure@0x7f.1/x")
    assert parsed.userinfo == "paypal.com:secure" and parsed.host == "127.0.0.1"
    assert parsed.ip_host and parsed.ip_obfuscated
    assert not parse_url("http://127.0.0.1/").ip_obfuscated
    assert parse_url("https://xn--bnk-6cd.example/").punycode


@pytest.mark.parametrize("written", ["mailto:a@example.org", "javascript:alert(1)",
                                     "ftp://example.org/", "http://", "https://exa mple.org/",
                                     "http://[::1/", "", "x" * 20000])
def test_not_a_web_url_is_none(written):
    assert normalize_url(written) is None


def test_trailing_punctuation_and_balanced_brackets():
    assert trim_trailing("https://a.example/x).") == "https://a.example/x"
    assert trim_trailing("https://a.example/wiki/Foo_(bar)") == "https://a.example/wiki/Foo_(bar)"
    assert trim_trailing('https://a.example/x",') == "https://a.example/x"


def test_hosts_as_a_labels():
    assert host_to_ascii("Bücher.Example.") == "xn--bcher-kva.example"
    assert host_to_ascii("") is None

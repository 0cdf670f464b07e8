"""Authentication-Results: forged ones removed byte-exactly, ours composed."""

from __future__ import annotations

from mailward.auth.results import claimed_id, header_value, method_result, strip_forged


def test_forged_results_claiming_our_id_are_removed():
    raw = (b"Received: from x\r\nAuthentication-Results: MX.Example.COM (ours);\r\n"
           b" dkim=pass header.d=example.com\r\nAuthentication-Results: other.example; "
           b"spf=pass\r\nSubject: s\r\n\r\nAuthentication-Results: mx.example.com; body\r\n")
    cleaned, removed = strip_forged(raw, "mx.example.com")
    assert removed == 1
    assert cleaned == (b"Received: from x\r\nAuthentication-Results: other.example; "
                       b"spf=pass\r\nSubject: s\r\n\r\nAuthentication-Results: "
                       b"mx.example.com; body\r\n")
    assert strip_forged(b"Subject: x\r\n\r\nbody", "mx.example.com") == (
        b"Subject: x\r\n\r\nbody", 0)


def test_bare_line_feeds_do_not_hide_a_forged_result():
    raw = (b"Subject: q\nAuthentication-Results: mx.example.com; dkim=pass\r\n"
           b"Date: now\r\n\r\nbody\r\n")
    cleaned, removed = strip_forged(raw, "mx.example.com")
    assert removed == 1 and b"dkim=pass" not in cleaned and cleaned.endswith(b"body\r\n")


def test_claimed_id_ignores_comments_and_versions():
    assert claimed_id(b" (c) mx.example.com 1; spf=pass") == "mx.example.com"
    assert claimed_id(b"") == ""


def test_header_composition():
    value = header_value("mx.example.com", [method_result(
        "spf", "pass", "matched (ip4)", [("smtp.mailfrom", "a b@example.com")])])
    assert value == 'mx.example.com; spf=pass (matched ip4) smtp.mailfrom="a b@example.com"'
    assert header_value("mx.example.com", []) == "mx.example.com; none"


def test_the_quick_check_changes_nothing_whatever_the_line_ends(shared):
    import random

    from mailward.auth.results import strip_forged_fields

    pieces = [b"Authentication-Results: mx.example.com; spf=pass", b"authentication-RESULTS :x",
              b"Authentication-Results: other.example; dkim=pass", b"Subject: s", b"X: y",
              b" folded", b"\tmx.example.com;", b"\r\n", b"\n", b"\r", b"\r\n\r\n", b"\n\r",
              b"\r\r", b"", b"body", b":", b"Authentication-",
              b"Authentication-Results: \xe2\x84\xaa.example; x=y",  # Kelvin sign: k
              b"MX.EXAMPLE.COM", b"k.example", b"(comment) ", b"\xc3\xa9"]
    rng = random.Random(3)
    removed = 0
    for _ in range(20_000):
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        for own in ("mx.example.com", "k.example"):
            expected = strip_forged_fields(raw, own)
            assert strip_forged(raw, own) == expected, raw
            removed += expected[1]
    for path in sorted((shared / "corpus" / "phishing").iterdir())[:200]:
        raw = path.read_bytes()
        for own in ("mx.example.com", claimed_id(raw.split(b"uthentication-Results:", 1)[-1])):
            assert strip_forged(raw, own) == strip_forged_fields(raw, own)
    assert removed > 1000

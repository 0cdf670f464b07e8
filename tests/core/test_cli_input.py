"""Bad input to CLI commands is refused in one line that names what to fix."""

from __future__ import annotations


def refused(gateway, *args: str, input: bytes | None = None, code: int = 2) -> str:
    """refused - run the command; assert it exits code; its stderr as text."""
    result = gateway.cli(*args, check=False, input=input)
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == code, (args, out, err)
    assert "Traceback" not in err
    return err


def test_quarantine_list_refuses_a_bad_limit_and_an_unknown_category(gateway_factory):
    gateway = gateway_factory(start=False)
    gateway.cli("db", "upgrade")
    for limit in ("-1", "0"):
        assert "--limit" in refused(gateway, "quarantine", "list", "--limit", limit)
    err = refused(gateway, "quarantine", "list", "--category", "nosuch")
    assert "'nosuch' is not one of" in err and "'phish'" in err and "'policy'" in err
    assert gateway.cli("quarantine", "list", "--category", "phish").returncode == 0
    assert "--limit" in refused(gateway, "intel", "list", "--limit", "-1")


def test_token_create_refuses_a_scope_nothing_asks_for(gateway_factory):
    gateway = gateway_factory(start=False)
    gateway.cli("db", "upgrade")
    err = refused(gateway, "token", "create", "x", "--scope", "bogus:scope")
    assert "unknown scope 'bogus:scope'" in err and "quarantine:read" in err
    err = refused(gateway, "token", "create", "y", "--scope", "users:*", "--scope", "nosuch:*")
    assert "unknown scope 'nosuch:*'" in err
    assert gateway.cli("token", "list").stdout == b""
    for scopes in (["quarantine:read"], ["trap:*"], ["*"], ["account"]):
        args = [arg for scope in scopes for arg in ("--scope", scope)]
        assert gateway.cli("token", "create", "ok", *args).stdout.startswith(b"mw_")


def test_every_scope_the_code_asks_for_is_a_known_one():
    import re
    from pathlib import Path

    import mailward
    from mailward.web.tokens import SCOPES, check_scopes

    root = Path(mailward.__file__).parent
    asked = set()
    for path in [*root.rglob("*.py"), *root.rglob("*.html")]:
        text = path.read_text(encoding="utf-8")
        asked |= set(re.findall(r"""(?:require|allows|need\(principal, request,)\s*\(?\s*"""
                                r"""["']([a-z_]+(?::[a-z_*]+)?)["']""", text))
    assert asked and asked <= set(SCOPES), asked - set(SCOPES)
    assert check_scopes(list(SCOPES)) == list(SCOPES)


def test_spf_check_refuses_a_bad_ip_and_a_missing_identity(gateway_factory, tmp_path):
    gateway = gateway_factory(start=False)
    zone = tmp_path / "spf.zone"
    zone.write_text("$ORIGIN example.org.\n@ 300 IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n")
    err = refused(gateway, "spf", "check", "--ip", "notanip", "--mail-from", "a@example.org",
                  "--zone", str(zone))
    assert "'notanip' is not an IP address" in err
    err = refused(gateway, "spf", "check", "--ip", "1.2.3.4", "--zone", str(zone))
    assert "--mail-from" in err and "--helo" in err
    answer = gateway.cli("spf", "check", "--ip", "192.0.2.7", "--mail-from",
                         "a@example.org", "--zone", str(zone)).stdout.decode()
    assert answer.splitlines()[0] == "pass"
    answer = gateway.cli("spf", "check", "--ip", "[2001:db8::1]", "--helo", "example.org",
                         "--zone", str(zone)).stdout.decode()
    assert answer.splitlines()[0] == "fail"


def test_user_add_and_passwd_refuse_a_short_password_from_stdin(gateway_factory):
    gateway = gateway_factory(start=False)
    gateway.cli("db", "upgrade")
    for password in (b"", b"\n", b"short\n"):
        err = refused(gateway, "user", "add", "empty", "--password-stdin", input=password)
        assert "--password-stdin" in err and "at least 10" in err
    assert b"empty" not in gateway.cli("user", "list").stdout
    gateway.cli("user", "add", "alice", "--password-stdin", input=b"a long enough one\n")
    err = refused(gateway, "user", "passwd", "alice", "--password-stdin", input=b"\n")
    assert "at least 10" in err


def test_intel_add_refuses_public_suffixes_and_our_own_domains(gateway_factory):
    gateway = gateway_factory({"smtp": {"accepted_domains": ["example.com",
                                                            "mail.example.net"]}},
                              start=False)
    gateway.cli("db", "upgrade")
    for suffix in ("com", "co.uk", "github.io"):
        for force in ([], ["--force"]):
            err = refused(gateway, "intel", "add", "--type", "domain", suffix, *force,
                          code=3)
            assert f"{suffix} is a public suffix" in err, err
    err = refused(gateway, "intel", "add", "--type", "sender_domain", "COM.", code=3)
    assert "com is a public suffix" in err
    for own in ("example.com", "example.net"):
        err = refused(gateway, "intel", "add", "--type", "domain", own, code=3)
        assert "smtp.accepted_domains" in err and "--force" in err
    assert gateway.cli("intel", "list").stdout == b""
    gateway.cli("intel", "add", "--type", "domain", "example.com", "--force")
    gateway.cli("intel", "add", "--type", "domain", "evil.example.org")
    listed = gateway.cli("intel", "list").stdout.decode()
    assert "\texample.com\t" in listed and "evil.example.org" in listed


def test_intel_remove_removes_one_indicator_and_is_audited(gateway_factory):
    gateway = gateway_factory(start=False)
    gateway.cli("db", "upgrade")
    gateway.cli("intel", "add", "--type", "domain", "evil.example.org")
    gateway.cli("intel", "add", "--type", "domain", "other.example.org")
    out = gateway.cli("intel", "remove", "--type", "domain", "Evil.Example.org.")
    assert out.stdout.decode().strip() == "removed domain evil.example.org"
    listed = gateway.cli("intel", "list").stdout.decode()
    assert "evil.example.org" not in listed and "other.example.org" in listed
    err = refused(gateway, "intel", "remove", "--type", "domain", "evil.example.org", code=1)
    assert "no domain indicator evil.example.org" in err
    assert "not a valid domain" in refused(gateway, "intel", "remove", "--type", "domain",
                                           "not a domain")
    gateway.cli("intel", "add", "--type", "ip", "192.0.2.9", "--source", "feed-a")
    refused(gateway, "intel", "remove", "--type", "ip", "192.0.2.9", "--source", "feed-b",
            code=1)
    gateway.cli("intel", "remove", "--type", "ip", "192.0.2.9", "--source", "feed-a")
    assert "192.0.2.9" not in gateway.cli("intel", "list").stdout.decode()

    import asyncio

    from sqlalchemy import select

    from mailward.config import load_settings
    from mailward.store import Store
    from mailward.store.models import AuditEntry

    async def actions() -> list[tuple[str, str]]:
        store = Store(load_settings(str(gateway.config_path)).database_url)
        try:
            async with store.session() as session:
                rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
                return [(row.action, row.target) for row in rows]
        finally:
            await store.close()

    assert asyncio.run(actions()) == [
        ("intel.add", "domain:evil.example.org"), ("intel.add", "domain:other.example.org"),
        ("intel.remove", "domain:evil.example.org"), ("intel.add", "ip:192.0.2.9"),
        ("intel.remove", "ip:192.0.2.9")]

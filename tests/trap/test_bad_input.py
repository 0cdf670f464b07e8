"""Bad input at the command line: malformed feeds, unknown incidents and messages, config."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.support.gateway import RunningGateway


def test_feeds_with_malformed_duplicate_expired_and_unknown_objects(tmp_path):
    gateway = RunningGateway(tmp_path)
    text = tmp_path / "feed.txt"
    text.write_text("# a feed\nhttps://kit.example/a\nhttps://kit.example/a\nnot a value at all\n"
                    "\x00\xff garbage\nkit.example\n")
    past = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    stix = tmp_path / "bundle.json"
    stix.write_text(json.dumps({"type": "bundle", "id": "bundle--1", "objects": [
        {"type": "x-unknown", "id": "x-unknown--1"},
        {"type": "indicator", "spec_version": "2.1",
         "id": "indicator--00000000-0000-4000-8000-000000000001",
         "created": "2026-12-01T10:00:00Z", "modified": "2026-12-01T10:00:00Z",
         "pattern": "[url:value = 'https://expired.example/']", "pattern_type": "stix",
         "valid_from": "2026-11-01T10:00:00Z", "valid_until": past}]}))
    out = gateway.cli("intel", "import", str(text), str(stix)).stdout.decode()
    assert "added 2, updated 0, refused 0, expired 0, duplicates 1, malformed 2" in out
    assert "line 4: more than one value" in out
    assert "added 0, updated 0, refused 0, expired 1, duplicates 0, malformed 0" in out
    assert "ignored 1 STIX x-unknown" in out
    listed = gateway.cli("intel", "list").stdout.decode()
    assert "https://kit.example/a" in listed and "expired.example" not in listed

    broken = tmp_path / "broken.json"
    broken.write_text("{\"type\": \"bundle\", ")
    failed = gateway.cli("intel", "import", str(broken), check=False)
    # The console wraps long lines: compare with the wrapping undone.
    assert failed.returncode == 2 and b"not valid JSON" in b" ".join(failed.stderr.split())


def test_unknown_incidents_messages_and_a_bad_mailbox_setting(tmp_path):
    gateway = RunningGateway(tmp_path)
    shown = gateway.cli("incident", "show", "999", check=False)
    assert shown.returncode == 1 and b"no incident 999" in b" ".join(shown.stderr.split())
    closed = gateway.cli("incident", "close", "999", check=False)
    assert closed.returncode == 2 and b"--note" in closed.stderr
    pulled = gateway.cli("retract", "<nothing@example.org>", check=False)
    assert pulled.returncode == 1 and b"no delivered copy" in b" ".join(pulled.stderr.split())
    (tmp_path / "bad.toml").write_text('[trap]\nremote_mailbox = "exchange"\n')
    bad = gateway.cli("--config", str(tmp_path / "bad.toml"), "trap", "run", check=False)
    assert bad.returncode == 2 and b"trap.remote_mailbox" in b" ".join(bad.stderr.split())

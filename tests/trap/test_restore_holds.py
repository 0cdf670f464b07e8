"""End to end over SMTP through the real gateway on the Maildir store: a copy
an analyst restored after a retro-scan pulled it stays in the INBOX through
``mailward trap run`` and through an unrelated intelligence change, shows as
restored on its incident, and is pulled again only by an indicator added
after the restore (or by a forced run) - in the folder and the hold mode."""

from __future__ import annotations

import json

from tests.trap.test_end_to_end import (Receiver, api, files, message, receiver,  # noqa: F401
                                        trap_config, wait_files, wait_incident)
from tests.web.support import Console, add_user

BAD = "https://mfa.restore-kit.example/verify"
HOST = "mfa.restore-kit.example"
MESSAGE_ID = "<mfa@phish-sender.example>"


def held(gateway) -> list[list[str]]:
    """held - the rows of ``mailward quarantine list`` (tab-separated)."""
    lines = gateway.cli("quarantine", "list").stdout.decode().splitlines()
    return [line.split("\t") for line in lines if "\t" in line]


def scenario(gateway_factory, receiver: Receiver, hold: bool) -> None:
    extra = {"trap": {"retract_mode": "hold"}} if hold else {}
    gateway = gateway_factory(config=trap_config(receiver, **extra))
    token = gateway.token()
    gateway.send(message("MFA reset", BAD, MESSAGE_ID.strip("<>")),
                 rcpts=["erin@example.com"])
    root = gateway.data_dir / "mailboxes" / "example.com" / "erin"
    [original] = wait_files(root, 1)
    data = original.read_bytes()

    def out() -> bool:
        if files(root) != []:
            return False
        if hold:
            return files(root / ".Quarantine") == [] and len(held(gateway)) == 1
        return len(files(root / ".Quarantine")) == 1

    def back() -> bool:
        [copy] = files(root)
        return (copy.read_bytes() == data and files(root / ".Quarantine") == []
                and held(gateway) == [])

    gateway.cli("intel", "add", "--type", "url", BAD, "--source", "feed-r")
    first = wait_incident(gateway, token, lambda i: i["indicator"]["value"] == BAD
                          and i["summary"].get("pulled") == 1)
    assert out()
    if hold:
        # Its recipient asks for it back from the console meanwhile.
        add_user(gateway, "erin", "user", "erin@example.com")
        erin, staff = Console(gateway), Console(gateway, token)
        assert erin.login("erin").status_code == 200
        [item] = erin.get("/api/v1/quarantine").json()["items"]
        asked = erin.post(f"/api/v1/quarantine/{item['id']}/request-release")
        assert asked.status_code == 200 and asked.json()["user"] == "erin"

    # The analyst judges it a false positive and restores it.
    restored = gateway.cli("restore", MESSAGE_ID).stdout.decode()
    assert "restored" in restored and "-> INBOX" in restored, restored
    assert back()
    if hold:
        # The restore answered the request: it leaves the reviewers' queue.
        assert staff.get("/api/v1/quarantine/requests").json()["items"] == []
        [request] = staff.get(f"/api/v1/quarantine/{item['id']}").json()["release_requests"]
        assert request["status"] == "closed" and request["reason"].startswith("released by")
        erin.close()
        staff.close()
    shown = api(gateway, token, "GET", f"/api/v1/trap/incidents/{first['id']}").json()
    [copy] = shown["copies"]
    assert copy["pull"] == "restored" and copy["restored_by"] == "cli"
    assert copy["restored_at"] and shown["summary"]["pulled"] == 0
    assert shown["summary"]["restored"] == 1
    assert shown["assessment"] == "contained"
    assert any(e["event"] == "restored copy of erin@example.com" for e in shown["history"])
    text = gateway.cli("incident", "show", str(first["id"])).stdout.decode()
    assert "\trestored\t" in text and "by cli" in text, text

    # A scan now - of what changed, or of everything - leaves it in the INBOX.
    now = json.loads(gateway.cli("trap", "run", "--json").stdout)
    assert now["indicators"] == 0 and now["pulled"] == 0, now
    everything = json.loads(gateway.cli("trap", "run", "--all", "--json").stdout)
    assert everything["matched_copies"] == 1 and everything["pulled"] == 0, everything
    assert back()

    # An unrelated indicator is scanned alone and pulls nothing.
    gateway.cli("intel", "add", "--type", "domain", "unrelated.test", "--source", "feed-r")
    gateway.wait_log("retro-scan: 1 indicators, 0 copies matched, 0 pulled", timeout=60)
    assert "retro-scan: 2 indicators" not in gateway.log()
    assert back()
    again = api(gateway, token, "GET", f"/api/v1/trap/incidents/{first['id']}").json()
    assert again["copies"][0]["pull"] == "restored"

    # An indicator new since the restore that matches the copy pulls it again.
    gateway.cli("intel", "add", "--type", "domain", HOST, "--source", "feed-r")
    wait_incident(gateway, token, lambda i: i["indicator"]["value"] == HOST
                  and i["summary"].get("pulled") == 1)
    assert out()

    # Restored once more, only a forced run pulls it for the known indicator.
    gateway.cli("restore", MESSAGE_ID)
    assert back()
    assert json.loads(gateway.cli("trap", "run", "--all", "--json").stdout)["pulled"] == 0
    forced = json.loads(gateway.cli("trap", "run", "--all", "--force", f"url:{BAD}",
                                    "--json").stdout)
    assert forced["pulled"] == 1, forced
    assert out()


def test_a_restored_copy_stays_in_the_inbox_until_new_intelligence_matches_it(
        gateway_factory, receiver):
    scenario(gateway_factory, receiver, hold=False)


def test_a_copy_restored_from_the_hold_is_not_taken_out_again(gateway_factory, receiver):
    scenario(gateway_factory, receiver, hold=True)

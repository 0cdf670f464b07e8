"""Retention: archive days, parked copies and quarantine items past their age go.

The gateway runs on PostgreSQL with a real relay; ``mailward prune`` runs as a
separate process beside it, as an administrator would run it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from datetime import UTC, datetime

import asyncpg
import pytest

from tests.conftest import need
from tests.support.gateway import SHARED, RunningGateway, crlf
from tests.web.support import PHISH_URL, Console, add_user, phish, queue_id, scores_file

OLD = datetime(2020, 1, 1, tzinfo=UTC).timestamp()


def ham() -> bytes:
    return crlf(sorted((SHARED / "corpus/spam/ham").iterdir())[0].read_bytes())


def plant(path, data: bytes = b"X-Test: 1\r\n\r\nbody\r\n", mtime: float | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def archived(gateway: RunningGateway, qid: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list((gateway.data_dir / "archive").glob(f"*/{qid}.eml"))
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"{qid} was not archived:\n{gateway.log()[-3000:]}")


def sql(url: str, statement: str, *args) -> None:
    async def body() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(statement, *args)
        finally:
            await connection.close()

    asyncio.run(body())


@pytest.fixture
def site(tmp_path, postgres_url, smtp_sink):
    """site - a gateway on PostgreSQL with an admin and alice, who may only ask."""
    need(SHARED.is_dir(), f"the shared corpus at {SHARED}")
    config = {"storage": {"database_url": postgres_url},
              "policy": {"scores_file": str(scores_file(tmp_path / "scores.toml"))},
              "retention": {"interval": "1d"}}
    gateway = RunningGateway(tmp_path, config, relay=smtp_sink.url)
    gateway.cli("intel", "add", "--type", "url", PHISH_URL)
    add_user(gateway, "admin", "admin", "admin@example.com")
    add_user(gateway, "alice", "user", "alice@example.com")
    gateway.start()
    yield gateway
    gateway.stop()


def test_prune_removes_old_items_of_each_kind_and_keeps_young_ones(site, smtp_sink,
                                                                   postgres_url, tmp_path):
    data = site.data_dir
    alice, admin = Console(site), Console(site)
    assert alice.login("alice").status_code == 200 and admin.login("admin").status_code == 200

    # Quarantine: two phishing messages for alice; she asks for the old one back.
    old_item, young_item = (
        alice.item_of(queue_id(site.send(phish(subject), rcpts=["alice@example.com"])))
        for subject in ("old phish", "new phish"))
    asked = alice.post(f"/api/v1/quarantine/{old_item['id']}/request-release")
    assert asked.status_code == 200 and asked.json()["status"] == "pending"
    sql(postgres_url, "UPDATE quarantine SET created_at = now() - interval '60 days' "
                      "WHERE id = $1", old_item["id"])

    # Archive: two delivered originals, one moved to a day long past.
    first, second = (queue_id(site.send(ham(), rcpts=[f"user{n}@example.com"]))
                     for n in (1, 2))
    smtp_sink.wait_for(2)
    young_archived = archived(site, second)
    old_archived = data / "archive" / "20200101" / f"{first}.eml"
    old_archived.parent.mkdir()
    os.replace(archived(site, first), old_archived)

    # Parked: an old copy with its reason, a young one, and an old copy of a message
    # still to be delivered (deferred by the relay): that one must stay.
    old_parked = plant(data / "spool/parked/OLDPARKED.eml", mtime=OLD)
    old_reason = plant(data / "spool/parked/OLDPARKED.reason", b"deadline", mtime=OLD)
    young_parked = plant(data / "spool/parked/YOUNGPARKED.eml")
    smtp_sink.handler.codes["slow@example.com"] = 451
    slow = queue_id(site.send(ham(), rcpts=["slow@example.com"]))
    site.wait_log("delivery to <slow@example.com> deferred")
    undelivered = data / "spool/parked" / f"{slow}.eml"
    shutil.copyfile(data / "spool/queue" / f"{slow}.eml", undelivered)
    os.utime(undelivered, (OLD, OLD))

    # Links are never followed, out of the data directory or within it.
    outside = plant(tmp_path / "outside" / "20190101" / "OUTSIDE.eml", mtime=OLD)
    os.symlink(outside.parent, data / "archive" / "20190101")
    os.symlink(outside, data / "spool/parked/LINKED.eml")
    os.utime(data / "spool/parked/LINKED.eml", (OLD, OLD), follow_symlinks=False)
    everything = [old_archived, young_archived, old_parked, old_reason, young_parked,
                  undelivered, outside]

    dry = site.cli("prune", "--dry-run").stdout.decode()
    assert "archive\twould remove 1\t" in dry, dry
    assert "parked\twould remove 1\t" in dry and "quarantine\twould remove 1\t" in dry
    assert "kept\t1 copies with a delivery still to make" in dry
    assert all(path.exists() for path in everything)
    assert admin.item_of(old_item["queue_id"])["status"] == "held"

    held = data / "quarantine" / f"{old_item['queue_id']}.eml"
    sizes = {"archive": old_archived.stat().st_size,
             "parked": old_parked.stat().st_size + old_reason.stat().st_size,
             "quarantine": held.stat().st_size}
    done = site.cli("prune")
    out, log = done.stdout.decode(), done.stderr.decode()
    for kind, size in sizes.items():
        assert f"{kind}\tremoved 1\t{size} bytes\t" in out, out
    assert not old_archived.exists() and not old_archived.parent.exists()
    assert not old_parked.exists() and not old_reason.exists()
    assert young_archived.exists() and young_parked.exists() and undelivered.exists()
    assert outside.exists() and (data / "spool/parked/LINKED.eml").is_symlink()
    for needle in (f"{first}: removed archive copy", "OLDPARKED: removed parked copy",
                   f"quarantine item {old_item['id']} expired", f"{slow}: parked copy"):
        assert needle in log, log

    # The expired item went the way of a console delete; its request is closed.
    view = admin.get(f"/api/v1/quarantine/{old_item['id']}").json()
    assert view["status"] == "deleted" and view["released_by"] == "retention"
    [request] = view["release_requests"]
    assert request["status"] == "closed"
    assert request["reason"] == "expired after 30d in the quarantine"
    assert not held.exists()
    assert admin.item_of(young_item["queue_id"])["status"] == "held"
    assert (data / "quarantine" / f"{young_item['queue_id']}.eml").exists()

    again = site.cli("prune").stdout.decode()
    assert "archive\tremoved 0\t0 bytes" in again and "quarantine\tremoved 0\t" in again
    alice.close()
    admin.close()


def test_the_running_gateway_sweeps_at_start_and_keeps_for_ever_at_0(gateway_factory,
                                                                      smtp_sink):
    gateway = gateway_factory(relay=smtp_sink.url, start=False,
                              config={"retention": {"parked": 0}})
    data = gateway.data_dir
    old_day = plant(data / "archive" / "20200101" / "OLDARCHIVED.eml")
    today = datetime.now(UTC).strftime("%Y%m%d")
    young_day = plant(data / "archive" / today / "YOUNGARCHIVED.eml", mtime=OLD)
    parked = plant(data / "spool/parked/OLDPARKED.eml", mtime=OLD)
    gateway.start()
    gateway.wait_log("OLDARCHIVED: removed archive copy from archive/20200101")
    assert not old_day.exists() and young_day.exists() and parked.exists()
    listed = gateway.cli("prune", "--dry-run").stdout.decode()
    assert "parked\twould remove 0\t0 bytes\tkept for ever" in listed, listed


def test_a_bad_retention_setting_is_one_line_naming_the_key(tmp_path):
    import subprocess
    import sys

    for text, says in (
            ('[retention]\nquarantine = 30', "retention.quarantine: 30s is under a day"),
            ('[retention]\narchive = "7d"',
             "retention.archive: 7d is shorter than trap.lookback (14d)"),
            ('[retention]\ninterval = "5s"', "retention.interval: 5s is not between 1m"),
            ('[retention]\nparked = "soon"', "retention.parked: 'soon' is not a duration")):
        path = tmp_path / "mailward.toml"
        path.write_text(text)
        for args in (["config", "check", str(path)], ["--config", str(path), "prune"]):
            result = subprocess.run([sys.executable, "-m", "mailward", *args],
                                    capture_output=True, text=True, cwd=tmp_path, timeout=120)
            assert result.returncode == 2, (args, result.stdout)
            assert says in result.stderr, result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr

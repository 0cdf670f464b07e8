"""Retro-scan: time from an intelligence update to the last copy pulled.

For each index size (delivered copies, one per message, each message with
two URLs and one in five with an attachment) a fresh SQLite store is
generated; 2,000 of the messages belong to a campaign and have real
Maildir copies. Then 10,000 new indicators arrive in one update (400
campaign domains, 400 campaign URLs, 200 campaign attachment hashes, 9,000
that match nothing, mixed types) and the retro-scan runs as the trap
service's task does: index look-up, incidents, pulls through the Maildir
adapter, assessment. The figure is the time from the update's commit to
the last copy pulled, and the whole scan; the task queue adds its pick-up
delay (at most about a second) on top.

    .venv/bin/python bench/retroscan.py [--sizes 10000,100000,1000000] [--mode hold]

``--mode hold`` measures ``trap.retract_mode = "hold"``: each pull reads the
copy, writes its bytes and quarantine row durably, then removes it.

TODO: generating the 1,000,000-copy index takes most of the run (about 12 minutes at a load of 10 on 2 cores, a few minutes on an idle machine); a cached index would let the figure be re-measured quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import random
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mailward.config import Settings
from mailward.intel.store import IntelStore, NewIndicator, url_hash
from mailward.mailbox.maildir import MaildirStore
from mailward.store import Store
from mailward.trap.retroscan import Retroscan

CAMPAIGN = 2000
NEW_INDICATORS = 10_000


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def generate(path: Path, mailroot: Path, size: int, seed: int = 7) -> list[int]:
    """generate - size delivered copies; the indexes of the campaign's messages."""
    rng = random.Random(seed)
    campaign = sorted(rng.sample(range(size), CAMPAIGN))
    bad = set(campaign)
    maildir = MaildirStore(mailroot)
    now = datetime.now(UTC)
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("PRAGMA cache_size=-262144")
    # Secondary indexes are built once after the load (sorted), not row by row.
    indexes = connection.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND "
        "tbl_name IN ('messages', 'copies', 'message_urls', 'message_files')").fetchall()
    for name, _ in indexes:
        connection.execute(f'DROP INDEX "{name}"')
    messages, copies, urls, files = [], [], [], []
    for i in range(size):
        queue_id = f"B{i:09d}"
        when = now - timedelta(seconds=rng.randrange(13 * 86400))
        recipient = f"user{i % 5000}@example.com"
        sender = f"news@sender{i % 20000}.example"
        if i in bad:
            k = campaign.index(i)
            sender = f"billing@bad{k % 400}.phish.example"
            links = [f"https://bad{k % 400}.phish.example/pay/{i}",
                     f"https://cdn{k % 50}.example.net/logo.png"]
            native = maildir.deliver_sync(recipient, b"Subject: invoice\r\n\r\npay\r\n",
                                          "INBOX", queue_id, when.timestamp())
        else:
            links = [f"https://www.site{i % 30000}.example/a/{i}",
                     f"https://cdn{i % 50}.example.net/logo.png"]
            native = f"{int(when.timestamp())}.{queue_id}_0"
        messages.append((queue_id, stamp(when), "inbound", f"192.0.2.{i % 250}", "", sender,
                         sender, "[]", "invoice", f"<{queue_id}@x>", 0, "", "deliver", None,
                         0.0, "", "{}", "{}", "done", 0.0))
        copies.append((queue_id, f"<{queue_id}@x>", recipient, "maildir", "INBOX", native,
                       sender, sender.rpartition("@")[2], "invoice", "deliver", 0.0,
                       stamp(when), "delivered"))
        for link in links:
            urls.append((queue_id, link, url_hash(link), link.split("/")[2]))
        if i % 5 == 0 or i in bad:
            digest = hashlib.sha256(f"file-{i}".encode()).hexdigest()
            files.append((queue_id, digest, "invoice.pdf", "application/pdf", 1000))
        if len(messages) >= 50_000:
            _flush(connection, messages, copies, urls, files)
    _flush(connection, messages, copies, urls, files)
    for _, sql in indexes:
        connection.execute(sql)
    connection.execute("ANALYZE")
    connection.commit()
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return campaign


def _flush(connection, messages, copies, urls, files) -> None:
    connection.executemany(
        "INSERT INTO messages (queue_id, received_at, direction, peer_ip, helo, mail_from, "
        "header_from, recipients, subject, message_id, size, sha256, action, category, "
        "score, reason, verdict, envelope, state, duration_ms) VALUES "
        "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", messages)
    connection.executemany(
        "INSERT INTO copies (queue_id, message_id, recipient, mailbox, folder, native_id, "
        "sender, sender_domain, subject, action, score, delivered_at, state) VALUES "
        "(?,?,?,?,?,?,?,?,?,?,?,?,?)", copies)
    connection.executemany("INSERT INTO message_urls (queue_id, url, url_hash, domain) "
                           "VALUES (?,?,?,?)", urls)
    connection.executemany("INSERT INTO message_files (queue_id, sha256, path, content_type, "
                           "size) VALUES (?,?,?,?,?)", files)
    connection.commit()
    for batch in (messages, copies, urls, files):
        batch.clear()


def indicators(campaign: list[int]) -> list[NewIndicator]:
    items = [NewIndicator("domain", f"bad{k}.phish.example", "bench") for k in range(400)]
    items += [NewIndicator("url", f"https://bad{k % 400}.phish.example/pay/{i}", "bench")
              for k, i in enumerate(campaign[:400])]
    items += [NewIndicator("sha256", hashlib.sha256(f"file-{i}".encode()).hexdigest(), "bench",
                           "malware") for i in campaign[400:600]]
    for n in range(NEW_INDICATORS - len(items)):
        kind = ("url", "domain", "sha256", "sender")[n % 4]
        value = {"url": f"https://nomatch{n}.example/x", "domain": f"nomatch{n}.example",
                 "sha256": hashlib.sha256(f"none-{n}".encode()).hexdigest(),
                 "sender": f"x{n}@nomatch.example"}[kind]
        items.append(NewIndicator(kind, value, "bench", "malware" if kind == "sha256"
                                  else "phish"))
    return items


async def measure(size: int, workdir: Path, mode: str = "folder") -> dict:
    directory = workdir / f"n{size}"
    directory.mkdir()
    settings = Settings.model_validate({"storage": {"data_dir": str(directory)},
                                        "trap": {"max_share": 1.0, "retract_mode": mode}})
    store = Store(settings.database_url)
    await store.migrate()
    await store.close()
    started = time.perf_counter()
    campaign = generate(directory / "mailward.db", directory / "mailboxes", size)
    generated = time.perf_counter() - started

    store = Store(settings.database_url)
    scanner = Retroscan(settings, store)
    updated = time.perf_counter()
    await IntelStore(store).add_many(indicators(campaign))
    added = time.perf_counter()
    report = await scanner.run_pending()
    finished = time.perf_counter()
    await store.close()
    pulled = sum(1 for p in (directory / "mailboxes").rglob(".Quarantine/new/*")) \
        if mode == "folder" else sum(1 for p in (directory / "quarantine" / "pulled")
                                     .glob("*.eml"))
    return {"size": size, "generate": generated, "add": added - updated,
            "to_last_pull": report.last_pull_at - added if report.last_pull_at else 0.0,
            "scan": finished - added, "pulled": report.pulled, "on_disk": pulled,
            "incidents": len(report.incidents), "phases": report.phases}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--mode", choices=("folder", "hold"), default="folder")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"retro-scan: {NEW_INDICATORS} new indicators ({CAMPAIGN} campaign copies to pull) "
          f"against N delivered copies; SQLite; retract_mode {args.mode}; "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{'copies':>9} {'generate':>9} {'add 10k':>8} {'to last pull':>13} "
          f"{'whole scan':>11} {'pulled':>7} {'incidents':>9}")
    with tempfile.TemporaryDirectory(prefix="mailward-bench-") as temporary:
        for size in sizes:
            row = await measure(size, Path(temporary), args.mode)
            assert row["pulled"] == CAMPAIGN == row["on_disk"], row
            print(f"{row['size']:>9} {row['generate']:>8.1f}s {row['add']:>7.2f}s "
                  f"{row['add'] + row['to_last_pull']:>12.2f}s {row['add'] + row['scan']:>10.2f}s"
                  f" {row['pulled']:>7} {row['incidents']:>9}   "
                  + " ".join(f"{k} {v:.1f}s" for k, v in row["phases"].items()), flush=True)
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    asyncio.run(main())

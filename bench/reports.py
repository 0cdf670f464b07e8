"""User reports: time from a report to the last copy acted on, and reports per minute.

1. A campaign to N recipients (default 1,000, in batches of 100 per SMTP
   transaction, as a sender's server would send it) is judged and delivered
   into the Maildir store; then its link becomes known bad and one
   recipient reports it. Printed: the time from the report to the last copy
   moved to Quarantine, and how many copies were moved.
2. M distinct messages (default 60) are each reported by their recipient
   at once; printed: reports analysed (re-run through the pipeline, decided
   and acted on) per minute.

Everything runs in one process on the real parts: the gateway's pipeline,
the delivery queue, the report service on its huey task queue (SQLite),
the retract/restore service over the Maildir store. Outcome emails are off.

    .venv/bin/python bench/reports.py [--recipients 1000] [--reports 60]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select  # noqa: E402

from mailward.config import load_settings  # noqa: E402
from mailward.envelope import Envelope, new_queue_id  # noqa: E402
from mailward.gateway import Gateway  # noqa: E402
from mailward.reports.service import service_of  # noqa: E402
from mailward.store.models import Copy, Delivery, ReportAction, ReportCluster  # noqa: E402
from tests.reports.support import campaign_message  # noqa: E402

WORDS = ("account invoice payment verify password shipment parcel delivery bonus "
         "meeting document signature update security access review salary contract "
         "order refund customer support urgent today tomorrow office team").split()


async def deliver_all(gateway: Gateway) -> None:
    """deliver_all - run the delivery queue until nothing is pending."""
    while True:
        await gateway.queue.run_once()
        async with gateway.services.store.session() as session:
            left = await session.scalar(select(func.count()).select_from(Delivery).where(
                Delivery.status.in_(("pending", "deferred"))))
        if not left:
            return


async def send(gateway: Gateway, raw: bytes, sender: str, recipients: list[str]) -> str:
    envelope = Envelope(queue_id=new_queue_id(), mail_from=sender, rcpt_to=recipients,
                        peer_ip="198.51.100.7", helo="mail.example.net")
    reply = await gateway.receive(envelope, raw)
    assert reply.code == 250, reply
    return envelope.queue_id


async def wait_acted(gateway: Gateway, count: int, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with gateway.services.store.session() as session:
            done = await session.scalar(select(func.count()).select_from(ReportCluster)
                                        .where(ReportCluster.status.in_(("acted", "analyst"))))
        if done >= count:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("reports were not all analysed")


async def campaign(gateway: Gateway, recipients: int) -> None:
    url = "https://evil-helpdesk.test/login?session=bench"
    people = [f"user{i:05d}@example.com" for i in range(recipients)]
    raw = campaign_message(subject="Your mailbox is almost full", url=url)
    started = time.perf_counter()
    for start in range(0, len(people), 100):
        await send(gateway, raw, "helpdesk@evil-helpdesk.test", people[start:start + 100])
    await deliver_all(gateway)
    print(f"campaign: {recipients} copies judged and delivered in "
          f"{time.perf_counter() - started:.1f}s")
    await gateway.services.intel.add("url", url, source="bench")
    service = service_of(gateway)
    reported = datetime.now(UTC)
    taken = await service.submit(people[0], "api",
                                 queue_id=await _queue_id_of(gateway, people[0]))
    await wait_acted(gateway, 1)
    async with gateway.services.store.session() as session:
        last = await session.scalar(select(func.max(ReportAction.at)).where(
            ReportAction.cluster_id == taken.cluster_id))
        moved = await session.scalar(select(func.count()).select_from(ReportAction).where(
            ReportAction.cluster_id == taken.cluster_id, ReportAction.outcome == "pulled"))
        cluster = await session.get(ReportCluster, taken.cluster_id)
    print(f"campaign of {recipients} recipients ({len(cluster.queue_ids)} messages, one "
          f"cluster, verdict {cluster.verdict}): {moved} copies moved to Quarantine; "
          f"report to last copy acted on: {(last - reported).total_seconds():.2f}s")


async def _queue_id_of(gateway: Gateway, recipient: str) -> str:
    async with gateway.services.store.session() as session:
        return await session.scalar(select(Copy.queue_id).where(Copy.recipient == recipient))


async def throughput(gateway: Gateway, count: int) -> None:
    rng = random.Random(7)
    reporters = []
    for index in range(count):
        words = " ".join(rng.choice(WORDS) for _ in range(60))
        person = f"reader{index:04d}@example.com"
        raw = campaign_message(subject=f"{rng.choice(WORDS)} {rng.choice(WORDS)} {index}",
                               url=f"https://shop{index}.test/{rng.choice(WORDS)}",
                               sender=f"news@letters{index}.test")
        raw = raw.replace(b"Your mailbox has reached its limit.", words.encode())
        await send(gateway, raw, f"news@letters{index}.test", [person])
        reporters.append(person)
    await deliver_all(gateway)
    async with gateway.services.store.session() as session:
        before = await session.scalar(select(func.count()).select_from(ReportCluster))
    service = service_of(gateway)
    started = time.perf_counter()
    for person in reporters:
        await service.submit(person, "api", queue_id=await _queue_id_of(gateway, person))
    await wait_acted(gateway, before + count)
    elapsed = time.perf_counter() - started
    print(f"throughput: {count} distinct reports analysed and acted on in {elapsed:.1f}s: "
          f"{count / elapsed * 60:.0f} reports per minute "
          f"({gateway.settings.reports.workers} workers)")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--reports", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="mw-bench-reports-"))
    settings = load_settings(overrides={
        "storage.data_dir": str(directory), "smtp.accepted_domains": ["example.com"],
        "smtp.hostname": "mx.bench.example", "reports.notify": False,
        "reports.per_reporter": "0/1s", "reports.workers": args.workers,
        "urls.rewrite": False, "dns.timeout": "0.2s"})
    gateway = Gateway(settings)
    await gateway.start()
    service = service_of(gateway)
    worker = asyncio.create_task(service.run())
    await asyncio.sleep(0.5)
    try:
        await campaign(gateway, args.recipients)
        await throughput(gateway, args.reports)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await gateway.close()
    print(f"loadavg: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    asyncio.run(main())

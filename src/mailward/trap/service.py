"""The post-delivery response inside ``mailward serve``.

A watcher reads the intelligence store's generation every second; when it
moves (``mailward intel add`` in another process, a feed poll, a late
sandbox verdict, the REST API) a retro-scan task goes on the task queue.
The queue (huey, ``trap.queue``) also runs the feed polls every
``trap.poll_interval`` and a regular re-assessment of open incidents, so a
click logged after a pull still moves an incident to "compromise
suspected". Scans run one at a time per queue (a huey lock); a scan that
finds the lock taken is tried again shortly.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from mailward.store.models import Incident
from mailward.taskqueue import make_queue, run_consumer
from mailward.trap.retroscan import Retroscan

if TYPE_CHECKING:
    from mailward.gateway import Gateway

log = logging.getLogger("mailward.trap")

SCAN_LOCK = "trap-retroscan"


class TrapService:
    """Queue, tasks and the generation watcher of one node."""

    def __init__(self, gateway: "Gateway") -> None:
        self.gateway = gateway
        self.services = gateway.services
        self.settings = gateway.settings
        trap = self.settings.trap
        self.scanner = Retroscan(self.settings, self.services.store)
        self.huey = make_queue("trap", trap.queue, self.settings.data_dir, "trap.queue")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.generation = -1
        self.last_report: dict[str, Any] = {}
        self._scan = self.huey.task(name="trap.retroscan", retries=3, retry_delay=2)(
            self._scan_task)
        from huey import crontab

        self._poll = self.huey.periodic_task(poll_schedule(trap.poll_interval),
                                             name="trap.poll")(self._poll_task)
        self._reassess = self.huey.periodic_task(crontab(minute="*"),
                                                 name="trap.reassess")(self._reassess_task)
        gateway.services.extras["trap"] = self

    # Tasks (worker threads): they run their coroutine on the gateway's loop.

    def _call(self, coroutine) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def _scan_task(self) -> None:
        from huey.exceptions import TaskLockedException

        try:
            with self.huey.lock_task(SCAN_LOCK):
                report = self._call(self.scanner.run_pending())
                self.last_report = report.as_dict()
        except TaskLockedException:
            self._scan.schedule(delay=2)

    def _poll_task(self) -> None:
        self._call(poll_feeds(self.settings, self.services.store))

    def _reassess_task(self) -> None:
        self._call(self.reassess_open())

    async def reassess_open(self) -> None:
        """reassess_open - recount clicks on the open incidents of the look-back."""
        since = datetime.now(UTC) - timedelta(seconds=self.settings.trap.lookback)
        async with self.services.store.session() as session:
            ids = (await session.scalars(select(Incident.id).where(
                Incident.status != "closed", Incident.opened_at >= since))).all()
        for incident_id in ids:
            await self.scanner.reassess(incident_id)

    def enqueue_scan(self) -> None:
        self._scan()

    # The watcher.

    async def watch(self) -> None:
        """watch - queue a retro-scan whenever the intelligence store changes."""
        while True:
            try:
                generation = await self.services.intel.generation()
                if generation != self.generation:
                    self.generation = generation
                    await asyncio.to_thread(self.enqueue_scan)
            except Exception as error:  # the store may be briefly unreachable
                log.warning("trap: generation check failed: %s", error)
            await asyncio.sleep(1.0)

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        consumer = asyncio.create_task(run_consumer(self.huey, workers=2, periodic=True))
        try:
            await self.watch()
        finally:
            consumer.cancel()


def poll_schedule(seconds: float):
    """poll_schedule - the crontab nearest to an interval (whole minutes or hours)."""
    from huey import crontab

    minutes = max(1, int(seconds // 60))
    if minutes < 60:
        return crontab(minute=f"*/{minutes}")
    return crontab(minute="0", hour=f"*/{min(24, minutes // 60)}")


async def poll_feeds(settings, store) -> dict[str, Any]:
    """poll_feeds - read the configured files, TAXII collections and MISP once."""
    from mailward.intel.feeds import FeedError, read_feed
    from mailward.trap.intake import (add_feed, cursor, poll_misp, poll_taxii,
                                      save_cursor)

    trap = settings.trap
    outcome: dict[str, Any] = {}
    for path in trap.feed_files:
        try:
            feed = await asyncio.to_thread(read_feed, Path(path))
            outcome[path] = (await add_feed(settings, store, feed, actor="feed")).as_dict()
        except FeedError as error:
            outcome[path] = {"error": str(error)}
            log.error("feed %s: %s", path, error)
    for entry in trap.taxii:
        url = entry.get("url", "")
        name = f"taxii:{url}"
        try:
            feed, newest = await asyncio.to_thread(
                poll_taxii, url, entry.get("user", ""), entry.get("password", ""),
                await cursor(store, name), entry.get("source", "taxii")[:128],
                entry.get("category") or None)
            outcome[name] = (await add_feed(settings, store, feed, actor="taxii")).as_dict()
            await save_cursor(store, name, newest)
        except Exception as error:  # a feed down is that feed's error only
            outcome[name] = {"error": f"{type(error).__name__}: {error}"}
            await save_cursor(store, name, "", str(error))
            log.error("TAXII %s: %s", url, error)
    if trap.misp_url:
        name = f"misp:{trap.misp_url}"
        try:
            feed, newest = await asyncio.to_thread(poll_misp, trap.misp_url, trap.misp_key,
                                                   await cursor(store, name), "misp",
                                                   trap.misp_verify_tls)
            outcome[name] = (await add_feed(settings, store, feed, actor="misp")).as_dict()
            await save_cursor(store, name, newest)
        except Exception as error:
            outcome[name] = {"error": f"{type(error).__name__}: {error}"}
            await save_cursor(store, name, "", str(error))
            log.error("MISP %s: %s", trap.misp_url, error)
    return outcome


async def run(gateway: "Gateway") -> None:
    """run - the background job ``mailward serve`` starts."""
    await TrapService(gateway).run()

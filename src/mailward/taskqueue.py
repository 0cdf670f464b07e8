"""The task queue long jobs run on: huey, an existing engine, not our own.

One helper builds a huey instance on the storage the configuration names:
a SQLite file in the data directory for one node (nothing more to run), or
Redis for several nodes sharing the work. ``run_consumer`` runs its workers
inside ``mailward serve`` as threads, leaving the signals to the gateway.
Tasks are stored, so a scheduled task survives a restart.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from mailward.config import ConfigError


def make_queue(name: str, queue: str, data_dir: Path, key: str):
    """make_queue - huey named name: SQLite under data_dir/name, or Redis."""
    if queue.startswith(("redis://", "rediss://", "unix://")):
        from huey import RedisHuey

        return RedisHuey(f"mailward-{name}", url=queue, results=False)
    if queue:
        raise ConfigError(f"{key}: {queue!r} is neither empty (SQLite) nor redis://")
    from huey import SqliteHuey

    directory = data_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(f"mailward-{name}", filename=str(directory / "tasks.db"), results=False)


async def run_consumer(huey, workers: int, periodic: bool = False) -> None:
    """run_consumer - huey's workers in threads of this process, until cancelled."""
    from huey.consumer import Consumer

    class QuietConsumer(Consumer):
        def _set_signal_handlers(self) -> None:  # the gateway owns the signals
            pass

    consumer = QuietConsumer(huey, workers=workers, periodic=periodic, worker_type="thread",
                             check_worker_health=False, initial_delay=0.1, max_delay=1.0,
                             scheduler_interval=1)
    consumer.start()
    try:
        await asyncio.Event().wait()
    finally:
        consumer.stop(graceful=False)

"""The outside world, injected: store, resolver, intelligence, clock.

Checks, the SMTP server, the delivery queue and the web service reach every
shared resource through one Services object, so that tests can run them on
real local servers (a DNS server on loopback, a scratch database) and
nothing reaches for a global.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable

from mailward.auth.dns import Resolver
from mailward.config import Settings, prepare_data_dir
from mailward.intel.store import IntelCache, IntelStore
from mailward.store import Store


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    """Everything shared by the parts of one gateway process."""

    settings: Settings
    store: Store
    resolver: Resolver
    intel: IntelStore
    intel_cache: IntelCache
    clock: Callable[[], datetime] = utcnow
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @classmethod
    def create(cls, settings: Settings) -> "Services":
        """create - services for these settings (the store is not migrated yet)."""
        prepare_data_dir(settings)
        store = Store(settings.database_url)
        intel = IntelStore(store)
        return cls(settings=settings, store=store, resolver=Resolver(settings.dns),
                   intel=intel, intel_cache=IntelCache(intel))

    async def start(self) -> None:
        await self.store.migrate()
        await self.intel_cache.refresh(force=True)

    async def close(self) -> None:
        await self.store.close()

"""The audit log: every administrative action and every refusal, kept.

Each entry says who (a user, a token, a digest link), what (the action and
its target), when, from where (the client IP) and how it ended (ok or
refused). Entries are also written to the ``mailward.audit`` log channel so
that a log collector has them without reading the database.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from mailward.store import Store
from mailward.store.models import AuditEntry

log = logging.getLogger("mailward.audit")


async def record(store: Store, actor: str, role: str, action: str, target: str = "",
                 *, ip: str = "", outcome: str = "ok", **detail: Any) -> None:
    """record - one audit entry, in the store and in the log."""
    entry = AuditEntry(at=datetime.now(UTC), actor=actor[:200], role=role[:16],
                       action=action[:64], target=str(target)[:512], outcome=outcome[:16],
                       client_ip=ip[:64], detail={k: _plain(v) for k, v in detail.items()})
    async with store.session() as session:
        session.add(entry)
        await session.commit()
    level = logging.WARNING if outcome != "ok" else logging.INFO
    log.log(level, "%s %s by %s (%s) from %s on %s", action, outcome, actor, role or "-",
            ip or "-", target or "-",
            extra={"audit_action": action, "actor": actor, "outcome": outcome,
                   "target": str(target)})


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value if not isinstance(value, str) else value[:2000]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in list(value)[:200]]
    if isinstance(value, dict):
        return {str(k)[:100]: _plain(v) for k, v in list(value.items())[:100]}
    return str(value)[:2000]


async def entries(store: Store, *, actor: str | None = None, action: str | None = None,
                  target: str | None = None, outcome: str | None = None, limit: int = 100,
                  offset: int = 0) -> tuple[list[AuditEntry], int]:
    """entries - one page of the log, newest first, and the total matching."""
    query = select(AuditEntry)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        query = query.where(AuditEntry.action == action)
    if target:
        query = query.where(AuditEntry.target == target)
    if outcome:
        query = query.where(AuditEntry.outcome == outcome)
    async with store.session() as session:
        total = await session.scalar(select(func.count()).select_from(query.subquery()))
        rows = await session.scalars(query.order_by(AuditEntry.id.desc())
                                     .limit(limit).offset(offset))
        return list(rows.all()), int(total or 0)


def entry_dict(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": entry.at.isoformat(), "actor": entry.actor,
            "role": entry.role, "action": entry.action, "target": entry.target,
            "outcome": entry.outcome, "client_ip": entry.client_ip, "detail": entry.detail}

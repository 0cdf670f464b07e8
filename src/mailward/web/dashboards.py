"""Dashboards: mail flow, incidents, threat tracking and user reports.

Mail flow is computed here from the message records: messages per action
per hour and the symbols that fired most; DMARC results by sending (From)
domain come from the stored DMARC evaluations. Incidents, threat tracking and user reports
belong to other areas; ``PANELS`` names, for each, the ``module:function``
that returns its data (``async def f(store, hours) -> dict``). A panel whose
module is not installed is shown as not available, never faked.
"""

from __future__ import annotations

import importlib
import logging
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import func, select

from mailward.store import Store
from mailward.store.models import DmarcEvaluation, MessageRecord
from mailward.web.deps import Principal, get_gateway, require

log = logging.getLogger("mailward.web")
router = APIRouter(prefix="/api/v1/stats", tags=["dashboards"])

ACTIONS = ("deliver", "tag", "quarantine", "reject")
# Messages whose findings are read for symbol and DMARC figures (newest first).
SAMPLE = 5000
MAX_HOURS = 24 * 14

# Dashboards other areas provide: name -> module:function(store, hours) -> dict.
PANELS: dict[str, str] = {
    "incidents": "mailward.trap.dashboard:incidents",
    "threats": "mailward.trap.dashboard:threats",
    "reports": "mailward.reports.dashboard:reports",
}


def _hour_expression(store: Store):
    if store.is_sqlite:
        return func.substr(MessageRecord.received_at, 1, 13)
    return func.to_char(func.timezone("UTC", MessageRecord.received_at), "YYYY-MM-DD HH24")


def hours_between(since: datetime, now: datetime) -> list[str]:
    start = since.replace(minute=0, second=0, microsecond=0)
    labels = []
    while start <= now:
        labels.append(start.strftime("%Y-%m-%d %H"))
        start += timedelta(hours=1)
    return labels


async def flow(store: Store, hours: int = 24) -> dict[str, Any]:
    """flow - messages per action per hour over the last hours."""
    now = datetime.now(UTC)
    since = now - timedelta(hours=hours)
    hour = _hour_expression(store)
    async with store.session() as session:
        rows = (await session.execute(
            select(hour, MessageRecord.action, func.count())
            .where(MessageRecord.received_at >= since, MessageRecord.direction != "digest")
            .group_by(hour, MessageRecord.action))).all()
    labels = hours_between(since, now)
    series: dict[str, list[int]] = {action: [0] * len(labels) for action in ACTIONS}
    index = {label: i for i, label in enumerate(labels)}
    for label, action, count in rows:
        label = str(label).replace("T", " ")[:13]
        if label in index and action in series:
            series[action][index[label]] += int(count)
    totals = {action: sum(values) for action, values in series.items()}
    return {"hours": hours, "labels": labels, "series": series, "totals": totals}


async def _sample(store: Store, hours: int) -> list[tuple[str, dict[str, Any]]]:
    since = datetime.now(UTC) - timedelta(hours=hours)
    async with store.session() as session:
        rows = (await session.execute(
            select(MessageRecord.header_from, MessageRecord.verdict)
            .where(MessageRecord.received_at >= since, MessageRecord.direction == "inbound")
            .order_by(MessageRecord.received_at.desc()).limit(SAMPLE))).all()
    return [(sender or "", verdict or {}) for sender, verdict in rows]


async def symbols(store: Store, hours: int = 24, top: int = 20) -> dict[str, Any]:
    """symbols - the symbols that fired most (with a score) in the newest messages."""
    sample = await _sample(store, hours)
    counts: Counter[str] = Counter()
    for _, verdict in sample:
        for finding in {f["symbol"] for f in verdict.get("findings", [])
                        if f.get("score", 0) != 0}:
            counts[finding] += 1
    return {"hours": hours, "sampled": len(sample),
            "symbols": [{"symbol": s, "messages": n} for s, n in counts.most_common(top)]}


async def dmarc(store: Store, hours: int = 24, top: int = 20) -> dict[str, Any]:
    """dmarc - DMARC evaluations by From domain: how many of each result."""
    since = datetime.now(UTC) - timedelta(hours=hours)
    async with store.session() as session:
        rows = (await session.execute(
            select(DmarcEvaluation.header_from, DmarcEvaluation.result, func.count())
            .where(DmarcEvaluation.evaluated_at >= since)
            .group_by(DmarcEvaluation.header_from, DmarcEvaluation.result))).all()
    by_domain: dict[str, Counter[str]] = defaultdict(Counter)
    for domain, result, count in rows:
        by_domain[(domain or "(none)").lower()][result or "none"] += int(count)
    ranked = sorted(by_domain.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:top]
    results = sorted({r for _, c in ranked for r in c})
    return {"hours": hours, "results": results,
            "domains": [{"domain": d, "total": sum(c.values()), "results": dict(c)}
                        for d, c in ranked]}


async def panel(store: Store, name: str, hours: int) -> dict[str, Any] | None:
    """panel - another area's dashboard data, or None when it is not installed."""
    path = PANELS.get(name)
    if path is None:
        return None
    module, _, attribute = path.partition(":")
    try:
        provider = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        return None
    return await provider(store, hours)


Hours = Query(24, ge=1, le=MAX_HOURS, description="how many hours back")


@router.get("/flow", summary="Messages per action per hour")
async def flow_route(request: Request, hours: int = Hours,
                     principal: Principal = Depends(require("stats:read"))) -> dict[str, Any]:
    return await flow(get_gateway(request).services.store, hours)


@router.get("/symbols", summary="The symbols that fired most")
async def symbols_route(request: Request, hours: int = Hours,
                        principal: Principal = Depends(require("stats:read"))
                        ) -> dict[str, Any]:
    return await symbols(get_gateway(request).services.store, hours)


@router.get("/dmarc", summary="DMARC results by sending domain")
async def dmarc_route(request: Request, hours: int = Hours,
                      principal: Principal = Depends(require("stats:read"))) -> dict[str, Any]:
    return await dmarc(get_gateway(request).services.store, hours)


@router.get("/panels/{name}", summary="Incidents, threats or reports, when installed")
async def panel_route(request: Request, name: str, hours: int = Hours,
                      principal: Principal = Depends(require("stats:read"))) -> dict[str, Any]:
    if name not in PANELS:
        raise HTTPException(404, f"no dashboard {name[:40]!r}; one of {', '.join(PANELS)}")
    data = await panel(get_gateway(request).services.store, name, hours)
    if data is None:
        raise HTTPException(501, f"the {name} dashboard is not available in this installation")
    return data

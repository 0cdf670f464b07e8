"""The user-reports dashboard panel: the organisation's figures and the top reporters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from mailward.reports.metrics import stats
from mailward.store import Store
from mailward.store.models import ReportCluster


async def reports(store: Store, hours: int) -> dict[str, Any]:
    """reports - figures over the last hours, and how many campaigns await an analyst."""
    until = datetime.now(UTC)
    figures = await stats(store, until - timedelta(hours=hours), until)
    async with store.session() as session:
        waiting = await session.scalar(select(func.count()).select_from(ReportCluster)
                                       .where(ReportCluster.status == "analyst"))
    return {"hours": hours, "organisation": figures["organisation"],
            "top_reporters": figures["reporters"][:10], "riskiest_users": figures["users"][:10],
            "analyst_queue": int(waiting or 0)}

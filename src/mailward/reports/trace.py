"""The message trace's section on user reports of a message and what they did."""

from __future__ import annotations

from sqlalchemy import select

from mailward.store import Store
from mailward.store.models import ReportAction, ReportCluster, UserReport


async def section(store: Store, queue_id: str) -> tuple[str, list[dict]]:
    """section - the reports of a message, its campaign's verdict and each copy moved."""
    async with store.session() as session:
        reports = (await session.scalars(select(UserReport).where(
            UserReport.queue_id == queue_id).order_by(UserReport.id))).all()
        actions = (await session.scalars(select(ReportAction).where(
            ReportAction.queue_id == queue_id).order_by(ReportAction.id))).all()
        cluster_ids = {r.cluster_id for r in reports if r.cluster_id} | \
            {a.cluster_id for a in actions}
        clusters = {c.id: c for c in (await session.scalars(select(ReportCluster).where(
            ReportCluster.id.in_(cluster_ids)))).all()} if cluster_ids else {}
    rows = []
    for report in reports:
        cluster = clusters.get(report.cluster_id)
        rows.append({"kind": "report", "at": report.reported_at.isoformat(),
                     "reporter": report.reporter, "source": report.source,
                     "campaign": report.cluster_id,
                     "verdict": cluster.verdict if cluster else "",
                     "status": cluster.status if cluster else report.status})
    for action in actions:
        rows.append({"kind": "action", "at": action.at.isoformat(),
                     "recipient": action.recipient, "campaign": action.cluster_id,
                     "verdict": action.verdict, "from": action.from_folder,
                     "to": action.to_folder, "outcome": action.outcome})
    return "User reports", rows

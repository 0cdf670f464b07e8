"""Report figures: how well each reporter reports, who is at risk, how the organisation does.

Over a period (reports made from ``since`` until ``until``):

- per reporter: reports, confirmed reports (the campaign was malicious,
  spam or an own simulation), false reports (clean), accuracy (confirmed
  over all reports), and the median time from delivery to report;
- per user: a risk score from 0 to 100 combining threats received
  (delivered copies later found malicious, and threats stopped on
  arrival), clicks on bad links (the click log: blocked or warned clicks,
  and any click in a campaign found malicious), reports of real threats and
  false reports (``RISK_WEIGHTS``);
- for the organisation: report rate (reported threat copies over delivered
  threat copies), median time from delivery to the first report of a
  malicious campaign, and the share of malicious campaigns first caught by
  a user (no indicator from another source named them before the first
  report).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select

from mailward.reports.analysis import CLEAN, MALICIOUS, SIMULATION, SPAM
from mailward.store import Store
from mailward.store.models import (
    Click,
    Copy,
    Indicator,
    MessageRecord,
    MessageUrl,
    ReportCluster,
    UserReport,
)

CONFIRMED = (MALICIOUS, SPAM, SIMULATION)
# Each threat received, bad click, real report and false report moves the risk score by:
RISK_WEIGHTS = {"threats": 5.0, "bad_clicks": 30.0, "real_reports": -10.0,
                "false_reports": 3.0}
THREAT_CATEGORIES = ("phish", "malware", "impostor")
MAX_ROWS = 100_000


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def risk_score(threats: int, bad_clicks: int, real_reports: int, false_reports: int) -> float:
    """risk_score - 0 (no sign of risk) to 100 (received much, clicked, never reported)."""
    raw = (RISK_WEIGHTS["threats"] * threats + RISK_WEIGHTS["bad_clicks"] * bad_clicks
           + RISK_WEIGHTS["real_reports"] * real_reports
           + RISK_WEIGHTS["false_reports"] * false_reports)
    return round(max(0.0, min(100.0, raw)), 1)


async def stats(store: Store, since: datetime, until: datetime) -> dict[str, Any]:
    """stats - every report figure over one period."""
    async with store.session() as session:
        reports = (await session.scalars(select(UserReport).where(
            UserReport.reported_at >= since, UserReport.reported_at < until)
            .limit(MAX_ROWS))).all()
        cluster_ids = {r.cluster_id for r in reports if r.cluster_id}
        clusters = {c.id: c for c in (await session.scalars(select(ReportCluster).where(
            ReportCluster.id.in_(cluster_ids)))).all()} if cluster_ids else {}
        malicious = {c.id: c for c in clusters.values()
                     if c.verdict == MALICIOUS and c.status == "acted"}
        bad_ids = sorted({q for c in malicious.values()
                          for q in list(c.queue_ids) + list(c.evidence.get("related", []))})
        bad_copies = []
        for start in range(0, len(bad_ids), 500):
            bad_copies.extend((await session.execute(select(Copy.queue_id, Copy.recipient)
                                                     .where(Copy.queue_id.in_(
                                                         bad_ids[start:start + 500])))).all())
        stopped = (await session.execute(select(MessageRecord.recipients).where(
            MessageRecord.received_at >= since, MessageRecord.received_at < until,
            MessageRecord.action.in_(("quarantine", "reject")),
            MessageRecord.category.in_(THREAT_CATEGORIES)).limit(MAX_ROWS))).all()
        clicks = (await session.execute(select(Click.recipient, Click.queue_id, Click.verdict)
                                        .where(Click.clicked_at >= since,
                                               Click.clicked_at < until,
                                               Click.automated.is_(False))
                                        .limit(MAX_ROWS))).all()
        first_caught = await _first_caught(session, malicious, reports)
    by_reporter = _reporters(reports, clusters)
    users = _users(reports, clusters, bad_copies, stopped, clicks, set(bad_ids))
    reported_pairs = {(r.queue_id, r.reporter) for r in reports if r.cluster_id in malicious}
    delivered = {(q, r) for q, r in bad_copies}
    first_delays = []
    for cluster in malicious.values():
        times = [r.reported_at for r in reports if r.cluster_id == cluster.id]
        if times and cluster.first_delivered_at:
            first_delays.append((min(times) - cluster.first_delivered_at).total_seconds())
    verdicts: dict[str, int] = defaultdict(int)
    for cluster in clusters.values():
        verdicts[cluster.verdict or cluster.status] += 1
    organisation = {
        "reports": sum(1 for r in reports if r.status != "unmatched"),
        "unmatched": sum(1 for r in reports if r.status == "unmatched"),
        "campaigns": len(clusters), "campaigns_by_verdict": dict(verdicts),
        "threat_copies_delivered": len(delivered),
        "threat_copies_reported": len(reported_pairs & delivered),
        "report_rate": round(len(reported_pairs & delivered) / len(delivered), 4)
        if delivered else None,
        "median_seconds_to_first_report": _median(first_delays),
        "malicious_campaigns": len(malicious),
        "first_caught_by_user": first_caught,
        "share_first_caught_by_user": round(first_caught / len(malicious), 4)
        if malicious else None,
    }
    return {"since": since.isoformat(), "until": until.isoformat(),
            "organisation": organisation, "reporters": by_reporter, "users": users}


def _reporters(reports, clusters) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    delays: dict[str, list[float]] = defaultdict(list)
    for report in reports:
        if report.status == "unmatched":
            continue
        row = rows.setdefault(report.reporter, {"reporter": report.reporter, "reports": 0,
                                                "confirmed": 0, "false": 0, "pending": 0})
        row["reports"] += 1
        cluster = clusters.get(report.cluster_id)
        if cluster is None or cluster.status != "acted":
            row["pending"] += 1
        elif cluster.verdict in CONFIRMED:
            row["confirmed"] += 1
        elif cluster.verdict == CLEAN:
            row["false"] += 1
        if report.delivered_at:
            delays[report.reporter].append(
                (report.reported_at - report.delivered_at).total_seconds())
    for reporter, row in rows.items():
        row["accuracy"] = round(row["confirmed"] / row["reports"], 4)
        row["median_seconds_from_delivery"] = _median(delays[reporter])
    return sorted(rows.values(), key=lambda r: (-r["confirmed"], r["reporter"]))


def _users(reports, clusters, bad_copies, stopped, clicks, bad_ids) -> list[dict[str, Any]]:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {
        "threats": 0, "bad_clicks": 0, "real_reports": 0, "false_reports": 0})
    for _, recipient in bad_copies:
        counts[recipient.lower()]["threats"] += 1
    for (recipients,) in stopped:
        for recipient in recipients or []:
            counts[str(recipient).lower()]["threats"] += 1
    for recipient, queue_id, verdict in clicks:
        if verdict != "allowed" or queue_id in bad_ids:
            counts[recipient.lower()]["bad_clicks"] += 1
    for report in reports:
        cluster = clusters.get(report.cluster_id)
        if cluster is None or cluster.status != "acted":
            continue
        if cluster.verdict in (MALICIOUS, SIMULATION):
            counts[report.reporter]["real_reports"] += 1
        elif cluster.verdict == CLEAN:
            counts[report.reporter]["false_reports"] += 1
    rows = [{"user": user, **values, "risk": risk_score(**values)}
            for user, values in counts.items()]
    return sorted(rows, key=lambda r: (-r["risk"], r["user"]))


async def _first_caught(session, malicious: dict[int, ReportCluster], reports) -> int:
    """_first_caught - malicious campaigns no other source named before their first report."""
    caught = 0
    for cluster in malicious.values():
        times = [r.reported_at for r in reports if r.cluster_id == cluster.id]
        if not times:
            continue
        urls = (await session.scalars(select(MessageUrl.url).where(
            MessageUrl.queue_id.in_(list(cluster.queue_ids)[:500])).limit(500))).all()
        earlier = None
        if urls:
            earlier = await session.scalar(select(Indicator.id).where(
                Indicator.type == "url", Indicator.value.in_(list(urls)),
                Indicator.source != "user-report", Indicator.first_seen < min(times))
                .limit(1))
        caught += earlier is None
    return caught

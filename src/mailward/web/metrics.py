"""``/metrics`` in the Prometheus text format (prometheus-client).

Two kinds of figure: what this process measured since it started (the time
each check took, from ``Task.timings``, and the whole judgement), and what
the store says at scrape time, shared by every node (messages by action,
the delivery queue's depth, quarantine held, clicks by verdict, delivered
copies by state, which counts pulls once copies are retracted, and the
sandbox backlog: detonations queued, running or being polled).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func, select

from mailward.store.models import (
    Click,
    Copy,
    Delivery,
    MessageRecord,
    QuarantineItem,
    SandboxJob,
)
from mailward.web.deps import COOKIE, current_principal, get_gateway, refuse

if TYPE_CHECKING:
    from mailward.pipeline import Task
    from mailward.verdict import Verdict

log = logging.getLogger("mailward.web")
router = APIRouter(tags=["health"])
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ProcessMetrics:
    """Figures this process measures as it judges mail."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.check_seconds = Histogram("mailward_check_seconds", "time one check took",
                                       ["check"], buckets=_BUCKETS, registry=self.registry)
        self.judge_seconds = Histogram("mailward_judge_seconds",
                                       "time the data-stage pipeline took for one message",
                                       buckets=_BUCKETS, registry=self.registry)

    def observe(self, task: "Task", verdict: "Verdict") -> None:
        """observe - record one judged message's timings."""
        for name, seconds in task.timings.items():
            if name == "pipeline":
                self.judge_seconds.observe(seconds)
            else:
                self.check_seconds.labels(name).observe(seconds)


class _Snapshot:
    """A collector of values read from the store just before the scrape."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self):
        return iter(self.families)


async def store_families(store) -> list[Any]:
    """store_families - the shared figures, read from the store."""
    async with store.session() as session:
        by_action = (await session.execute(select(MessageRecord.action, func.count())
                                           .where(MessageRecord.direction == "inbound")
                                           .group_by(MessageRecord.action))).all()
        queue = (await session.execute(select(Delivery.status, func.count())
                                       .where(Delivery.status.in_(("pending", "deferred")))
                                       .group_by(Delivery.status))).all()
        held = await session.scalar(select(func.count()).where(QuarantineItem.status == "held"))
        clicks = (await session.execute(select(Click.verdict, func.count())
                                        .group_by(Click.verdict))).all()
        copies = (await session.execute(select(Copy.state, func.count())
                                        .group_by(Copy.state))).all()
        sandbox = dict((await session.execute(
            select(SandboxJob.status, func.count()).where(SandboxJob.status != "done")
            .group_by(SandboxJob.status))).all())
    messages = CounterMetricFamily("mailward_messages", "inbound messages by action",
                                   labels=["action"])
    for action, count in by_action:
        messages.add_metric([action or "none"], count)
    depth = GaugeMetricFamily("mailward_queue_depth", "deliveries waiting", labels=["status"])
    for status in ("pending", "deferred"):
        depth.add_metric([status], dict(queue).get(status, 0))
    quarantined = GaugeMetricFamily("mailward_quarantine_held", "messages held in quarantine",
                                    value=held or 0)
    clicked = CounterMetricFamily("mailward_clicks", "clicks on rewritten links by verdict",
                                  labels=["verdict"])
    for verdict, count in clicks:
        clicked.add_metric([verdict], count)
    copy_states = GaugeMetricFamily("mailward_copies", "delivered copies by state "
                                    "(retracted ones are pulls)", labels=["state"])
    for state, count in copies:
        copy_states.add_metric([state], count)
    backlog = GaugeMetricFamily("mailward_sandbox_backlog", "sandbox detonations not "
                                "finished", labels=["status"])
    for status in sorted({"queued", "running", "polling", *sandbox}):
        backlog.add_metric([status], sandbox.get(status, 0))
    return [messages, depth, quarantined, clicked, copy_states, backlog]


_bearer = HTTPBearer(auto_error=False)
_cookie = APIKeyCookie(name=COOKIE, auto_error=False)


@router.get("/metrics", summary="Prometheus metrics (scope metrics:read unless public)")
async def metrics(request: Request,
                  credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
                  cookie: str | None = Depends(_cookie)) -> Response:
    gateway = get_gateway(request)
    if not gateway.settings.web.metrics_public:
        principal = await current_principal(request, credentials, cookie)
        if not principal.allows("metrics:read"):
            raise refuse(principal, request, "not allowed: needs metrics:read")
    registry = CollectorRegistry()
    registry.register(_Snapshot(await store_families(gateway.services.store)))
    body = generate_latest(request.app.state.metrics.registry) + generate_latest(registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)

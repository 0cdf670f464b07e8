"""Teaching the spam model from report verdicts: the one place that calls it.

A campaign confirmed as spam by a report is learnt as spam by the model the
running pipeline uses, and the model is saved where ``mailward train``
keeps the site's own model, so the next start loads what was learnt.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from mailward.content.spam import SpamModelCheck, model_path
from mailward.message import Message

if TYPE_CHECKING:
    from mailward.gateway import Gateway

log = logging.getLogger("mailward.reports")
_lock = asyncio.Lock()


def _running_check(gateway: "Gateway") -> SpamModelCheck | None:
    if gateway.pipeline is None:
        return None
    for check in gateway.pipeline.checks:
        if isinstance(check, SpamModelCheck):
            return check
    return None


async def learn(gateway: "Gateway", messages: list[Message], spam: bool) -> int:
    """learn - teach the spam model these messages as spam (or ham); how many learnt."""
    check = _running_check(gateway)
    if check is None or not messages:
        return 0
    # TODO: When the content area's learn function is merged, call it here instead, so
    # that every node shares what is learnt; today the model file is per node.
    labels = [1 if spam else 0] * len(messages)
    path = model_path(gateway.services)
    async with _lock:
        await asyncio.to_thread(check.model.learn, messages, labels)
        await asyncio.to_thread(check.model.save, path)
    log.info("spam model learnt %d message(s) as %s from user reports; saved to %s",
             len(messages), "spam" if spam else "ham", path)
    return len(messages)

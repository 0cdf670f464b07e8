"""Teaching the spam model from report verdicts: the one place that calls it.

A campaign confirmed as spam by a report is learnt as spam through
``content.learn``, the same entry point a "not spam" release and ``mailward
learn`` use: the site's model in the data directory moves, the running
pipeline reloads it, and the journal lets an analyst's override take the
lesson back (``unlearn``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from mailward.content import learn as feedback
from mailward.message import Message

if TYPE_CHECKING:
    from mailward.gateway import Gateway

log = logging.getLogger("mailward.reports")


async def learn(gateway: "Gateway", messages: list[Message], spam: bool) -> int:
    """learn - teach the spam model these messages as spam (or ham); how many changed it."""
    label = "spam" if spam else "ham"
    changed = 0
    for message in messages:
        learnt = await asyncio.to_thread(feedback.learn, gateway.services, message.raw, label)
        changed += learnt.changed
    if messages:
        log.info("spam model learnt %d of %d message(s) as %s from user reports", changed,
                 len(messages), label)
    return changed

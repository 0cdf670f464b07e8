"""The registrable domains of accepted mail, for the never-seen-domain finding.

Each accepted message adds its URLs' registrable domains to ``url_domains``
(first and last seen, how many messages), in the same transaction as the
message's index rows. An insert that meets a concurrent insert of the same
domain updates it instead (``ON CONFLICT``), so two messages with one new
domain never fail each other.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mailward.store.models import UrlDomain
from mailward.urls.heuristics import registrable

if TYPE_CHECKING:
    from mailward.message import Message
    from mailward.store import Store

MAX_DOMAINS = 500

# Domains this process has recorded; a hint for readers that cache counts.
recorded = 0


async def record_domains(session, store: "Store", message: "Message") -> int:
    """record_domains - count the message's URL domains as seen; how many."""
    domains = sorted({registrable(u.host)[:255] for u in message.urls if u.host})[:MAX_DOMAINS]
    if not domains:
        return 0
    now = datetime.now(UTC)
    insert = sqlite_insert if store.is_sqlite else pg_insert
    statement = insert(UrlDomain).values(
        [{"domain": d, "first_seen": now, "last_seen": now, "messages": 1} for d in domains])
    statement = statement.on_conflict_do_update(
        index_elements=["domain"],
        set_={"last_seen": statement.excluded.last_seen,
              "messages": UrlDomain.messages + 1})
    await session.execute(statement)
    global recorded
    recorded += len(domains)
    return len(domains)

"""Tables of the mailward store (SQLAlchemy 2 declarative models).

One schema serves SQLite (the embedded default) and PostgreSQL. Every change
of it is an Alembic migration under ``store/migrations``; these models are
what the migrations must produce.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    pass


class MessageRecord(Base):
    """One received message: envelope, headers of interest, the verdict."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    queue_id: Mapped[str] = mapped_column(String(32), unique=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    direction: Mapped[str] = mapped_column(String(16), default="inbound")
    peer_ip: Mapped[str] = mapped_column(String(64), default="", index=True)
    helo: Mapped[str] = mapped_column(String(255), default="")
    mail_from: Mapped[str] = mapped_column(String(320), default="", index=True)
    header_from: Mapped[str] = mapped_column(String(320), default="", index=True)
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(998), default="", index=True)
    size: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(16), default="", index=True)
    category: Mapped[str | None] = mapped_column(String(16), nullable=True)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    reason: Mapped[str] = mapped_column(Text, default="")
    verdict: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    envelope: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)


class Delivery(Base):
    """The delivery of one message to one recipient, with its retries."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("queue_id", "recipient"),
                      Index("ix_deliveries_due", "status", "next_attempt_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    queue_id: Mapped[str] = mapped_column(ForeignKey("messages.queue_id", ondelete="CASCADE"))
    recipient: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    folder: Mapped[str] = mapped_column(String(64), default="INBOX")
    route: Mapped[str] = mapped_column(String(16), default="inbound")
    # The distribution list the recipient is a member of ("" = addressed directly).
    via: Mapped[str] = mapped_column(String(320), default="")


class Copy(Base):
    """The message index: one delivered copy, where it lives and what it is."""

    __tablename__ = "copies"
    __table_args__ = (UniqueConstraint("queue_id", "recipient"),
                      Index("ix_copies_recipient_sender", "recipient", "sender"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    queue_id: Mapped[str] = mapped_column(ForeignKey("messages.queue_id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(998), default="", index=True)
    recipient: Mapped[str] = mapped_column(String(320))
    mailbox: Mapped[str] = mapped_column(String(32))
    folder: Mapped[str] = mapped_column(String(255), default="INBOX")
    native_id: Mapped[str] = mapped_column(String(512), default="")
    sender: Mapped[str] = mapped_column(String(320), default="", index=True)
    sender_domain: Mapped[str] = mapped_column(String(255), default="", index=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    action: Mapped[str] = mapped_column(String(16), default="")
    score: Mapped[float] = mapped_column(Float, default=0.0)
    delivered_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    state: Mapped[str] = mapped_column(String(16), default="delivered")
    # The distribution list or alias the copy came through ("" = addressed directly).
    via: Mapped[str] = mapped_column(String(320), default="")


class MessageUrl(Base):
    """A normalised URL a message carries, found by its hash or its domain."""

    __tablename__ = "message_urls"
    __table_args__ = (UniqueConstraint("queue_id", "url_hash"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    queue_id: Mapped[str] = mapped_column(ForeignKey("messages.queue_id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    url_hash: Mapped[str] = mapped_column(String(64), index=True)
    domain: Mapped[str] = mapped_column(String(255), index=True)


class MessageFile(Base):
    """A file a message carries: attachment or archive member."""

    __tablename__ = "message_files"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    queue_id: Mapped[str] = mapped_column(ForeignKey("messages.queue_id", ondelete="CASCADE"),
                                          index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(Text, default="")
    content_type: Mapped[str] = mapped_column(String(255), default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)


class SandboxJob(Base):
    """One file of a held message detonated in a sandbox, and what it did."""

    __tablename__ = "sandbox_jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    queue_id: Mapped[str] = mapped_column(ForeignKey("messages.queue_id", ondelete="CASCADE"),
                                          index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(Text, default="")
    path: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(32), default="")
    backend: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    ticket: Mapped[str] = mapped_column(Text, default="")
    verdict: Mapped[str] = mapped_column(String(16), default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    node: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    deadline_at: Mapped[datetime] = mapped_column(UtcDateTime)


class QuarantineItem(Base):
    """A message held for review; the original bytes are in the data directory."""

    __tablename__ = "quarantine"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    queue_id: Mapped[str] = mapped_column(ForeignKey("messages.queue_id", ondelete="CASCADE"),
                                          index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    category: Mapped[str] = mapped_column(String(16), default="policy", index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    sender: Mapped[str] = mapped_column(String(320), default="")
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    size: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="held", index=True)
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    released_by: Mapped[str] = mapped_column(String(320), default="")
    # A delivered copy pulled out of its mailbox and held here (trap.retract_mode
    # = "hold"): which copy and incident, and where and how it was, to put back.
    copy_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    origin_folder: Mapped[str] = mapped_column(String(255), default="")
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    internal_date: Mapped[float] = mapped_column(Float, default=0.0)


class Indicator(Base):
    """A piece of threat intelligence: a URL, domain, IP, hash or sender."""

    __tablename__ = "indicators"
    __table_args__ = (UniqueConstraint("type", "value", "source"),
                      Index("ix_indicators_lookup", "type", "value"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(2048))
    source: Mapped[str] = mapped_column(String(128), default="local")
    category: Mapped[str] = mapped_column(String(16), default="phish")
    confidence: Mapped[int] = mapped_column(Integer, default=100)
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)
    added_at: Mapped[datetime] = mapped_column(UtcDateTime)
    comment: Mapped[str] = mapped_column(Text, default="")
    # The added_at the retro-scan last scanned: a refresh after it is scanned again.
    scanned_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class ApiToken(Base):
    """A bearer token for the REST API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # A token bound to a console user acts as that user (role, addresses).
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True)


class IpReputation(Base):
    """What the verdicts on an IP's past mail say about the IP."""

    __tablename__ = "ip_reputation"

    ip: Mapped[str] = mapped_column(String(64), primary_key=True)
    good: Mapped[int] = mapped_column(Integer, default=0)
    bad: Mapped[int] = mapped_column(Integer, default=0)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)


class Click(Base):
    """One click on a rewritten link: who, when, from where, and the verdict then."""

    __tablename__ = "clicks"
    __table_args__ = (Index("ix_clicks_url_hash_time", "url_hash", "clicked_at"),
                      Index("ix_clicks_recipient_time", "recipient", "clicked_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    queue_id: Mapped[str] = mapped_column(String(32), index=True)
    recipient: Mapped[str] = mapped_column(String(320))
    url: Mapped[str] = mapped_column(Text)
    url_hash: Mapped[str] = mapped_column(String(64))
    clicked_at: Mapped[datetime] = mapped_column(UtcDateTime)
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(Text, default="")
    method: Mapped[str] = mapped_column(String(8), default="GET")
    verdict: Mapped[str] = mapped_column(String(16), default="allowed")
    reason: Mapped[str] = mapped_column(Text, default="")
    automated: Mapped[bool] = mapped_column(default=False)
    automated_reason: Mapped[str] = mapped_column(Text, default="")


class Meta(Base):
    """Small named counters, e.g. the generation of the intelligence store."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


# The console: accounts, sessions, audit, release requests, digests, sender rules.


class User(Base):
    """A console account: a role and the addresses (with aliases) it owns."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    role: Mapped[str] = mapped_column(String(16), default="user")
    addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    digest_every_hours: Mapped[int] = mapped_column(Integer, default=0)
    digest_last_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class WebSession(Base):
    """A console login; the cookie holds a secret whose SHA-256 is the id."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(Text, default="")


class LoginFailure(Base):
    """A failed login, counted to slow down password guessing."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(128), index=True)
    client_ip: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class AuditEntry(Base):
    """One administrative action or refusal: who, what, when, from where."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    role: Mapped[str] = mapped_column(String(16), default="")
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(512), default="", index=True)
    outcome: Mapped[str] = mapped_column(String(16), default="ok")
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ReleaseRequest(Base):
    """A user's request to release a message only staff may release.

    Its status is pending, approved, denied, or closed when the message left
    the quarantine another way (released or deleted); ``reason`` says how.
    """

    __tablename__ = "release_requests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    quarantine_id: Mapped[str] = mapped_column(
        ForeignKey("quarantine.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    comment: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    decided_by: Mapped[str] = mapped_column(String(200), default="")
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    reason: Mapped[str] = mapped_column(String(300), default="")


class DigestLink(Base):
    """A signed one-click action handed out in a digest; usable once."""

    __tablename__ = "digest_links"

    nonce: Mapped[str] = mapped_column(String(43), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         index=True)
    quarantine_id: Mapped[str] = mapped_column(
        ForeignKey("quarantine.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class SenderRule(Base):
    """An allow or block entry for a sender, for everyone or one recipient."""

    __tablename__ = "sender_rules"
    __table_args__ = (UniqueConstraint("kind", "sender", "recipient"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(8))
    sender: Mapped[str] = mapped_column(String(320), index=True)
    recipient: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(200), default="")
class UrlDomain(Base):
    """A registrable domain seen in the URLs of accepted mail, and how often."""

    __tablename__ = "url_domains"

    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    messages: Mapped[int] = mapped_column(BigInteger, default=1)
class DmarcEvaluation(Base):
    """One DMARC evaluation: the rows of RFC 7489 aggregate reports."""

    __tablename__ = "dmarc_evaluations"
    __table_args__ = (Index("ix_dmarc_evaluations_domain_time", "policy_domain",
                            "evaluated_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    queue_id: Mapped[str] = mapped_column(String(32), index=True)
    evaluated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    source_ip: Mapped[str] = mapped_column(String(64), default="")
    header_from: Mapped[str] = mapped_column(String(255), default="")
    envelope_from: Mapped[str] = mapped_column(String(255), default="")
    policy_domain: Mapped[str] = mapped_column(String(255))
    p: Mapped[str] = mapped_column(String(16), default="none")
    sp: Mapped[str] = mapped_column(String(16), default="")
    pct: Mapped[int] = mapped_column(Integer, default=100)
    adkim: Mapped[str] = mapped_column(String(1), default="r")
    aspf: Mapped[str] = mapped_column(String(1), default="r")
    rua: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str] = mapped_column(String(16), default="")
    disposition: Mapped[str] = mapped_column(String(16), default="none")
    dkim_aligned: Mapped[bool] = mapped_column(default=False)
    spf_aligned: Mapped[bool] = mapped_column(default=False)
    override: Mapped[str] = mapped_column(String(32), default="")
    override_comment: Mapped[str] = mapped_column(Text, default="")
    spf_domain: Mapped[str] = mapped_column(String(255), default="")
    spf_result: Mapped[str] = mapped_column(String(16), default="none")
    dkim_results: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class ProtectedPerson(Base):
    """A person whose name impostors borrow (VIP): names, addresses, role."""

    __tablename__ = "protected_people"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    role: Mapped[str] = mapped_column(String(200), default="")
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    added_at: Mapped[datetime] = mapped_column(UtcDateTime)
# User reports: clusters (campaigns decided once), reports, and actions on copies.


class ReportCluster(Base):
    """One reported campaign: look-alike messages decided once, with the evidence."""

    __tablename__ = "report_clusters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    # Look-alike keys: sender domain with the normalised subject, and a body fingerprint.
    subject_key: Mapped[str] = mapped_column(String(64), default="", index=True)
    body_key: Mapped[str] = mapped_column(String(64), default="", index=True)
    queue_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    sender: Mapped[str] = mapped_column(String(320), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    verdict: Mapped[str] = mapped_column(String(16), default="")
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    simulation: Mapped[bool] = mapped_column(default=False)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    decided_by: Mapped[str] = mapped_column(String(200), default="")
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    acted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    first_delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class UserReport(Base):
    """One user's report of one message, and what became of it."""

    __tablename__ = "user_reports"
    __table_args__ = (Index("ix_user_reports_reporter_time", "reporter", "reported_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reporter: Mapped[str] = mapped_column(String(320))
    reported_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    source: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), default="phish")
    queue_id: Mapped[str] = mapped_column(String(32), default="", index=True)
    message_id: Mapped[str] = mapped_column(String(998), default="")
    matched_by: Mapped[str] = mapped_column(String(32), default="")
    cluster_id: Mapped[int | None] = mapped_column(
        ForeignKey("report_clusters.id", ondelete="SET NULL"), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(16), default="received", index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")


class ReportAction(Base):
    """One move of one delivered copy because of a report verdict."""

    __tablename__ = "report_actions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    cluster_id: Mapped[int] = mapped_column(
        ForeignKey("report_clusters.id", ondelete="CASCADE"), index=True)
    queue_id: Mapped[str] = mapped_column(String(32), index=True)
    recipient: Mapped[str] = mapped_column(String(320))
    verdict: Mapped[str] = mapped_column(String(16))
    from_folder: Mapped[str] = mapped_column(String(255), default="")
    to_folder: Mapped[str] = mapped_column(String(255), default="")
    outcome: Mapped[str] = mapped_column(String(16), default="moved")
    detail: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)

# Post-delivery response: retractions, incidents, campaign rules, feeds.


class Retraction(Base):
    """One pull or restore of a delivered copy: where it was, where it went."""

    __tablename__ = "retractions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    copy_id: Mapped[int] = mapped_column(ForeignKey("copies.id", ondelete="CASCADE"),
                                         index=True)
    queue_id: Mapped[str] = mapped_column(String(32), index=True)
    recipient: Mapped[str] = mapped_column(String(320), index=True)
    action: Mapped[str] = mapped_column(String(16), default="retract")
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    was_read: Mapped[bool | None] = mapped_column(nullable=True)
    from_folder: Mapped[str] = mapped_column(String(255), default="")
    to_folder: Mapped[str] = mapped_column(String(255), default="")
    native_before: Mapped[str] = mapped_column(String(512), default="")
    native_after: Mapped[str] = mapped_column(String(512), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    actor: Mapped[str] = mapped_column(String(200), default="")
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class Incident(Base):
    """What one bad indicator or campaign did: copies, pulls, clicks, workflow."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(512), unique=True)
    title: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16), default="indicator")
    indicator_type: Mapped[str] = mapped_column(String(16), default="")
    indicator_value: Mapped[str] = mapped_column(String(2048), default="")
    category: Mapped[str] = mapped_column(String(16), default="phish")
    source: Mapped[str] = mapped_column(String(128), default="")
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    assessment: Mapped[str] = mapped_column(String(32), default="pending", index=True)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class IncidentCopy(Base):
    """A delivered copy an incident found, and what became of it."""

    __tablename__ = "incident_copies"
    __table_args__ = (UniqueConstraint("incident_id", "copy_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"),
                                             index=True)
    copy_id: Mapped[int] = mapped_column(ForeignKey("copies.id", ondelete="CASCADE"),
                                         index=True)
    matched_on: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(16), default="")
    pulled_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    was_read: Mapped[bool | None] = mapped_column(nullable=True)
    found_at: Mapped[datetime] = mapped_column(UtcDateTime)
    restored_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    restored_by: Mapped[str] = mapped_column(String(200), default="")


class CampaignRule(Base):
    """A look-alike rule made from an incident: infrastructure, URLs, hashes, body."""

    __tablename__ = "campaign_rules"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    fingerprint: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    category: Mapped[str] = mapped_column(String(16), default="phish")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")


class MessageFingerprint(Base):
    """The fuzzy (TLSH) hash of a message's text, for campaign rules."""

    __tablename__ = "message_fingerprints"

    queue_id: Mapped[str] = mapped_column(ForeignKey("messages.queue_id", ondelete="CASCADE"),
                                          primary_key=True)
    tlsh: Mapped[str] = mapped_column(String(80), default="", index=True)


class FeedState(Base):
    """Where a polled feed (a TAXII collection) was read up to."""

    __tablename__ = "feed_state"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    cursor: Mapped[str] = mapped_column(Text, default="")
    polled_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")


class ForcedIndicator(Base):
    """An indicator an analyst forced past the too-common refusal."""

    __tablename__ = "forced_indicators"

    key: Mapped[str] = mapped_column(String(2100), primary_key=True)
    forced_at: Mapped[datetime] = mapped_column(UtcDateTime)
    forced_by: Mapped[str] = mapped_column(String(200), default="")


class ForwardLink(Base):
    """A message a local recipient forwarded to another, linked to its original."""

    __tablename__ = "forward_links"
    __table_args__ = (UniqueConstraint("queue_id", "original_queue_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # The forward (a new message through the gateway) and the copy it forwards.
    queue_id: Mapped[str] = mapped_column(ForeignKey("messages.queue_id", ondelete="CASCADE"),
                                          index=True)
    original_queue_id: Mapped[str] = mapped_column(String(32), index=True)
    forwarder: Mapped[str] = mapped_column(String(320), default="")
    matched_by: Mapped[str] = mapped_column(String(32), default="")
    linked_at: Mapped[datetime] = mapped_column(UtcDateTime)

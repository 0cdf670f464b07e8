"""Console accounts: users, argon2 passwords, sessions and login throttling.

A user has a role (admin, analyst, user) and the addresses it owns, aliases
included; a user of role ``user`` sees only mail addressed to those.

SECURITY: passwords are stored only as argon2id hashes (argon2-cffi, its
recommended parameters) and rehashed when those change. A session cookie is
32 random bytes; the store keeps its SHA-256, so a copy of the database holds
no usable session. Failed logins are counted in the store (so several nodes
share the count) and refused with 429 past three limits: a low one for one
user from one client IP, one for a client IP whatever the user, and a much
higher one for a user across all IPs. A guesser at one address therefore
cannot lock a user out of their account from everywhere else; only guessing
spread over many addresses reaches the per-user limit. A failed login for an
unknown user costs the same argon2 verification as for a known one, so timing
does not tell names apart.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select

from mailward.store import Store
from mailward.store.models import AuditEntry, LoginFailure, User, WebSession
from mailward.web.security import sha256_hex

log = logging.getLogger("mailward.web")

ROLES = ("admin", "analyst", "user")
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
ADDRESS = re.compile(r"[^@\s\"<>(),;:\\\[\]]{1,64}@[A-Za-z0-9.-]{1,255}")
MIN_PASSWORD = 10
# An address a user logged in from this recently is spared the per-user login limit.
KNOWN_ADDRESS_DAYS = 30
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class AccountError(ValueError):
    """A request about accounts that cannot be done; the text says why."""


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise AccountError("a password may have at most 1024 characters")
    return _hasher.hash(password)


def check_password(stored: str, password: str) -> bool:
    """check_password - does password match the stored argon2 hash."""
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password[:1024]) and bool(stored)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def normalise_addresses(addresses: list[str]) -> list[str]:
    """normalise_addresses - lower-cased, checked, unique e-mail addresses."""
    result: list[str] = []
    for address in addresses:
        address = address.strip().lower()
        if not address:
            continue
        if not ADDRESS.fullmatch(address):
            raise AccountError(f"{address!r} is not an e-mail address")
        if address not in result:
            result.append(address)
    return result


def parse_schedule(text: str) -> int:
    """parse_schedule - hours between digests from off, daily or a number of hours."""
    value = str(text).strip().lower()
    if value in ("off", "0", "never", ""):
        return 0
    if value == "daily":
        return 24
    if value.endswith("h"):
        value = value[:-1]
    if not value.isdigit() or not 1 <= int(value) <= 24 * 31:
        raise AccountError(f"{text!r} is not off, daily or a number of hours (1-744)")
    return int(value)


def schedule_text(hours: int) -> str:
    return "off" if not hours else "daily" if hours == 24 else f"every {hours}h"


class Accounts:
    """Users and sessions in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self, username: str, password: str | None, role: str,
                     addresses: list[str]) -> User:
        """create - a new user; AccountError when the name is taken or input is bad."""
        if not USERNAME.fullmatch(username):
            raise AccountError(f"{username!r} is not a user name (letters, digits, ._@+-)")
        if role not in ROLES:
            raise AccountError(f"role {role!r} is not one of {', '.join(ROLES)}")
        hashed = hash_password(password) if password is not None else ""
        user = User(username=username, password_hash=hashed, role=role,
                    addresses=normalise_addresses(addresses), created_at=datetime.now(UTC))
        async with self.store.session() as session:
            if await session.scalar(select(User.id).where(User.username == username)):
                raise AccountError(f"user {username!r} exists")
            session.add(user)
            await session.commit()
        return user

    async def get(self, user_id: int) -> User | None:
        async with self.store.session() as session:
            return await session.get(User, user_id)

    async def by_name(self, username: str) -> User | None:
        async with self.store.session() as session:
            return await session.scalar(select(User).where(User.username == username))

    async def list(self) -> list[User]:
        async with self.store.session() as session:
            return list((await session.scalars(select(User).order_by(User.username))).all())

    async def update(self, user_id: int, *, role: str | None = None,
                     addresses: list[str] | None = None, password: str | None = None,
                     digest_every_hours: int | None = None,
                     disabled: bool | None = None) -> User:
        """update - change the named fields of one user."""
        async with self.store.session() as session:
            user = await session.get(User, user_id)
            if user is None:
                raise AccountError(f"no user {user_id}")
            if role is not None:
                if role not in ROLES:
                    raise AccountError(f"role {role!r} is not one of {', '.join(ROLES)}")
                user.role = role
            if addresses is not None:
                user.addresses = normalise_addresses(addresses)
            if password is not None:
                user.password_hash = hash_password(password)
                await session.execute(delete(WebSession).where(WebSession.user_id == user_id))
            if digest_every_hours is not None:
                user.digest_every_hours = digest_every_hours
            if disabled is not None:
                user.disabled_at = datetime.now(UTC) if disabled else None
                if disabled:
                    await session.execute(delete(WebSession).where(
                        WebSession.user_id == user_id))
            await session.commit()
            return user

    # Logging in.

    async def throttled(self, username: str, ip: str, window: float, per_pair: int,
                        per_ip: int, per_user: int) -> str:
        """throttled - which limit of failed logins lately this attempt is past, or ''.

        per_pair counts failures for this user from this IP, per_ip those from
        this IP for any user, per_user those for this user from every IP. The
        per_user limit spares an address the user logged in from within
        KNOWN_ADDRESS_DAYS, so guessing spread over many addresses cannot lock
        the user out of their own; the other two limits still hold there.
        """
        since = datetime.now(UTC) - timedelta(seconds=window)
        user = LoginFailure.username == username[:128]
        address = LoginFailure.client_ip == ip[:64]
        recent = LoginFailure.at >= since
        async with self.store.reading() as session:
            pair = await session.scalar(select(func.count()).where(user, address, recent))
            by_ip = await session.scalar(select(func.count()).where(address, recent))
            by_user = await session.scalar(select(func.count()).where(user, recent))
        if (pair or 0) >= per_pair:
            return "this user from this address"
        if (by_ip or 0) >= per_ip:
            return "this address"
        if (by_user or 0) >= per_user and not await self.known_address(username, ip):
            return "this user from all addresses"
        return ""

    async def known_address(self, username: str, ip: str) -> bool:
        """known_address - the user logged in from this IP within KNOWN_ADDRESS_DAYS."""
        since = datetime.now(UTC) - timedelta(days=KNOWN_ADDRESS_DAYS)
        async with self.store.reading() as session:
            found = await session.scalar(select(AuditEntry.id).where(
                AuditEntry.actor == f"user:{username[:128]}", AuditEntry.action == "login",
                AuditEntry.outcome == "ok", AuditEntry.client_ip == ip[:64],
                AuditEntry.at >= since).limit(1))
        return found is not None

    async def authenticate(self, username: str, password: str, ip: str) -> User | None:
        """authenticate - the live user for these credentials; failures are counted."""
        user = await self.by_name(username[:128]) if USERNAME.fullmatch(username) else None
        stored = user.password_hash if user is not None else ""
        ok = check_password(stored, password)
        if ok and user is not None and user.disabled_at is None:
            if _hasher.check_needs_rehash(stored):
                async with self.store.session() as session:
                    (await session.get(User, user.id)).password_hash = _hasher.hash(password)
                    await session.commit()
            # Forget only this address's failures: a guesser elsewhere keeps
            # its count however often the user logs in.
            async with self.store.session() as session:
                await session.execute(delete(LoginFailure).where(
                    LoginFailure.username == user.username,
                    LoginFailure.client_ip == ip[:64]))
                await session.commit()
            return user
        async with self.store.session() as session:
            session.add(LoginFailure(username=username[:128], client_ip=ip[:64],
                                     at=datetime.now(UTC)))
            await session.commit()
        return None

    async def open_session(self, user: User, lifetime: float, ip: str,
                           user_agent: str) -> tuple[str, WebSession]:
        """open_session - a new session; returns the cookie value (shown once)."""
        secret = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        row = WebSession(id=sha256_hex(secret), user_id=user.id,
                         csrf_token=secrets.token_urlsafe(32), created_at=now,
                         expires_at=now + timedelta(seconds=lifetime), client_ip=ip[:64],
                         user_agent=user_agent[:500])
        async with self.store.session() as session:
            await session.execute(delete(WebSession).where(WebSession.expires_at < now))
            session.add(row)
            await session.commit()
        return secret, row

    async def session_user(self, secret: str) -> tuple[WebSession, User] | None:
        """session_user - the live session and its enabled user for a cookie value."""
        if not secret or len(secret) > 100:
            return None
        async with self.store.session() as session:
            row = await session.get(WebSession, sha256_hex(secret))
            if row is None or row.expires_at <= datetime.now(UTC):
                return None
            user = await session.get(User, row.user_id)
        if user is None or user.disabled_at is not None:
            return None
        return row, user

    async def close_session(self, secret: str) -> None:
        async with self.store.session() as session:
            await session.execute(delete(WebSession).where(
                WebSession.id == sha256_hex(secret)))
            await session.commit()


@dataclass(frozen=True, slots=True)
class UserView:
    """What the API shows of a user (never the password hash)."""

    id: int
    username: str
    role: str
    addresses: list[str]
    digest: str
    disabled: bool

    @classmethod
    def of(cls, user: User) -> "UserView":
        return cls(user.id, user.username, user.role, list(user.addresses or []),
                   schedule_text(user.digest_every_hours), user.disabled_at is not None)

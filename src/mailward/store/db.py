"""The database engine, sessions and migrations.

SQLite runs in WAL mode, every transaction taking the write lock at its
start; PostgreSQL is used through asyncpg. The schema is brought to the newest Alembic
revision when the store opens.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from mailward.config import ConfigError

log = logging.getLogger("mailward.store")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL with synchronous=NORMAL survives any crash of the process; after a
    # power loss the newest commits may be lost, and the spool (fsynced before
    # every 250) is what makes that safe: see Gateway.recover.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # Take the write lock at the start of a transaction: a deferred one that
    # reads and then writes fails at once with "database is locked" when
    # another writer went first, where an immediate one waits its turn.
    # Sessions from Store.reading only read, and in WAL mode a reader never
    # waits for the writer, so they begin deferred.
    if connection.get_execution_options().get("mailward_read_only"):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(connection: Connection | None = None) -> Config:
    """alembic_config - the migration environment inside the package."""
    config = Config()
    config.set_main_option("script_location",
                           str(resources.files("mailward.store").joinpath("migrations")))
    config.attributes["connection"] = connection
    return config


class Store:
    """The engine and a session factory for one database URL."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        options: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            options["connect_args"] = {"timeout": 30}
        else:
            options.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **options)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        self.session = async_sessionmaker(self.engine, expire_on_commit=False,
                                          class_=AsyncSession)
        # For sessions that only read: on SQLite they do not take the write
        # lock, so they neither wait for writers nor hold them up.
        self.reading = async_sessionmaker(
            self.engine.execution_options(mailward_read_only=True),
            expire_on_commit=False, class_=AsyncSession)

    async def migrate(self) -> None:
        """migrate - bring the schema to the newest revision."""
        await self.check_connection()
        async with self.engine.begin() as connection:
            await connection.run_sync(_upgrade)

    async def check_connection(self) -> None:
        """check_connection - ConfigError naming the setting unless the database answers."""
        try:
            async with self.engine.connect() as connection:
                await connection.exec_driver_sql("SELECT 1")
        except (OSError, DBAPIError) as error:
            raise ConfigError(_connect_error(self.url, error)) from None
        except Exception as error:  # asyncpg's own errors (bad password, no database)
            if type(error).__module__.split(".")[0] != "asyncpg":
                raise
            raise ConfigError(_connect_error(self.url, error)) from None

    async def close(self) -> None:
        await self.engine.dispose()


def _connect_error(url: str, error: Exception) -> str:
    """_connect_error - one line: which setting, which database (no password), the cause."""
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    text = " ".join(str(cause).split()) or type(cause).__name__
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:
        shown = "the database"
    key = "storage.database_url"
    shown = shown.replace("+asyncpg://", "://", 1)
    if url.startswith("sqlite"):
        shown = url.split(":///", 1)[-1]
    return f"{key}: cannot open {shown}: {text[:300]}"


def _upgrade(connection: Connection) -> None:
    # "heads": each area of mailward may start its own branch of revisions.
    command.upgrade(alembic_config(connection), "heads")

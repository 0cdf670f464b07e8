"""The store: SQLAlchemy on SQLite (embedded) or PostgreSQL, with migrations."""

from mailward.store.db import Store

__all__ = ["Store"]

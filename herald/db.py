"""Database engine and sessions (SQLite embedded default, PostgreSQL in production)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy
from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from herald.settings import Settings

__all__ = ["Transactions", "create_engine", "session_factory"]

T = TypeVar("T")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the web process read while a worker writes; busy_timeout makes a
    # writer wait for the lock instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_engine(settings: Settings | str) -> AsyncEngine:
    """An engine for the configured database; the caller disposes of it."""
    url = settings if isinstance(settings, str) else settings.database_url
    if url.startswith("sqlite"):
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _sync_sqlite_engine(engine: AsyncEngine) -> sqlalchemy.Engine:
    url = engine.url.set(drivername="sqlite")
    # Connections move between executor threads, one thread at a time.
    sync = sqlalchemy.create_engine(url, connect_args={"check_same_thread": False})
    event.listen(sync, "connect", _sqlite_pragmas)
    return sync


_SHARED_SYNC: weakref.WeakKeyDictionary[AsyncEngine, sqlalchemy.Engine] = (
    weakref.WeakKeyDictionary()
)


class Transactions:
    """Runs a synchronous function in one DB transaction, for hot batched writes.

    Through aiosqlite every statement is a round trip to its thread, and on a busy
    event loop each one waits for the loop; a batch transaction of a few
    statements cost milliseconds that way. SQLite's transactions therefore run
    whole in one worker thread, on a synchronous engine over the same file;
    PostgreSQL's run on the async engine's connection (``run_sync``).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._async = engine
        self._sync: sqlalchemy.Engine | None = None
        if engine.dialect.name == "sqlite":
            self._sync = _sync_sqlite_engine(engine)

    @classmethod
    def shared(cls, engine: AsyncEngine) -> Transactions:
        """Transactions on ``engine`` for a hot path that runs many times (a request
        handler): SQLite's synchronous engine is made once per ``engine`` and
        disposed of when ``engine`` is garbage, so each call costs no new pool.
        Do not :meth:`close` it."""
        shared = cls.__new__(cls)
        shared._async = engine
        shared._sync = None
        if engine.dialect.name == "sqlite":
            shared._sync = _SHARED_SYNC.get(engine)
            if shared._sync is None:
                shared._sync = _SHARED_SYNC[engine] = _sync_sqlite_engine(engine)
                # The finaliser holds the sync engine only, never ``engine`` itself.
                weakref.finalize(engine, shared._sync.dispose)
        return shared

    async def run(self, work: Callable[[Connection], T]) -> T:
        if self._sync is not None:
            return await asyncio.to_thread(self._run_sync, work)
        async with self._async.begin() as conn:
            return await conn.run_sync(work)

    def _run_sync(self, work: Callable[[Connection], T]) -> T:
        assert self._sync is not None
        with self._sync.begin() as conn:
            return work(conn)

    def close(self) -> None:
        if self._sync is not None:
            self._sync.dispose()

"""A real Crossbar node with router auth and the bridge running as in-process
tasks, on a migrated SQLite database holding the access-test world."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import components.bridge
import router.service
from herald.accounts import Accounts
from herald.db import create_engine, session_factory
from herald.health import instance_id, is_healthy
from herald.migrate import upgrade_async
from herald.sessions import SessionStore
from herald.settings import Settings
from tests.conftest import make_settings
from tests.crossbar_node import CrossbarNode, crossbar_node
from tests.router.fixtures import World, build_world
from tests.support import eventually

READY_TIMEOUT = 20.0


@dataclass
class Stack:
    settings: Settings
    world: World
    redis: Redis
    store: SessionStore
    node: CrossbarNode
    sessions: async_sessionmaker[AsyncSession]

    @property
    def accounts(self) -> Accounts:
        return Accounts(self.sessions, self.redis, self.store)

    async def ticket(self, username: str) -> str:
        """A fresh WAMP ticket for a new web session of ``username``."""
        _token, web = await self.store.create(self.world.uid(username))
        return await self.store.issue_ticket(web)

    async def wait_ready(self) -> None:
        """Until router auth and the bridge hold their health keys (joined and set up)."""

        async def ready() -> bool:
            me = instance_id()
            return await is_healthy(self.redis, router.service.PROCESS, me) and await is_healthy(
                self.redis, components.bridge.PROCESS, me
            )

        await eventually(ready, timeout=READY_TIMEOUT, what="router auth and bridge joined")


@asynccontextmanager
async def backend_stack(root: Path, redis_url: str) -> AsyncIterator[Stack]:
    """Crossbar + router auth + bridge, ready; everything stopped and closed on exit."""
    database_url = f"sqlite+aiosqlite:///{root / 'herald.db'}"
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    redis = Redis.from_url(redis_url)
    await redis.flushall()
    settings = make_settings(root, redis_url, database_url)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        sessions = session_factory(engine)
        world = await build_world(sessions)
        store = SessionStore(redis, session_ttl=600, ticket_ttl=60)
        with crossbar_node(settings, root / "crossbar") as node:
            tasks = [
                asyncio.create_task(router.service.serve(settings, stop), name="router-auth"),
                asyncio.create_task(components.bridge.serve(settings, stop), name="bridge"),
            ]
            stack = Stack(settings, world, redis, store, node, sessions)
            await stack.wait_ready()
            try:
                yield stack
            finally:
                stop.set()
                async with asyncio.timeout(15):
                    await asyncio.gather(*tasks)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await redis.aclose()
        await engine.dispose()

"""Shared fixtures: a real private redis-server, real SQLite and PostgreSQL databases
(migrated with Alembic), and settings pointing at them.

The full process stack (Crossbar, router auth, bridge, web, worker) lives in
``tests/stack.py`` and is started by the ``stack`` fixture.
"""

from __future__ import annotations

import os
import secrets
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from herald.db import create_engine
from herald.migrate import upgrade_async
from herald.settings import Settings
from tests.support import RedisServer, free_port

POSTGRES_URL = os.environ.get("HERALD_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("herald")


@pytest.fixture(scope="session")
def redis_server(tmp_root: Path) -> Iterator[str]:
    """The URL of a private redis-server shared by the session's tests."""
    server = RedisServer(tmp_root / "redis")
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
async def redis(redis_server: str) -> AsyncIterator[Redis]:
    """A client on the private server, flushed before each test."""
    client = Redis.from_url(redis_server)
    await client.flushall()
    yield client
    await client.aclose()


def _sqlite_url(folder: Path) -> str:
    return f"sqlite+aiosqlite:///{folder / f'herald-{uuid.uuid4().hex[:8]}.db'}"


async def _postgres_database() -> tuple[str, str]:
    """Create a fresh database on the test server; returns (url, name)."""
    import asyncpg

    assert POSTGRES_URL is not None
    name = f"herald_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg", "postgresql"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}", name


async def _drop_postgres_database(name: str) -> None:
    import asyncpg

    assert POSTGRES_URL is not None
    admin = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg", "postgresql"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A freshly migrated database: every DB test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = _sqlite_url(tmp_path)
        await upgrade_async(url)
        yield url
        return
    if POSTGRES_URL is None:
        pytest.skip("PostgreSQL leg skipped: set HERALD_TEST_POSTGRES_URL to run it")
    url, name = await _postgres_database()
    await upgrade_async(url)
    yield url
    await _drop_postgres_database(name)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


def stack_env(root: Path, redis_url: str, database_url: str, **overrides: str) -> dict[str, str]:
    """``HERALD_*`` variables for one test stack, every port private and free."""
    return {
        "HERALD_VAR_DIR": str(root),
        "HERALD_DATABASE_URL": database_url,
        "HERALD_REDIS_URL": redis_url,
        "HERALD_BACKEND_SECRET": secrets.token_urlsafe(24),
        "HERALD_WEB_PORT": str(free_port()),
        "HERALD_ROUTER_PORT": str(free_port()),
        "HERALD_ROUTER_BACKEND_PORT": str(free_port()),
        "HERALD_LOG_FORMAT": "json",
        "HERALD_DEMO_PASSWORD": "demo",
        **overrides,
    }


def make_settings(root: Path, redis_url: str, database_url: str, **overrides: str) -> Settings:
    """Settings for one test, every port private and free."""
    return Settings.from_env(stack_env(root, redis_url, database_url, **overrides))


@pytest.fixture
def settings(tmp_path: Path, redis_server: str, database_url: str) -> Settings:
    return make_settings(tmp_path, redis_server, database_url)


# Debian's Chromium, driven by Playwright (its own browser download does not work here).
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for the session; each test opens its own context."""
    if CHROMIUM is None:
        pytest.skip("browser tests skipped: Debian chromium is not installed (.ci/run installs it)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()

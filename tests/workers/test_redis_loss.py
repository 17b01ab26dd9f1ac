"""Redis losing data or going away mid-run: the DB is the truth and nothing is lost."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from herald.settings import Settings
from tests.conftest import make_settings
from tests.support import RedisServer
from tests.workers.support import assert_all_complete_exactly_once, submit_file
from workers import worker

SUBMISSIONS = 8


@pytest.fixture
async def fast_reconcile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconcile every second instead of every 30 s, so the test need not wait."""
    monkeypatch.setattr(worker, "RECONCILE_SECONDS", 1.0)


async def _run_worker(settings: Settings) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.serve(settings, stop, concurrency=4))
    yield
    stop.set()
    await asyncio.wait_for(task, 30)


async def _submit_many(settings: Settings) -> None:
    for index in range(SUBMISSIONS):
        body = os.urandom(16) + (f"chapter {index} " * 150_000).encode()
        await submit_file(settings, body, f"thesis-{index}.txt", "text/plain")


async def test_flushall_mid_run_the_reconciler_restores_every_pending_task(
    settings: Settings, redis: Redis, fast_reconcile: None
) -> None:
    """After FLUSHALL wipes the queues mid-run, every submission still completes once."""
    runner = _run_worker(settings)
    await anext(runner)
    try:
        await _submit_many(settings)
        await asyncio.sleep(0.3)  # let work get under way: the fault lands mid-run
        await redis.flushall()
        await assert_all_complete_exactly_once(settings, SUBMISSIONS)
    finally:
        await anext(runner, None)


async def test_redis_restart_with_aof_loses_nothing(
    tmp_path: Path, database_url: str, fast_reconcile: None
) -> None:
    """Redis stopped and started again mid-run (AOF on): workers ride it out, nothing lost."""
    server = RedisServer(tmp_path / "redis-aof", persistent=True)
    server.start()
    settings = make_settings(tmp_path, server.url, database_url)
    runner = _run_worker(settings)
    await anext(runner)
    try:
        await _submit_many(settings)
        await asyncio.sleep(0.3)
        server.stop()
        await asyncio.sleep(1.0)  # an outage workers must ride out
        server.start()
        await assert_all_complete_exactly_once(settings, SUBMISSIONS)
    finally:
        await anext(runner, None)
        server.stop()

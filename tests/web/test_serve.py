"""serve(): listens, keeps the web health key while serving, stops cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from herald.health import health_key, instance_id
from tests.conftest import make_settings
from tests.support import eventually
from web import serve


async def test_serve_runs_until_stop(
    tmp_path: Path, redis_server: str, database_url: str, redis: Redis
) -> None:
    """The server answers /healthz and holds its health key until stop is set."""
    settings = make_settings(tmp_path, redis_server, database_url)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, stop))
    key = health_key("web", instance_id())
    try:
        await eventually(lambda: _exists(redis, key), timeout=10, what="web health key")
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{settings.web_url}/healthz") as response,
        ):
            # Its DB and Redis answer; no router runs in this test (see test_health.py).
            checks = (await response.json())["checks"]
            assert checks["db"]["ok"] and checks["redis"]["ok"]
    finally:
        stop.set()
        await asyncio.wait_for(server, 15)
    assert not await redis.exists(key)


async def _exists(redis: Redis, key: str) -> bool:
    return bool(await redis.exists(key))

"""Liveness as Redis keys with a TTL: each long-running process refreshes its key
while it is ready to serve; supervisors and ``--check`` read them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from herald import names

__all__ = [
    "HEALTH_INTERVAL",
    "health_key",
    "healthy_on_this_host",
    "instance_id",
    "is_healthy",
    "keep_health",
]

HEALTH_INTERVAL = 5.0
HEALTH_TTL = 3 * HEALTH_INTERVAL


def instance_id(pid: int | str | None = None) -> str:
    """``host:pid`` of this process (or of ``pid`` on this host; ``"*"`` to match all)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def health_key(process: str, instance: str) -> str:
    return f"{names.KEY_PREFIX}health:{process}:{instance}"


async def keep_health(
    redis: Redis, process: str, instance: str, stop: asyncio.Event, **details: object
) -> None:
    """Refresh the health key until ``stop`` is set, then delete it."""
    key = health_key(process, instance)
    try:
        while not stop.is_set():
            body = json.dumps({"at": time.time(), **details}, default=str)
            # Redis down: the key lapses, which is the truth; try again next beat.
            with contextlib.suppress(RedisError):
                await redis.set(key, body, ex=int(HEALTH_TTL))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEALTH_INTERVAL)
    finally:
        with contextlib.suppress(RedisError):
            await asyncio.shield(redis.delete(key))


async def is_healthy(redis: Redis, process: str, instance: str) -> bool:
    return bool(await redis.exists(health_key(process, instance)))


async def healthy_on_this_host(redis: Redis, process: str) -> bool:
    """Whether some ``process`` on this host holds its health key (what ``--check`` asks).

    A container's processes share its hostname, so "on this host" is "in this container".
    """
    # SCAN walks the whole keyspace; a large COUNT keeps that to a few round trips.
    async for _ in redis.scan_iter(match=health_key(process, instance_id("*")), count=1000):
        return True
    return False

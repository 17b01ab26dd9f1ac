"""Liveness as Redis keys with a TTL: each long-running process refreshes its key
while it is ready to serve; supervisors and ``--check`` read them.

Beside its key, each instance keeps an entry in its host's index for its process
(a sorted set scored by when the key lapses), so "is some worker on this host
healthy?" is two small reads rather than a SCAN of the whole keyspace. With a
million keys in Redis, a SCAN cost Redis 0.29 s of CPU per check that found a
worker and 0.9 s per check that did not; the index, about 2 ms either way.
"""

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
    "host_index_key",
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


def host_index_key(process: str, host: str) -> str:
    """The sorted set of ``process`` instances on ``host``, scored by when each lapses."""
    return f"{names.KEY_PREFIX}health-host:{process}:{host}"


def _host_of(instance: str) -> str:
    return instance.rpartition(":")[0] or instance


async def keep_health(
    redis: Redis, process: str, instance: str, stop: asyncio.Event, **details: object
) -> None:
    """Refresh the health key (and its host index entry) until ``stop`` is set, then
    delete both."""
    key = health_key(process, instance)
    index = host_index_key(process, _host_of(instance))
    try:
        while not stop.is_set():
            now = time.time()
            body = json.dumps({"at": now, **details}, default=str)
            # Redis down: the key lapses, which is the truth; try again next beat.
            with contextlib.suppress(RedisError):
                async with redis.pipeline(transaction=True) as pipe:
                    pipe.set(key, body, ex=int(HEALTH_TTL))
                    pipe.zadd(index, {instance: now + HEALTH_TTL})
                    # Entries of instances that died without deleting theirs.
                    pipe.zremrangebyscore(index, "-inf", now)
                    pipe.expire(index, int(HEALTH_TTL))
                    await pipe.execute()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEALTH_INTERVAL)
    finally:
        with contextlib.suppress(RedisError):
            await asyncio.shield(_forget(redis, key, index, instance))


async def _forget(redis: Redis, key: str, index: str, instance: str) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.zrem(index, instance)
        await pipe.execute()


async def is_healthy(redis: Redis, process: str, instance: str) -> bool:
    return bool(await redis.exists(health_key(process, instance)))


async def healthy_on_this_host(redis: Redis, process: str) -> bool:
    """Whether some ``process`` on this host holds its health key (what ``--check`` asks).

    A container's processes share its hostname, so "on this host" is "in this container".
    The index names the candidates; their keys, with the TTL, remain the truth.
    """
    index = host_index_key(process, socket.gethostname())
    live = await redis.zrangebyscore(index, time.time(), "+inf")
    if not live:
        return False
    instances = [m.decode() if isinstance(m, bytes) else str(m) for m in live]
    return bool(await redis.exists(*(health_key(process, i) for i in instances)))

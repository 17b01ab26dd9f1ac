"""arq job bodies and worker settings: ``arq bench.systems.arq_tasks.WorkerSettings``."""

from __future__ import annotations

import os
import time
from typing import Any

from arq.connections import RedisSettings
from redis.asyncio import Redis

REDIS_URL = os.environ["BENCH_REDIS_URL"]


async def startup(ctx: dict[str, Any]) -> None:
    """Give the job bodies their own client, as every system's bodies have."""
    ctx["bench"] = Redis.from_url(REDIS_URL)


async def incr(ctx: dict[str, Any], key: str) -> None:
    """The drain job: one INCR."""
    await ctx["bench"].incr(key)


async def stamp(ctx: dict[str, Any], key: str) -> None:
    """The latency job: push the time it ran."""
    await ctx["bench"].rpush(key, repr(time.time()))


class WorkerSettings:
    """arq reads these class attributes; everything not set is arq's default."""

    functions = [incr, stamp]
    on_startup = startup
    redis_settings = RedisSettings.from_dsn(REDIS_URL)
    max_jobs = 1000
    # poll_delay stays at its 0.5 s default: arq polls, it does not block.


#: arq logs a line per job at INFO; every system here logs warnings only.
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}

"""SAQ job bodies and worker settings: ``saq bench.systems.saq_tasks.settings``."""

from __future__ import annotations

import os
import time
from typing import Any

from redis.asyncio import Redis
from saq import Queue

REDIS_URL = os.environ["BENCH_REDIS_URL"]
QUEUE_NAME = "bench"


async def startup(ctx: Any) -> None:
    """Give the job bodies their own client, as every system's bodies have."""
    ctx["bench"] = Redis.from_url(REDIS_URL)


# The argument is `target`, not `key`: SAQ's enqueue() takes Job fields and job
# arguments in one **kwargs, and `key` is the Job field that deduplicates jobs.


async def incr(ctx: Any, *, target: str) -> None:
    """The drain job: one INCR."""
    await ctx["bench"].incr(target)


async def stamp(ctx: Any, *, target: str) -> None:
    """The latency job: push the time it ran."""
    await ctx["bench"].rpush(target, repr(time.time()))


settings = {
    "queue": Queue.from_url(REDIS_URL, name=QUEUE_NAME),
    "functions": [incr, stamp],
    "concurrency": 50,
    "startup": startup,
}

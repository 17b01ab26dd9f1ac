"""Dramatiq broker and actors: ``dramatiq bench.systems.dramatiq_tasks``."""

from __future__ import annotations

import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

REDIS_URL = os.environ["BENCH_REDIS_URL"]

dramatiq.set_broker(RedisBroker(url=REDIS_URL))
# Job bodies share one client; redis-py's pool is thread-safe for the 8 threads.
client = redis.Redis.from_url(REDIS_URL)


@dramatiq.actor(queue_name="bench", max_retries=0)
def incr(key: str) -> None:
    """The drain job: one INCR."""
    client.incr(key)


@dramatiq.actor(queue_name="bench", max_retries=0)
def stamp(key: str) -> None:
    """The latency job: push the time it ran."""
    client.rpush(key, repr(time.time()))

"""RQ job bodies: ``rq worker -w rq.worker.SimpleWorker bench``."""

from __future__ import annotations

import os
import time

import redis

client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


def incr(key: str) -> None:
    """The drain job: one INCR."""
    client.incr(key)


def stamp(key: str) -> None:
    """The latency job: push the time it ran."""
    client.rpush(key, repr(time.time()))

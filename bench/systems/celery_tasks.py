"""Celery app and tasks: ``celery -A bench.systems.celery_tasks worker``."""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

REDIS_URL = os.environ["BENCH_REDIS_URL"]

app = Celery("bench", broker=REDIS_URL)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=4,
    task_ignore_result=True,  # and no result backend at all
    task_default_queue="bench",
    broker_connection_retry_on_startup=True,  # silences a deprecation warning
)
client = redis.Redis.from_url(REDIS_URL)


@app.task
def incr(key: str) -> None:
    """The drain job: one INCR."""
    client.incr(key)


@app.task
def stamp(key: str) -> None:
    """The latency job: push the time it ran."""
    client.rpush(key, repr(time.time()))

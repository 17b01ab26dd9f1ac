"""The dashboard's history, from durable records: throughput, failures and execution
time percentiles from the task rows, queue depth from the monitor's samples.

Every query reads one index range (``ix_tasks_status_finished``, or
``ix_queue_samples_at``) and groups in the database, so the answer is a few hundred
rows however many tasks the window holds. Times are bucketed by whole seconds
since the epoch divided by the bucket's length, the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    Select,
    cast,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from herald.models import QueueSample, Task, TaskStatus

__all__ = [
    "HOURS_CHOICES",
    "MAX_HOURS",
    "PERCENTILES",
    "History",
    "durations",
    "durations_query",
    "finished_query",
    "history",
    "hours_from",
    "step_for",
]

HOURS_CHOICES = (1, 6, 24, 72, 168, 336)
MAX_HOURS = 336  # the samples' retention (workers.sampler): two weeks
# Bucket lengths (seconds): the shortest that gives a chart at most MAX_POINTS points.
STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
MAX_POINTS = 72
PERCENTILES = (50, 95, 99)


def step_for(hours: int) -> int:
    """The bucket length for a chart of the last ``hours``."""
    span = hours * 3600
    return next((step for step in STEPS if span / step <= MAX_POINTS), STEPS[-1])


def _epoch(column: Any, dialect: str) -> ColumnElement[int]:
    """Whole seconds since the epoch of a UTC timestamp column."""
    if dialect == "sqlite":
        return cast(func.strftime("%s", column), Integer)
    return cast(func.floor(func.extract("epoch", column)), BigInteger)


def _seconds_between(start: Any, end: Any, dialect: str) -> ColumnElement[float]:
    if dialect == "sqlite":
        return cast((func.julianday(end) - func.julianday(start)) * 86400.0, Float)
    return cast(func.extract("epoch", end - start), Float)


@dataclass
class History:
    """Series per queue over ``buckets`` (their start times, UNIX seconds)."""

    hours: int
    step: int
    buckets: list[int]
    queues: list[str] = field(default_factory=list)
    depth: dict[str, list[int | None]] = field(default_factory=dict)
    running: dict[str, list[int | None]] = field(default_factory=dict)
    throughput: dict[str, list[int]] = field(default_factory=dict)
    failures: dict[str, list[int]] = field(default_factory=dict)
    durations: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "hours": self.hours,
            "step": self.step,
            "buckets": self.buckets,
            "queues": self.queues,
            "depth": self.depth,
            "running": self.running,
            "throughput": self.throughput,
            "failures": self.failures,
            "durations": self.durations,
            "totals": {
                "processed": sum(sum(series) for series in self.throughput.values()),
                "failed": sum(sum(series) for series in self.failures.values()),
            },
        }


def finished_query(since: datetime, step: int, dialect: str) -> Select[Any, Any, Any, Any]:
    """Tasks done and failed for good since ``since``, counted per queue and bucket."""
    bucket = (_epoch(Task.finished_at, dialect) // step).label("bucket")
    return (
        select(Task.queue, Task.status, bucket, func.count())
        .where(Task.status.in_((TaskStatus.DONE, TaskStatus.FAILED)), Task.finished_at >= since)
        # The bucket first: a GROUP BY that starts with status and queue would tempt
        # SQLite into the (status, queue, queued_at) index for its order, reading every
        # task ever finished instead of the window's range.
        .group_by(bucket, Task.queue, Task.status)
    )


async def _finished(
    db: AsyncSession, since: datetime, step: int, dialect: str
) -> dict[tuple[str, TaskStatus], dict[int, int]]:
    rows = await db.execute(finished_query(since, step, dialect))
    found: dict[tuple[str, TaskStatus], dict[int, int]] = defaultdict(dict)
    for queue, status, index, count in rows:
        found[(queue, TaskStatus(status))][int(index)] = int(count)
    return found


async def _depths(
    db: AsyncSession, since: datetime, step: int, dialect: str
) -> dict[str, dict[int, tuple[int, int]]]:
    bucket = (_epoch(QueueSample.at, dialect) // step).label("bucket")
    rows = await db.execute(
        select(
            QueueSample.queue, bucket, func.max(QueueSample.waiting), func.max(QueueSample.running)
        )
        .where(QueueSample.at >= since)
        .group_by(QueueSample.queue, bucket)
    )
    found: dict[str, dict[int, tuple[int, int]]] = defaultdict(dict)
    for queue, index, waiting, running in rows:
        found[queue][int(index)] = (int(waiting), int(running))
    return found


def durations_query(since: datetime, dialect: str) -> Select[Any, Any, Any, Any]:
    """The rows at the percentile ranks (and the last) of each kind's execution times:
    the database ranks them (window functions, on both backends) and hands back only
    those."""
    seconds = _seconds_between(Task.started_at, Task.finished_at, dialect)
    done = (
        select(Task.kind.label("kind"), seconds.label("d"))
        .where(
            Task.status == TaskStatus.DONE,
            Task.finished_at >= since,
            Task.started_at.is_not(None),
        )
        # Materialized: read the window's rows by their index range first, then rank
        # them (inlined, the planner prefers an index ordered by kind for the ranking
        # and reads every task ever done).
        .cte("done")
        .prefix_with("MATERIALIZED")
    )
    ranked = select(
        done.c.kind,
        done.c.d,
        func.row_number().over(partition_by=done.c.kind, order_by=done.c.d).label("r"),
        func.count().over(partition_by=done.c.kind).label("n"),
    ).subquery()
    # Nearest rank: ceil(p * n / 100), in integer arithmetic both backends share.
    wanted = [ranked.c.r == (ranked.c.n * p + 99) // 100 for p in PERCENTILES]
    return select(ranked.c.kind, ranked.c.n, ranked.c.r, ranked.c.d).where(
        or_(*wanted, ranked.c.r == ranked.c.n)
    )


async def durations(db: AsyncSession, since: datetime, dialect: str) -> list[dict[str, Any]]:
    """Per kind, the runs done since ``since``: how many, and the nearest-rank 50th,
    95th and 99th percentile and the longest of their execution times (seconds)."""
    rows = await db.execute(durations_query(since, dialect))
    at_rank: dict[str, dict[int, float]] = defaultdict(dict)
    counts: dict[str, int] = {}
    for kind, count, rank, value in rows:
        at_rank[kind][int(rank)] = max(0.0, float(value))
        counts[kind] = int(count)
    out = []
    for kind in sorted(counts):
        count = counts[kind]
        entry: dict[str, Any] = {"kind": kind, "count": count}
        for p in PERCENTILES:
            entry[f"p{p}"] = _round(at_rank[kind].get(math.ceil(p * count / 100)))
        entry["max"] = _round(at_rank[kind].get(count))
        out.append(entry)
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


async def history(db: AsyncSession, hours: int, now: datetime, queues: list[str]) -> History:
    """The last ``hours`` in buckets, for ``queues`` and any other queue found."""
    dialect = db.get_bind().dialect.name
    step = step_for(hours)
    last = int(now.timestamp()) // step
    first = last - (hours * 3600) // step + 1
    indexes = range(first, last + 1)
    since = datetime.fromtimestamp(first * step, now.tzinfo)
    finished = await _finished(db, since, step, dialect)
    depths = await _depths(db, since, step, dialect)
    names = sorted(set(queues) | set(depths) | {queue for queue, _ in finished})
    result = History(hours=hours, step=step, buckets=[i * step for i in indexes], queues=names)
    for name in names:
        done = finished.get((name, TaskStatus.DONE), {})
        failed = finished.get((name, TaskStatus.FAILED), {})
        sampled = depths.get(name, {})
        result.throughput[name] = [done.get(i, 0) for i in indexes]
        result.failures[name] = [failed.get(i, 0) for i in indexes]
        result.depth[name] = [sampled[i][0] if i in sampled else None for i in indexes]
        result.running[name] = [sampled[i][1] if i in sampled else None for i in indexes]
    result.durations = await durations(db, since, dialect)
    return result


def hours_from(raw: str | None, default: int = 6) -> int:
    """``?hours=`` as an int from 1 to MAX_HOURS; ValueError with a message otherwise."""
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_HOURS:
        raise ValueError(f"hours must be a whole number from 1 to {MAX_HOURS}.")
    return int(raw)

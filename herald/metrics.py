"""Cluster-wide metrics, kept in Redis so every process on every machine adds to the
same numbers and any web process can serve them (``web.metrics``).

Workers add to the task counters and the duration histograms once per settled
batch, in one pipelined round trip; every published event adds one to its
(topic family, type) counter inside the publish script; router auth records how
many browser sessions its router node holds whenever it lists them.

Histogram buckets are stored as they are observed (one bucket per run) and made
cumulative when read, so recording a run touches one field, not eighteen.
Counters live as long as Redis keeps them: after a Redis loss they start again
from zero, which Prometheus reads as a counter reset.
"""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from redis.asyncio import Redis

from herald import names

__all__ = [
    "DURATION_BUCKETS",
    "Histogram",
    "RunEnd",
    "RunOutcome",
    "event_field",
    "read_durations",
    "read_events",
    "read_task_counters",
    "read_wamp_sessions",
    "record_run_ends",
    "record_wamp_sessions",
]

# Upper bounds (seconds) of the duration buckets: a no-op's milliseconds to an hour's report.
DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)
# A router node's session count older than this is from a router auth that is gone.
WAMP_SESSIONS_STALE_SECONDS = 60.0


class RunOutcome(StrEnum):
    """How a run ended, as counted."""

    PROCESSED = "processed"  # the handler succeeded
    FAILED = "failed"  # the task failed for good
    RETRIED = "retried"  # the attempt failed; the task waits for its retry
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class RunEnd:
    queue: str
    kind: str
    outcome: RunOutcome
    seconds: float | None = None  # how long the run took, if it ran


@dataclass
class Histogram:
    """One (queue, kind)'s run durations: per-bucket counts (the last is above every
    bound), their sum and count."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    sum: float = 0.0
    count: int = 0

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, runs at or under it)`` for each bound, ``inf`` last."""
        total = 0
        out = []
        for bound, count in zip((*DURATION_BUCKETS, float("inf")), self.buckets, strict=True):
            total += count
            out.append((bound, total))
        return out


def _field(*parts: str) -> str:
    # JSON: unambiguous whatever a kind's name holds.
    return json.dumps(parts, separators=(",", ":"))


def _parts(raw: bytes | str) -> list[str]:
    value = json.loads(raw)
    return [str(part) for part in value] if isinstance(value, list) else []


def bucket_index(seconds: float) -> int:
    """The bucket a duration falls in: the first whose bound is at or above it."""
    return bisect_left(DURATION_BUCKETS, seconds)


async def record_run_ends(redis: Redis, ends: Sequence[RunEnd]) -> None:
    """Add a settled batch's runs to the counters and histograms: one round trip."""
    if not ends:
        return
    counts = Counter(_field(end.outcome.value, end.queue, end.kind) for end in ends)
    buckets: Counter[str] = Counter()
    sums: dict[str, float] = defaultdict(float)
    for end in ends:
        if end.seconds is None:
            continue
        seconds = max(0.0, end.seconds)
        buckets[_field(end.queue, end.kind, str(bucket_index(seconds)))] += 1
        buckets[_field(end.queue, end.kind, "count")] += 1
        sums[_field(end.queue, end.kind, "sum")] += seconds
    async with redis.pipeline(transaction=False) as pipe:
        for name, count in counts.items():
            pipe.hincrby(names.METRICS_TASKS_KEY, name, count)
        for name, count in buckets.items():
            pipe.hincrby(names.METRICS_DURATIONS_KEY, name, count)
        for name, total in sums.items():
            pipe.hincrbyfloat(names.METRICS_DURATIONS_KEY, name, total)
        await pipe.execute()


async def read_task_counters(redis: Redis) -> dict[tuple[str, str, str], int]:
    """``(outcome, queue, kind) -> runs``."""
    out = {}
    for raw, value in (await redis.hgetall(names.METRICS_TASKS_KEY)).items():
        parts = _parts(raw)
        if len(parts) == 3:
            out[(parts[0], parts[1], parts[2])] = int(value)
    return out


async def read_durations(redis: Redis) -> dict[tuple[str, str], Histogram]:
    """``(queue, kind) -> Histogram``."""
    out: dict[tuple[str, str], Histogram] = defaultdict(Histogram)
    for raw, value in (await redis.hgetall(names.METRICS_DURATIONS_KEY)).items():
        parts = _parts(raw)
        if len(parts) != 3:
            continue
        histogram = out[(parts[0], parts[1])]
        if parts[2] == "sum":
            histogram.sum = float(value)
        elif parts[2] == "count":
            histogram.count = int(value)
        elif parts[2].isdigit() and int(parts[2]) < len(histogram.buckets):
            histogram.buckets[int(parts[2])] = int(value)
    return dict(out)


def event_field(topic: str, type_: str) -> str:
    """The events counter's field for an event: its topic family (``submission``,
    ``user``…, or the whole name of ``broadcast`` and ``admin.tasks``) and its type."""
    family = topic if topic in (names.BROADCAST, names.ADMIN_TASKS) else topic.split(".", 1)[0]
    return _field(family, str(type_))


async def read_events(redis: Redis) -> dict[tuple[str, str], int]:
    """``(topic family, type) -> events published``."""
    out = {}
    for raw, value in (await redis.hgetall(names.METRICS_EVENTS_KEY)).items():
        parts = _parts(raw)
        if len(parts) == 2:
            out[(parts[0], parts[1])] = int(value)
    return out


async def record_wamp_sessions(redis: Redis, node: str, count: int) -> None:
    """Router auth's count of the browser sessions on its router ``node``. Replicas on
    one node write the same field, so the node is counted once."""
    value = json.dumps({"count": count, "at": time.time()})
    await redis.hset(names.METRICS_WAMP_SESSIONS_KEY, node, value)


async def read_wamp_sessions(redis: Redis) -> dict[str, int]:
    """``router node -> browser sessions``, leaving out (and dropping) stale nodes."""
    now = time.time()
    live: dict[str, int] = {}
    stale: list[str] = []
    for raw_node, raw in (await redis.hgetall(names.METRICS_WAMP_SESSIONS_KEY)).items():
        node = raw_node.decode() if isinstance(raw_node, bytes) else str(raw_node)
        try:
            value = json.loads(raw)
            count, at = int(value["count"]), float(value["at"])
        except (ValueError, KeyError, TypeError):
            stale.append(node)
            continue
        if now - at > WAMP_SESSIONS_STALE_SECONDS:
            stale.append(node)
        else:
            live[node] = count
    if stale:
        await redis.hdel(names.METRICS_WAMP_SESSIONS_KEY, *stale)
    return live

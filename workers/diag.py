"""Diagnostic task kinds on queue ``diag``: for smoke tests, benchmarks, and operators
checking that a deployment's workers take and finish work.

- ``diag.noop`` does nothing. With ``{"count_in": KEY}`` it increments a Redis
  counter, so "did every job run exactly once?" is one GET; with
  ``{"stamp_in": KEY}`` it pushes its start time (UNIX seconds) onto a Redis
  list, so pickup latency can be measured from the enqueue time.
- ``diag.sleep`` waits ``{"seconds": s}`` (at most an hour), reporting progress
  each tenth, and stops early when cancelled. ``{"fail": true}`` makes it raise
  after its wait, to exercise retries and the failure alert.
"""

from __future__ import annotations

import asyncio
import time

from workers.context import TaskContext
from workers.kinds import Outcome, TaskFailed, TaskKind, register

__all__ = ["DIAG_QUEUE", "noop", "sleep"]

DIAG_QUEUE = "diag"
MAX_SLEEP_SECONDS = 3600.0
_REDIS_KEY_LIMIT = 200


def _key_param(ctx: TaskContext, name: str) -> str | None:
    value = ctx.params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= _REDIS_KEY_LIMIT:
        raise TaskFailed(f"{name} must be a Redis key (1–{_REDIS_KEY_LIMIT} characters)")
    return value


async def noop(ctx: TaskContext) -> Outcome | None:
    """Nothing, or count/stamp the run in Redis (see the module's docstring)."""
    stamp = time.time()
    counter = _key_param(ctx, "count_in")
    stamps = _key_param(ctx, "stamp_in")
    if counter is not None:
        await ctx.redis.incr(counter)
    if stamps is not None:
        await ctx.redis.rpush(stamps, repr(stamp))
    return None


async def sleep(ctx: TaskContext) -> Outcome:
    """Wait the given seconds in tenths, reporting progress; optionally fail at the end."""
    seconds = ctx.params.get("seconds", 1)
    if not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise TaskFailed(f"seconds must be a number from 0 to {MAX_SLEEP_SECONDS:.0f}")
    for tenth in range(10):
        await ctx.progress(tenth * 10, f"slept {seconds * tenth / 10:.1f} of {seconds}s")
        await asyncio.sleep(seconds / 10)  # the work this diagnostic kind stands for
    if ctx.params.get("fail"):
        raise RuntimeError(f"diag.sleep asked to fail (attempt {ctx.attempt})")
    return Outcome(detail=f"slept {seconds}s")


register(
    TaskKind("diag.noop", DIAG_QUEUE, noop, label="No-op (diagnostic)", max_attempts=3, quiet=True)
)
register(
    TaskKind(
        "diag.sleep",
        DIAG_QUEUE,
        sleep,
        label="Sleep (diagnostic)",
        max_attempts=3,
        retry_base=0.5,
        quiet=True,
    )
)

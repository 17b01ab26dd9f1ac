"""The load generator of bench/event_latency.py: one process emitting task-state
events on one topic, paced open-loop, by one of two paths.

    python -m bench._event_emitter --mode herald|raw --topic user.3 --rate 1000 \
        --events 10000 --warmup 2000 --label herald-1000   (HERALD_* settings in the env)

``herald``: the worker's path, :class:`herald.events.EventPublisher` on the worker's
Redis client (``herald.redis_pool.connect``), one awaited publish per event, as
``TaskContext.emit_progress`` does. ``raw``: a backend WAMP session
(:class:`herald.wamp.BackendLink`, the bridge's own link) publishing the same
envelope straight to Crossbar, unacknowledged like the bridge.

Event ``i`` is due at ``start + i / rate`` (absolute deadlines on the monotonic
clock, never sleep-after-send): a loop that falls behind sends late, and that
lateness counts as latency, instead of quietly lowering the rate. Each event
carries its due time and its send time on the wall clock (``time.time_ns()``,
shared by every process on the machine) for the subscriber to subtract.

Protocol on stdin/stdout, one JSON object a line: prints ``{"ready": true}`` once
connected, waits for a ``go`` line, emits, prints the result (sent counts,
achieved rate, how late sends were against their deadlines), and exits at the
next line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from herald import names
from herald.events import EventPublisher, iso_now
from herald.logs import configure_logging, get_logger
from herald.models import TaskStatus
from herald.redis_pool import connect
from herald.settings import Settings
from herald.wamp import BackendLink
from workers.context import task_state

log = get_logger(__name__)

JOIN_TIMEOUT = 30.0
# The first deadline lies this far after "go", so setting up the loop is not counted.
LEAD_IN_NS = 20_000_000


@dataclass
class FakeTask:
    """The fields :func:`workers.context.task_state` reads, so the payload is a real task state."""

    id: int = 4711
    kind: str = "report"
    queue: str = "bulk"
    status: TaskStatus = TaskStatus.RUNNING
    progress: int = 0
    detail: str | None = "rendering page 1"
    attempts: int = 1
    max_attempts: int = 3
    owner_id: int | None = None
    submission_id: int | None = None
    step_index: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


def _quantiles(values: list[int]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(values)
    last = len(ordered) - 1
    return {
        "p50": ordered[round(0.50 * last)] / 1e6,
        "p99": ordered[round(0.99 * last)] / 1e6,
        "max": ordered[-1] / 1e6,
    }


async def _read_line() -> str:
    return (await asyncio.to_thread(sys.stdin.readline)).strip()


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def emit(args: argparse.Namespace, settings: Settings) -> None:
    task = FakeTask(owner_id=int(args.topic.split(".")[1]) if "." in args.topic else None)
    stop = asyncio.Event()
    link: BackendLink | None = None
    link_task: asyncio.Task[None] | None = None
    redis = None
    if args.mode == "herald":
        # The worker's client: a bounded blocking pool (workers.worker.run_worker).
        redis = connect(settings.redis_url, max_connections=8)
        await redis.ping()
        publisher = EventPublisher(redis)
    else:

        async def nothing_to_register(_session: Any) -> None:
            return None

        link = BackendLink(settings, name="bench-raw", on_join=nothing_to_register)
        link_task = asyncio.create_task(link.run(stop), name="bench-raw-link")
        deadline = time.monotonic() + JOIN_TIMEOUT
        while link.session is None:
            if time.monotonic() > deadline or link_task.done():
                raise RuntimeError("the raw publisher could not join crossbar")
            await asyncio.sleep(0.02)  # polling readiness
    _say({"ready": True})
    if await _read_line() != "go":
        raise RuntimeError("expected 'go' on stdin")

    total = args.warmup + args.events
    interval_ns = 1_000_000_000 / args.rate
    start_mono = time.monotonic_ns() + LEAD_IN_NS
    start_wall = time.time_ns() + LEAD_IN_NS
    lateness: list[int] = []
    first_measured_ns = last_sent_ns = 0
    for i in range(total):
        offset = round(i * interval_ns)
        wait_ns = start_mono + offset - time.monotonic_ns()
        if wait_ns > 0:
            await asyncio.sleep(wait_ns / 1e9)
        due = start_wall + offset
        task.progress = i % 100
        state = task_state(task)
        sent = time.time_ns()
        state["bench"] = {
            "run": args.label,
            "i": i,
            "warm": i < args.warmup,
            "due": due,
            "sent": sent,
        }
        if args.mode == "herald":
            await publisher.publish(args.topic, names.EventType.TASK_STATE, state)
        else:
            assert link is not None and link.session is not None
            envelope = {
                "topic": args.topic,
                "type": str(names.EventType.TASK_STATE),
                "seq": i + 1,
                "ts": iso_now(),
                "data": state,
            }
            link.session.publish(args.topic, envelope)
        if i >= args.warmup:
            lateness.append(sent - due)
            if i == args.warmup:
                first_measured_ns = due
            last_sent_ns = time.time_ns()
    measured_span = (last_sent_ns - first_measured_ns) / 1e9
    result = {
        "sent": args.events,
        "warmup": args.warmup,
        "target_rate": args.rate,
        # Events after the first measured deadline over the time it took to send them.
        "achieved_rate": (args.events - 1) / measured_span if measured_span > 0 else 0.0,
        "late_ms": _quantiles(lateness),
    }
    _say(result)
    # Stay alive (and measurable) until the parent has read our CPU time.
    await _read_line()
    stop.set()
    if link_task is not None:
        await asyncio.wait_for(link_task, 10)
    if redis is not None:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("herald", "raw"), required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--label", required=True)
    args = parser.parse_args()
    settings = Settings.from_env()
    configure_logging(settings, f"bench-emitter-{args.mode}")
    asyncio.run(emit(args, settings))


if __name__ == "__main__":
    main()

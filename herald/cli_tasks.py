"""``herald enqueue | tasks | queues | queue | retry | cancel``: the queue from a shell.

Listings print a table for people, or JSON with ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from herald.models import TaskStatus
from herald.settings import Settings

__all__ = ["Backends", "add_task_commands", "print_table", "run_with_backends"]

_RELATIVE = re.compile(r"\+(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass
class Backends:
    sessions: Any
    transactions: Any
    queue: Any
    publisher: Any


@asynccontextmanager
async def _backends(settings: Settings) -> AsyncIterator[Backends]:
    from redis.asyncio import Redis

    from herald.db import Transactions, create_engine, session_factory
    from herald.events import EventPublisher
    from workers.queue import RedisQueue

    redis = Redis.from_url(settings.redis_url)
    engine = create_engine(settings)
    transactions = Transactions(engine)
    try:
        yield Backends(
            session_factory(engine), transactions, RedisQueue(redis), EventPublisher(redis)
        )
    finally:
        await redis.aclose()
        transactions.close()
        await engine.dispose()


def run_with_backends(settings: Settings, work: Callable[[Backends], Awaitable[int]]) -> int:
    """Run one command against the DB and Redis; domain errors become exit code 1."""
    from workers.control import TaskControlError

    async def main() -> int:
        async with _backends(settings) as backends:
            return await work(backends)

    try:
        return asyncio.run(main())
    except (TaskControlError, LookupError, ValueError) as exc:
        message = exc.args[0] if exc.args else str(exc)
        print(f"herald: {message}", file=sys.stderr)
        return 1


def _parse_at(text: str, zone: str) -> float:
    """``+30s``/``+5m``/``+2h``/``+1d`` from now, or an ISO time (naive: in HERALD_TIMEZONE)."""
    match = _RELATIVE.fullmatch(text.strip())
    if match:
        delta = timedelta(**{_UNITS[match[2]]: int(match[1])})
        return (datetime.now().astimezone() + delta).timestamp()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--at {text!r}: use an ISO time or +N[s|m|h|d]") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(zone))
    return when.timestamp()


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[("" if row[c] is None else str(row[c])) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _emit(args: argparse.Namespace, rows: list[dict[str, Any]], columns: list[str]) -> None:
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print_table(rows, columns)


# --- commands -------------------------------------------------------------------
def _cmd_enqueue(settings: Settings, args: argparse.Namespace) -> int:
    from workers.control import TaskRequest, submit_tasks

    try:
        params = json.loads(args.params)
    except ValueError as exc:
        print(f"herald enqueue: --params is not JSON: {exc}", file=sys.stderr)
        return 2
    try:
        at = _parse_at(args.at, settings.timezone) if args.at else None
    except ValueError as exc:
        print(f"herald enqueue: {exc}", file=sys.stderr)
        return 2
    request = TaskRequest(
        kind=args.kind,
        params=params,
        priority=args.priority,
        at=at,
        key=args.key,
        immediate=args.immediate,
        queue=args.queue,
    )

    async def work(b: Backends) -> int:
        [done] = await submit_tasks(b.transactions, b.queue, [request])
        if args.json:
            print(json.dumps({"id": done.id, "created": done.created}))
        else:
            print(f"task {done.id} {'queued' if done.created else 'exists (same key)'}")
        return 0

    return run_with_backends(settings, work)


def _cmd_tasks(settings: Settings, args: argparse.Namespace) -> int:
    from workers.context import task_state
    from workers.control import list_tasks

    async def work(b: Backends) -> int:
        tasks = await list_tasks(
            b.sessions, status=args.status, kind=args.kind, queue=args.queue, limit=args.limit
        )
        rows = [{**task_state(t), "error": t.error} for t in tasks]
        columns = ["id", "kind", "queue", "status", "progress", "attempts", "detail"]
        _emit(args, rows, columns)
        return 0

    return run_with_backends(settings, work)


def _cmd_queues(settings: Settings, args: argparse.Namespace) -> int:
    from herald.models import utcnow
    from workers.control import failures_since
    from workers.queue_settings import QueueConfig, load_queue_settings

    async def work(b: Backends) -> int:
        configs = await load_queue_settings(b.sessions)
        names = sorted(set(configs) | await b.queue.known_queues())
        failures = await failures_since(b.sessions, utcnow() - timedelta(hours=1))
        rows = []
        for stats in await b.queue.stats(names):
            config = configs.get(stats.name, QueueConfig(stats.name))
            rows.append(
                {
                    "queue": stats.name,
                    "waiting": stats.waiting,
                    "delayed": stats.delayed,
                    "running": stats.running,
                    "max_active": config.max_active,
                    "paused": config.paused,
                    "window": config.window,
                    "immediate": config.immediate,
                    "failed_1h": failures.get(stats.name, 0),
                }
            )
        _emit(args, rows, list(rows[0]) if rows else ["queue"])
        return 0

    return run_with_backends(settings, work)


def _cmd_queue(settings: Settings, args: argparse.Namespace) -> int:
    from workers.queue_settings import update_queue

    changes: dict[str, Any] = {}
    if args.pause is not None:
        changes["paused"] = args.pause
    if args.max_active is not None:
        changes["max_active"] = None if args.max_active == "none" else int(args.max_active)
    if args.window is not None:
        changes["window"] = None if args.window == "always" else args.window
    if args.immediate is not None:
        changes["immediate"] = args.immediate == "on"

    async def work(b: Backends) -> int:
        config = await update_queue(b.sessions, b.queue, args.name, **changes)
        print(json.dumps(config.__dict__))
        return 0

    return run_with_backends(settings, work)


def _cmd_retry(settings: Settings, args: argparse.Namespace) -> int:
    from workers.control import retry_task

    async def work(b: Backends) -> int:
        await retry_task(b.sessions, b.queue, b.publisher, args.id)
        print(f"task {args.id} queued again")
        return 0

    return run_with_backends(settings, work)


def _cmd_cancel(settings: Settings, args: argparse.Namespace) -> int:
    from workers.control import cancel_task

    async def work(b: Backends) -> int:
        status = await cancel_task(b.sessions, b.queue, b.publisher, args.id)
        print(
            f"task {args.id} cancelled"
            if status == "cancelled"
            else f"task {args.id} is running: its worker has been told to stop"
        )
        return 0

    return run_with_backends(settings, work)


def _max_active(text: str) -> str:
    if text != "none" and not text.isdigit():
        raise argparse.ArgumentTypeError("a positive number, or 'none'")
    return text


def add_task_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    enqueue = sub.add_parser("enqueue", help="submit a task")
    enqueue.add_argument("kind", help="task kind, e.g. diag.noop")
    enqueue.add_argument("--params", default="{}", help="JSON object of parameters")
    enqueue.add_argument("--priority", type=int, default=0, help="-100..100; higher runs first")
    enqueue.add_argument("--at", help="run at: ISO time, or +30s / +5m / +2h / +1d")
    enqueue.add_argument("--key", help="idempotency key: a repeat returns the first task")
    enqueue.add_argument(
        "--immediate", action="store_true", help="run at once, outside window and cap"
    )
    enqueue.add_argument("--queue", help="override the kind's queue")
    enqueue.add_argument("--json", action="store_true")
    enqueue.set_defaults(func=_cmd_enqueue)

    tasks = sub.add_parser("tasks", help="list tasks, newest first")
    tasks.add_argument("--status", choices=[status.value for status in TaskStatus])
    tasks.add_argument("--kind")
    tasks.add_argument("--queue")
    tasks.add_argument("--limit", type=int, default=50)
    tasks.add_argument("--json", action="store_true")
    tasks.set_defaults(func=_cmd_tasks)

    queues = sub.add_parser("queues", help="queue depth, running, settings, recent failures")
    queues.add_argument("--json", action="store_true")
    queues.set_defaults(func=_cmd_queues)

    queue = sub.add_parser("queue", help="change a queue's settings (applied live)")
    queue.add_argument("name")
    pause = queue.add_mutually_exclusive_group()
    pause.add_argument("--pause", dest="pause", action="store_const", const=True)
    pause.add_argument("--resume", dest="pause", action="store_const", const=False)
    queue.add_argument("--max-active", type=_max_active, help="cap across all workers, or none")
    queue.add_argument("--window", help="e.g. 'Mon-Fri 18:00-08:00', or always")
    queue.add_argument("--immediate", choices=["on", "off"])
    queue.set_defaults(func=_cmd_queue, pause=None)

    for name, func, text in (
        ("retry", _cmd_retry, "put a failed or cancelled task back on its queue"),
        ("cancel", _cmd_cancel, "cancel a waiting or running task"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("id", type=int)
        command.set_defaults(func=func)

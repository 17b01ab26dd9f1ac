"""``herald schedule``: the recurring jobs with their next times and last runs, and the
one-off tasks waiting in Redis for their time; ``herald scheduler --check``.

One-off jobs are submitted with ``herald enqueue KIND --at TIME`` (or by the web
app, e.g. a scheduled grade release); they wait in their queue's delayed set.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from herald.cli_tasks import Backends, print_table, run_with_backends
from herald.settings import Settings

__all__ = ["add_schedule_commands"]


def _when(moment: datetime | None, zone: ZoneInfo, *, human: bool) -> str | None:
    if moment is None:
        return None
    local = moment.astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M:%S %Z") if human else local.isoformat()


async def _jobs(b: Backends, jobs: list[Any], zone: ZoneInfo, count: int, human: bool) -> list:
    from workers._schedule_state import ScheduleState, last_fired_in_db
    from workers.kinds import UnknownKind, kind_named

    runs = await ScheduleState(b.queue.redis).last_runs([job.name for job in jobs])
    now = datetime.now(UTC)
    rows = []
    for job in jobs:
        last = runs.get(job.name) or await last_fired_in_db(b.sessions, job.name)
        try:
            kind_named(job.kind)
            known = True
        except UnknownKind:
            known = False
        limits = [*(["business days"] if job.business_days else [])]
        limits += [f"hours {job.active_hours}"] if job.active_hours else []
        upcoming = job.when.upcoming(now, count) if job.enabled else []
        notes = [] if job.enabled else ["disabled"]
        notes += [] if known else ["unknown kind: firings are skipped"]
        rows.append(
            {
                "job": job.name,
                "cron": job.cron,
                "kind": job.kind,
                "next": [_when(t, zone, human=human) for t in upcoming],
                "last_run": _when(last.due, zone, human=human) if last else None,
                "last_task": last.task_id if last else None,
                "missed": job.missed.value,
                "business_days": job.business_days,
                "active_hours": job.active_hours,
                "queue": job.queue,
                "priority": job.priority,
                "params": job.params,
                "enabled": job.enabled,
                "kind_known": known,
                "builtin": job.builtin,
                "about": job.about,
                "limits": ", ".join(limits),
                "note": "; ".join(notes or [job.about]),
            }
        )
    return rows


async def _one_offs(b: Backends, zone: ZoneInfo, limit: int, human: bool) -> list[dict[str, Any]]:
    """Tasks whose jobs wait in a delayed set (a run-at time, or a retry's backoff)."""
    from sqlalchemy import select

    from herald import names
    from herald.models import Task

    waiting: list[tuple[float, str]] = []
    for queue in sorted(await b.queue.known_queues()):
        key = names.queue_delayed_key(queue)
        for job_id, due_ms in await b.queue.redis.zrange(key, 0, limit - 1, withscores=True):
            waiting.append((due_ms / 1000, job_id.decode()))
    waiting = sorted(waiting)[:limit]
    ids = [int(job_id) for _, job_id in waiting if job_id.isdigit()]
    async with b.sessions() as db:
        tasks = {t.id: t for t in (await db.scalars(select(Task).where(Task.id.in_(ids)))).all()}
    rows = []
    for due, job_id in waiting:
        task = tasks.get(int(job_id)) if job_id.isdigit() else None
        if task is None:
            continue  # finished or removed between the two reads
        rows.append(
            {
                "id": task.id,
                "kind": task.kind,
                "queue": task.queue,
                "due": _when(datetime.fromtimestamp(due, UTC), zone, human=human),
                "waiting_for": "retry" if task.attempts else "its time",
                "key": task.idempotency_key,
                "owner_id": task.owner_id,
            }
        )
    return rows


def _cmd_schedule(settings: Settings, args: argparse.Namespace) -> int:
    from workers.schedule import load_schedule

    jobs = load_schedule(settings)  # a bad schedule file stops here (exit 2)
    zone = ZoneInfo(settings.timezone)
    human = not args.json

    async def work(b: Backends) -> int:
        rows = await _jobs(b, jobs, zone, args.next, human)
        pending = await _one_offs(b, zone, args.limit, human)
        if args.json:
            for row in rows:
                del row["limits"], row["note"]
            document = {"timezone": settings.timezone, "jobs": rows, "one_off": pending}
            print(json.dumps(document, indent=2, default=str))
            return 0
        print(f"Recurring jobs (times in {settings.timezone}):")
        for row in rows:
            row["next"] = ", ".join(row["next"]) or "-"
            last = row["last_run"]
            row["last_run"] = f"{last} (task {row['last_task']})" if last else "never"
        print_table(rows, ["job", "cron", "kind", "next", "last_run", "missed", "limits", "note"])
        print("\nOne-off tasks waiting for a time (herald enqueue KIND --at TIME):")
        print_table(pending, ["id", "kind", "queue", "due", "waiting_for", "key"])
        return 0

    return run_with_backends(settings, work)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("a whole number ≥ 1")
    return int(text)


def add_schedule_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schedule = sub.add_parser(
        "schedule", help="recurring jobs (next and last runs) and one-off tasks waiting"
    )
    schedule.add_argument("--next", type=_positive, default=3, help="next runs shown per job")
    schedule.add_argument("--limit", type=_positive, default=100, help="one-off tasks shown")
    schedule.add_argument("--json", action="store_true")
    schedule.set_defaults(func=_cmd_schedule)

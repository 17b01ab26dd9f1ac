"""Many realistic task rows at once, for the task list's plan test and bench/tasks_page.py.

The mix of a term's worth of work: most rows are the seven steps of students'
submissions (each with its submission row), the rest grade releases and emails,
reports, imports, exports and diagnostics, over ``days`` days, newest last, with
the usual spread of statuses (a few failed with a traceback, a few still queued or
running). Rows are inserted in bulk (a few statements of thousands of rows).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from herald.models import Assignment, Submission, Task, User, utcnow

__all__ = ["Filled", "fill_tasks"]

STEPS = (
    ("submission.scan", "cpu"),
    ("submission.store", "io"),
    ("submission.record", "cpu"),
    ("submission.plagiarism", "cpu"),
    ("submission.admin_sync", "io"),
    ("submission.thumbnail", "cpu"),
    ("submission.notify", "io"),
)
OTHERS = (
    ("grades.release", "io", 10),
    ("grades.email", "io", 40),
    ("reports.grades", "reports", 15),
    ("reports.similarity", "reports", 5),
    ("export.submissions", "bulk", 5),
    ("import.users", "bulk", 3),
    ("diag.sleep", "diag", 5),
)
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/herald/workers/runner.py", line 144, in run\n'
    "    outcome = await run.spec.handler(ctx)\n"
    '  File "/srv/herald/workers/reports.py", line 88, in grades_report\n'
    "    rows = await fetch(ctx)\n"
    "ConnectionResetError: [Errno 104] Connection reset by peer\n"
)
CHUNK = 5000


@dataclass(frozen=True)
class Filled:
    first_id: int
    last_id: int
    start: datetime  # the oldest task's creation time
    students: list[str]


def _times(at: datetime, rng: random.Random, status: str) -> dict[str, Any]:
    started = at + timedelta(seconds=rng.uniform(0.01, 2))
    finished = started + timedelta(seconds=rng.expovariate(1 / 3))
    return {
        "created_at": at,
        "queued_at": at,
        "started_at": None if status == "queued" else started,
        "finished_at": None if status in ("queued", "running") else finished,
    }


async def fill_tasks(
    engine: AsyncEngine, count: int, *, students: int = 2000, days: int = 60, seed: int = 7
) -> Filled:
    """Insert ``count`` tasks (and their submissions and ``students`` accounts) into a
    migrated database holding the demo data."""
    rng = random.Random(seed)
    start = utcnow() - timedelta(days=days)
    step = timedelta(days=days) / max(count, 1)
    async with engine.begin() as conn:
        assignment = await conn.scalar(select(Assignment.id).order_by(Assignment.id))
        names = [f"student{n:05d}" for n in range(students)]
        await conn.execute(
            insert(User),
            [
                {
                    "username": name,
                    "display_name": f"Student {name[-5:]}",
                    "password_hash": "!",  # no password signs in as these
                    "is_admin": False,
                    "is_active": True,
                    "created_at": start,
                }
                for name in names
            ],
        )
        owners = list((await conn.scalars(select(User.id).where(User.username.in_(names)))).all())
        submissions: list[dict[str, Any]] = []
        tasks: list[dict[str, Any]] = []
        at = start
        while len(tasks) < count:
            owner = rng.choice(owners)
            if rng.random() < 0.85 and count - len(tasks) >= len(STEPS):
                submissions.append(
                    {
                        "assignment_id": assignment,
                        "student_id": owner,
                        "status": "complete",
                        "filename": "essay.pdf",
                        "content_type": "application/pdf",
                        "size": 1_048_576,
                        "sha256": "0" * 64,
                        "upload_path": "/srv/herald/files/uploads/essay.pdf",
                        "created_at": at,
                        "updated_at": at,
                    }
                )
                submission = len(submissions) - 1  # its index until the rows have ids
                for index, (kind, queue) in enumerate(STEPS):
                    tasks.append(
                        {
                            "kind": kind,
                            "queue": queue,
                            "status": "done",
                            "progress": 100,
                            "params": {},
                            "attempts": 1,
                            "max_attempts": 3,
                            "owner_id": owner,
                            "submission_id": submission,
                            "step_index": index,
                            "priority": 0,
                            "immediate": False,
                            "detail": None,
                            "error": None,
                            **_times(at, rng, "done"),
                        }
                    )
                    at += step
                continue
            kind, queue, _ = rng.choices(OTHERS, weights=[w for *_, w in OTHERS])[0]
            status = rng.choices(
                ["done", "failed", "cancelled", "queued", "running"], [90, 4, 3, 2, 1]
            )[0]
            tasks.append(
                {
                    "kind": kind,
                    "queue": queue,
                    "status": status,
                    "progress": 100 if status == "done" else rng.randrange(0, 100),
                    "params": {"assignment_id": assignment, "format": "csv"},
                    "attempts": 3 if status == "failed" else 1,
                    "max_attempts": 3,
                    "owner_id": owner,
                    "submission_id": None,
                    "step_index": None,
                    "priority": 0,
                    "immediate": False,
                    "detail": "ConnectionResetError: [Errno 104] Connection reset by peer"
                    if status == "failed"
                    else None,
                    "error": TRACEBACK if status == "failed" else None,
                    **_times(at, rng, status),
                }
            )
            at += step
        submission_ids: list[int] = []
        for offset in range(0, len(submissions), CHUNK):
            returned = await conn.scalars(
                insert(Submission).returning(Submission.id, sort_by_parameter_order=True),
                submissions[offset : offset + CHUNK],
            )
            submission_ids += returned.all()
        for task in tasks:
            if task["submission_id"] is not None:
                task["submission_id"] = submission_ids[task["submission_id"]]
        for offset in range(0, len(tasks), CHUNK):
            await conn.execute(insert(Task), tasks[offset : offset + CHUNK])
        first = await conn.scalar(select(Task.id).order_by(Task.id).limit(1))
        last = await conn.scalar(select(Task.id).order_by(Task.id.desc()).limit(1))
    assert first is not None and last is not None
    return Filled(first, last, start, names)

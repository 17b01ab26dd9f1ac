"""Helpers for the tests of the kinds people submit (reports, imports, exports, the
purge): a classroom with two courses, submissions with real files and recorded
similarity checks, and running tasks to their end on a real worker."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.db import Transactions, create_engine, session_factory
from herald.demo import load_demo_data
from herald.models import (
    TASK_TERMINAL,
    Assignment,
    Course,
    CourseRole,
    Enrolment,
    Submission,
    SubmissionStatus,
    Task,
    TaskStatus,
    User,
    utcnow,
)
from herald.passwords import hash_password
from herald.settings import Settings
from tests.support import eventually
from tests.workers.support import worker_running
from workers.control import TaskRequest, submit_tasks
from workers.pipeline import STEP_INDEX, SUBMISSION_STEPS, step_kind
from workers.queue import RedisQueue

PLAGIARISM = step_kind(SUBMISSION_STEPS[STEP_INDEX["plagiarism"]])


@dataclass
class Classroom:
    """DEMO101 (alice, bob students; mark marker; ada site admin) and OTHER201 (olga
    marks it; its own assignment), with submissions in DEMO101's assignment."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    transactions: Transactions
    queue: RedisQueue
    users: dict[str, User]
    assignment_id: int
    other_assignment_id: int
    submissions: dict[str, int]  # "alice", "alice-2", "bob", "bob-rejected" → id

    async def submit(
        self, kind: str, params: dict[str, Any], owner: str | None = "ada", **options: Any
    ) -> int:
        owner_id = self.users[owner].id if owner else None
        [done] = await submit_tasks(
            self.transactions, self.queue, [TaskRequest(kind, params, owner_id=owner_id, **options)]
        )
        return done.id

    async def task(self, task_id: int) -> Task:
        async with self.sessions() as db:
            task = await db.get(Task, task_id)
        assert task is not None
        return task

    async def run(self, *task_ids: int) -> list[Task]:
        """Run a worker until every task has ended; their rows."""

        async def ended() -> bool:
            for task_id in task_ids:
                if (await self.task(task_id)).status not in TASK_TERMINAL:
                    return False
            return True

        async with worker_running(self.settings):
            await eventually(ended, timeout=60, what=f"tasks {task_ids} to end")
        return [await self.task(task_id) for task_id in task_ids]

    async def run_one(self, kind: str, params: dict[str, Any], owner: str | None = "ada") -> Task:
        (task,) = await self.run(await self.submit(kind, params, owner))
        assert task.status == TaskStatus.DONE, (task.status, task.detail, task.error)
        return task


def output_path(settings: Settings, task: Task) -> Path:
    from workers.outputs import output_file

    path = output_file(settings, task)
    assert path is not None, f"task {task.id} has no output"
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV output, which must be UTF-8 with a byte-order mark."""
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf"), "CSV outputs start with a UTF-8 BOM"
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


async def _add_submission(
    db: AsyncSession,
    settings: Settings,
    assignment_id: int,
    student: User,
    filename: str,
    content: bytes,
    status: SubmissionStatus,
    **fields: Any,
) -> Submission:
    digest = hashlib.sha256(content).hexdigest()
    stored = settings.files_dir / "objects" / digest
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(content)
    submission = Submission(
        assignment_id=assignment_id,
        student_id=student.id,
        status=status,
        filename=filename,
        content_type="text/plain",
        size=len(content),
        sha256=digest,
        upload_path=str(stored),
        stored_path=str(stored),
        **fields,
    )
    db.add(submission)
    await db.flush()
    return submission


def _plagiarism_task(
    submission: Submission, status: TaskStatus, result: dict[str, Any] | None, detail: str
) -> Task:
    return Task(
        kind=PLAGIARISM,
        queue="cpu",
        status=status,
        params={"submission_id": submission.id, "step": "plagiarism"},
        owner_id=submission.student_id,
        submission_id=submission.id,
        step_index=STEP_INDEX["plagiarism"],
        result=result,
        detail=detail,
        finished_at=utcnow(),
    )


async def make_classroom(settings: Settings, redis: Redis) -> AsyncIterator[Classroom]:
    engine = create_engine(settings)
    sessions = session_factory(engine)
    transactions = Transactions(engine)
    await load_demo_data(sessions, "demo")
    async with sessions.begin() as db:
        users = {u.username: u for u in (await db.scalars(select(User))).all()}
        assignment = await db.scalar(select(Assignment))
        assert assignment is not None
        other = Course(code="OTHER201", title="Another course")
        olga = User(username="olga", display_name="Olga Other", password_hash=hash_password("demo"))
        db.add_all([other, olga])
        await db.flush()
        db.add(Enrolment(user_id=olga.id, course_id=other.id, role=CourseRole.MARKER))
        other_assignment = Assignment(course_id=other.id, title="Other essay", due_at=None)
        db.add(other_assignment)
        users["olga"] = olga
        # A display name a spreadsheet would run as a formula.
        users["bob"].display_name = '=HYPERLINK("http://evil.test","Bob")'
        released = utcnow() - timedelta(hours=1)
        alice = await _add_submission(
            db,
            settings,
            assignment.id,
            users["alice"],
            "essay.txt",
            b"Alice's first draft\n",
            SubmissionStatus.COMPLETE,
            grade="B",
            grade_released_at=released,
        )
        alice2 = await _add_submission(
            db,
            settings,
            assignment.id,
            users["alice"],
            "../../etc/essay final.txt",
            b"Alice's final essay\n",
            SubmissionStatus.COMPLETE,
            grade="A-",
        )
        bob = await _add_submission(
            db,
            settings,
            assignment.id,
            users["bob"],
            "bob.txt",
            b"Bob's essay\n",
            SubmissionStatus.COMPLETE,
        )
        rejected = await _add_submission(
            db,
            settings,
            assignment.id,
            users["bob"],
            "virus.txt",
            b"X5O!P%@AP\n",
            SubmissionStatus.REJECTED,
        )
        db.add_all(
            [
                _plagiarism_task(
                    alice,
                    TaskStatus.DONE,
                    {
                        "engine": "built-in",
                        "score": 0.0,
                        "fingerprints": 10,
                        "compared": 0,
                        "matches": [],
                    },
                    "Similarity 0%: the first submission to compare against",
                ),
                _plagiarism_task(
                    bob,
                    TaskStatus.DONE,
                    {
                        "engine": "built-in",
                        "score": 62.5,
                        "fingerprints": 16,
                        "compared": 2,
                        "matches": [
                            {"submission_id": alice2.id, "percent": 62.5, "shared": 10},
                            {"submission_id": alice.id, "percent": 12.5, "shared": 2},
                        ],
                    },
                    "Similarity 62% (closest: …)",
                ),
                _plagiarism_task(alice2, TaskStatus.FAILED, None, "the plagiarism service refused"),
            ]
        )
        submissions = {
            "alice": alice.id,
            "alice-2": alice2.id,
            "bob": bob.id,
            "bob-rejected": rejected.id,
        }
        assignment_id, other_id = assignment.id, other_assignment.id
    try:
        yield Classroom(
            settings,
            sessions,
            transactions,
            RedisQueue(redis),
            users,
            assignment_id,
            other_id,
            submissions,
        )
    finally:
        transactions.close()
        await engine.dispose()


@pytest.fixture(name="classroom")
async def classroom_fixture(settings: Settings, redis: Redis) -> AsyncIterator[Classroom]:
    """The :class:`Classroom` on the test's database (modules import this fixture)."""
    async for room in make_classroom(settings, redis):
        yield room


def column(rows: Sequence[dict[str, str]], name: str) -> list[str]:
    return [row[name] for row in rows]

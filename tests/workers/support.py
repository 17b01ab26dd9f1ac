"""Helpers for worker tests: put a real file through the pipeline, check the outcome."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from sqlalchemy import func, select

from herald.db import create_engine, session_factory
from herald.demo import load_demo_data
from herald.models import (
    Assignment,
    Submission,
    SubmissionStatus,
    TaskEvent,
    TaskStatus,
    User,
)
from herald.settings import Settings
from tests.support import eventually
from workers.pipeline import SUBMISSION_STEPS, plan_submission_tasks
from workers.queue import RedisQueue, job_for


async def submit_file(
    settings: Settings, content: bytes, name: str, content_type: str, student: str = "alice"
) -> int:
    """A demo student's submission of ``content``, stored and queued as the web app would."""
    engine = create_engine(settings)
    sessions = session_factory(engine)
    await load_demo_data(sessions, "demo")
    uploads = settings.files_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    path = uploads / f"{hashlib.sha1(content).hexdigest()}-{name}"  # noqa: S324 - a file name, not security
    path.write_bytes(content)
    async with sessions.begin() as db:
        owner = await db.scalar(select(User).where(User.username == student))
        assignment = await db.scalar(select(Assignment))
        assert owner and assignment
        sub = Submission(
            assignment_id=assignment.id,
            student_id=owner.id,
            filename=name,
            content_type=content_type,
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            upload_path=str(path),
        )
        db.add(sub)
        await db.flush()
        tasks = plan_submission_tasks(sub)
        db.add_all(tasks)
    redis = Redis.from_url(settings.redis_url)
    await RedisQueue(redis).enqueue(job_for(tasks[0]))
    await redis.aclose()
    await engine.dispose()
    return sub.id


async def assert_all_complete_exactly_once(settings: Settings, expected: int) -> None:
    """Wait until ``expected`` submissions are complete; each step recorded done once."""
    engine = create_engine(settings)
    sessions = session_factory(engine)

    async def all_complete() -> bool:
        async with sessions() as db:
            complete = await db.scalar(
                select(func.count())
                .select_from(Submission)
                .where(Submission.status == SubmissionStatus.COMPLETE)
            )
        return complete == expected

    try:
        await eventually(all_complete, timeout=120, what="every submission to complete")
        async with sessions() as db:
            counts = (
                await db.execute(
                    select(TaskEvent.task_id, func.count())
                    .where(TaskEvent.status == TaskStatus.DONE)
                    .group_by(TaskEvent.task_id)
                )
            ).all()
    finally:
        await engine.dispose()
    assert len(counts) == expected * len(SUBMISSION_STEPS)
    assert {count for _, count in counts} == {1}, "a step was recorded done twice"


def assert_graph_order(names: list[str]) -> None:
    """Each step once, and every step after all of its prerequisites (siblings that run
    side by side may end in any order)."""
    assert sorted(names) == sorted(step.name for step in SUBMISSION_STEPS), names
    for step in SUBMISSION_STEPS:
        for before in step.after:
            assert names.index(before) < names.index(step.name), (before, step.name, names)


@asynccontextmanager
async def worker_running(settings: Settings, concurrency: int = 2) -> AsyncIterator[asyncio.Event]:
    """A worker serving every queue in this process; stopped (and awaited) on exit."""
    from workers import worker

    stop = asyncio.Event()
    running = asyncio.create_task(worker.serve(settings, stop, concurrency=concurrency))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)

"""The grades.release task: released grades, each student's flash and email task are
committed together, so Redis failing right after the commit loses no student's notice,
and a re-run releases and notifies nothing twice."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from herald.db import session_factory
from herald.demo import load_demo_data
from herald.events import EventPublisher
from herald.models import (
    Assignment,
    Message,
    Submission,
    SubmissionStatus,
    Task,
    TaskStatus,
    User,
)
from tests.support import free_port
from workers.context import TaskContext
from workers.grades import EMAIL_KIND, release_grades
from workers.queue import RedisQueue


def _context(
    sessions: async_sessionmaker[AsyncSession], redis: Redis, assignment_id: int
) -> TaskContext:
    run = SimpleNamespace(params={"assignment_id": assignment_id, "email": True}, owner_id=None)
    services = SimpleNamespace(
        sessions=sessions, publisher=EventPublisher(redis), redis=redis, queue=RedisQueue(redis)
    )
    return TaskContext(run=cast(Any, run), services=cast(Any, services))


async def test_redis_down_after_the_commit_still_leaves_every_flash(
    engine: AsyncEngine, redis: Redis
) -> None:
    sessions = session_factory(engine)
    await load_demo_data(sessions, "demo")
    async with sessions.begin() as db:
        assignment = await db.scalar(select(Assignment))
        alice = await db.scalar(select(User).where(User.username == "alice"))
        assert assignment is not None and alice is not None
        db.add(
            Submission(
                assignment_id=assignment.id,
                student_id=alice.id,
                status=SubmissionStatus.COMPLETE,
                filename="essay.txt",
                content_type="text/plain",
                size=9,
                sha256="0" * 64,
                upload_path="/nowhere",
                grade="A",
            )
        )
        assignment_id = assignment.id
    # Nothing listens on this port: the first publish after the commit fails.
    unreachable = Redis(port=free_port(), socket_connect_timeout=1)
    with pytest.raises(RedisConnectionError):
        await release_grades(_context(sessions, unreachable, assignment_id))
    await unreachable.aclose()

    async def state() -> tuple[int, int, int]:
        async with sessions() as db:
            released = await db.scalar(
                select(func.count()).where(Submission.grade_released_at.is_not(None))
            )
            flashes = await db.scalar(select(func.count()).select_from(Message))
            emails = await db.scalar(
                select(func.count()).where(
                    Task.kind == EMAIL_KIND, Task.status == TaskStatus.QUEUED
                )
            )
        return int(released or 0), int(flashes or 0), int(emails or 0)

    # The student sees the flash on the next page view, and the email's task is recorded
    # queued, for the reconciler to enqueue though its job never reached Redis.
    assert await state() == (1, 1, 1)
    # The task's retry finds nothing new: nothing released or flashed twice.
    outcome = await release_grades(_context(sessions, redis, assignment_id))
    assert outcome.result == {"released": []}
    assert await state() == (1, 1, 1)

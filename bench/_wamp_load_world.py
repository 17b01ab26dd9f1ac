"""The world of bench/live_sessions.py: a migrated database (SQLite, or a fresh
PostgreSQL database dropped afterwards) with N students, each enrolled in one course
and owning one submission, inserted in bulk; and a WAMP ticket per student."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.migrate import upgrade_async
from herald.models import Assignment, Course, CourseRole, Enrolment, Submission, User
from herald.sessions import SessionStore

__all__ = ["database", "mint_tickets", "seed"]


async def seed(sessions: async_sessionmaker[AsyncSession], students: int) -> list[tuple[int, int]]:
    """One course and assignment, ``students`` students enrolled, one submission each;
    bulk inserts. Returns (user id, submission id) per student."""
    async with sessions.begin() as db:
        course = Course(code="LOAD101", title="Load")
        assignment = Assignment(course=course, title="Essay")
        db.add_all([course, assignment])
        await db.flush()
        await db.execute(
            insert(User),
            [
                # Never signs in: tickets are minted directly (see the docstring).
                {"username": f"s{i:06d}", "display_name": f"Student {i}", "password_hash": "x"}
                for i in range(students)
            ],
        )
        user_ids = list(
            await db.scalars(select(User.id).where(User.username.like("s%")).order_by(User.id))
        )
        await db.execute(
            insert(Enrolment),
            [{"user_id": u, "course_id": course.id, "role": CourseRole.STUDENT} for u in user_ids],
        )
        await db.execute(
            insert(Submission),
            [
                {
                    "assignment_id": assignment.id,
                    "student_id": u,
                    "filename": "essay.txt",
                    "content_type": "text/plain",
                    "size": 1,
                    "sha256": "0" * 64,
                    "upload_path": "/dev/null",
                }
                for u in user_ids
            ],
        )
        rows = await db.execute(
            select(Submission.student_id, Submission.id).order_by(Submission.id)
        )
        return [(student, submission) for student, submission in rows.all()]


async def mint_tickets(store: SessionStore, people: list[tuple[int, int]]) -> list[list[Any]]:
    """A web session and a WAMP ticket per student, as /api/wamp/ticket issues them."""
    out: list[list[Any]] = []
    # Fifty at a time: within the Redis client's connection pool.
    for start in range(0, len(people), 50):
        chunk = people[start : start + 50]

        async def one(user_id: int, submission_id: int) -> list[Any]:
            _token, web = await store.create(user_id)
            return [user_id, submission_id, await store.issue_ticket(web)]

        out.extend(await asyncio.gather(*(one(u, s) for u, s in chunk)))
    return out


@asynccontextmanager
async def database(url: str | None, root: Path) -> AsyncIterator[str]:
    """A temporary SQLite file, or a fresh PostgreSQL database beside ``url``, migrated."""
    if url is None:
        sqlite = f"sqlite+aiosqlite:///{root / 'herald.db'}"
        await upgrade_async(sqlite)
        yield sqlite
        return
    import asyncpg

    name = f"herald_bench_{uuid.uuid4().hex[:10]}"
    admin_dsn = url.replace("postgresql+asyncpg", "postgresql")
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    fresh = url.rsplit("/", 1)[0] + f"/{name}"
    try:
        await upgrade_async(fresh)
        yield fresh
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

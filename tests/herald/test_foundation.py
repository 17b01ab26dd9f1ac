"""Foundation checks on every database: migrations, demo data, access rules."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from herald.access import can_view_submission
from herald.db import session_factory
from herald.demo import load_demo_data
from herald.models import Assignment, Submission, User


async def test_demo_data_loads_once_and_access_rules_hold(engine: AsyncEngine) -> None:
    """Demo data loads only into an empty DB; a submission is visible to its owner and staff."""
    sessions = session_factory(engine)
    assert await load_demo_data(sessions, "demo") is True
    assert await load_demo_data(sessions, "demo") is False
    async with sessions.begin() as db:
        users = {u.username: u for u in (await db.scalars(select(User))).all()}
        assignment = await db.scalar(select(Assignment))
        assert assignment is not None
        sub = Submission(
            assignment_id=assignment.id,
            student_id=users["alice"].id,
            filename="a.txt",
            content_type="text/plain",
            size=1,
            sha256="0" * 64,
            upload_path="/x",
        )
        db.add(sub)
    async with sessions() as db:
        assert await can_view_submission(db, users["alice"], sub.id)
        assert not await can_view_submission(db, users["bob"], sub.id)
        assert await can_view_submission(db, users["mark"], sub.id)
        assert await can_view_submission(db, users["ada"], sub.id)
        assert not await can_view_submission(db, users["alice"], sub.id + 1000)

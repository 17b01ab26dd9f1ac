"""Demo data for ``make up``: course DEMO101, one open assignment, four accounts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.models import Assignment, Course, CourseRole, Enrolment, User, utcnow
from herald.passwords import hash_password

__all__ = ["DEMO_ACCOUNTS", "DemoAccount", "load_demo_data"]


@dataclass(frozen=True)
class DemoAccount:
    username: str
    display_name: str
    role: CourseRole
    is_admin: bool = False


DEMO_ACCOUNTS = (
    DemoAccount("alice", "Alice Student", CourseRole.STUDENT),
    DemoAccount("bob", "Bob Student", CourseRole.STUDENT),
    DemoAccount("mark", "Mark Marker", CourseRole.MARKER),
    DemoAccount("ada", "Ada Admin", CourseRole.ADMIN, is_admin=True),
)


async def load_demo_data(sessions: async_sessionmaker[AsyncSession], password: str) -> bool:
    """Load the demo when the database has no users; returns whether it did."""
    async with sessions.begin() as db:
        if await db.scalar(select(func.count()).select_from(User)):
            return False
        course = Course(code="DEMO101", title="Demonstrating Herald")
        db.add(course)
        db.add(
            Assignment(
                course=course,
                title="Essay 1: Background tasks in practice",
                description="Upload your essay as PDF, Word (.docx), Markdown or plain text.",
                due_at=utcnow() + timedelta(days=14),
                is_open=True,
            )
        )
        password_hash = hash_password(password)
        for account in DEMO_ACCOUNTS:
            user = User(
                username=account.username,
                display_name=account.display_name,
                email=f"{account.username}@demo.herald.invalid",
                password_hash=password_hash,
                is_admin=account.is_admin,
            )
            db.add(user)
            db.add(Enrolment(user=user, course=course, role=account.role))
    return True

"""A small world for access decisions: the demo course plus a second course,
submissions on both, and an inactive account."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.demo import load_demo_data
from herald.models import Assignment, Course, CourseRole, Enrolment, Submission, User


@dataclass(frozen=True)
class World:
    users: dict[str, User]
    demo_course: int
    other_course: int
    demo_assignment: int
    other_assignment: int
    alice_submission: int
    bob_submission: int
    carol_submission: int

    def uid(self, name: str) -> int:
        return self.users[name].id


def _submission(assignment_id: int, student_id: int) -> Submission:
    return Submission(
        assignment_id=assignment_id,
        student_id=student_id,
        filename="essay.txt",
        content_type="text/plain",
        size=1,
        sha256="0" * 64,
        upload_path="/dev/null",
    )


async def build_world(sessions: async_sessionmaker[AsyncSession]) -> World:
    """Demo data, course OTHER with student carol, and inactive student zed in DEMO101."""
    await load_demo_data(sessions, "demo")
    async with sessions.begin() as db:
        users = {u.username: u for u in (await db.scalars(select(User))).all()}
        demo_course = await db.scalar(select(Course).where(Course.code == "DEMO101"))
        demo_assignment = await db.scalar(select(Assignment))
        assert demo_course is not None and demo_assignment is not None
        other = Course(code="OTHER", title="Another course")
        other_assignment = Assignment(course=other, title="Other essay")
        carol = User(username="carol", display_name="Carol", password_hash="x")
        zed = User(username="zed", display_name="Zed", password_hash="x", is_active=False)
        db.add_all([other, other_assignment, carol, zed])
        db.add(Enrolment(user=carol, course=other, role=CourseRole.STUDENT))
        db.add(Enrolment(user=zed, course=demo_course, role=CourseRole.STUDENT))
        await db.flush()
        subs = [
            _submission(demo_assignment.id, users["alice"].id),
            _submission(demo_assignment.id, users["bob"].id),
            _submission(other_assignment.id, carol.id),
        ]
        db.add_all(subs)
        await db.flush()
        users |= {"carol": carol, "zed": zed}
        return World(
            users=users,
            demo_course=demo_course.id,
            other_course=other.id,
            demo_assignment=demo_assignment.id,
            other_assignment=other_assignment.id,
            alice_submission=subs[0].id,
            bob_submission=subs[1].id,
            carol_submission=subs[2].id,
        )

"""Who may see what: the one set of access rules the web API and the router's
authorizer both apply, so a page and a topic can never disagree."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from herald.models import STAFF_ROLES, Assignment, CourseRole, Enrolment, Submission, User

__all__ = [
    "can_view_assignment",
    "can_view_course",
    "can_view_submission",
    "course_role",
]


async def course_role(db: AsyncSession, user_id: int, course_id: int) -> CourseRole | None:
    """The user's role in a course, or ``None`` if not enrolled."""
    return await db.scalar(
        select(Enrolment.role).where(Enrolment.user_id == user_id, Enrolment.course_id == course_id)
    )


async def can_view_course(db: AsyncSession, user: User, course_id: int) -> bool:
    return user.is_admin or await course_role(db, user.id, course_id) is not None


async def can_view_assignment(db: AsyncSession, user: User, assignment_id: int) -> bool:
    course_id = await db.scalar(select(Assignment.course_id).where(Assignment.id == assignment_id))
    if course_id is None:
        return False
    return await can_view_course(db, user, course_id)


async def can_view_submission(db: AsyncSession, user: User, submission_id: int) -> bool:
    """The submission's owner, staff (marker/admin) of its course, and site admins."""
    row = (
        await db.execute(
            select(Submission.student_id, Assignment.course_id)
            .join(Assignment, Assignment.id == Submission.assignment_id)
            .where(Submission.id == submission_id)
        )
    ).one_or_none()
    if row is None:
        return False
    student_id, course_id = row
    if student_id == user.id or user.is_admin:
        return True
    return await course_role(db, user.id, course_id) in STAFF_ROLES

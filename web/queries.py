"""Read-side queries shared by the JSON API and the pages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from herald.access import can_view_submission
from herald.events import current_seq, iso
from herald.models import (
    Assignment,
    Course,
    CourseRole,
    Enrolment,
    Submission,
    Task,
    TaskStatus,
    User,
)
from herald.names import MAX_ROW_ID, submission_topic
from web.errors import NotFound
from workers.pipeline import (
    STEP_INDEX,
    SUBMISSION_STEPS,
    overall_progress,
    step_kind,
    step_progress,
    step_state,
)

__all__ = [
    "CourseView",
    "assignments_for",
    "courses_for",
    "parse_id",
    "recent_submissions",
    "submission_progress",
    "submission_state",
    "thumbnail_path",
    "user_json",
]

THUMBNAIL_KIND = step_kind(SUBMISSION_STEPS[STEP_INDEX["thumbnail"]])


@dataclass(frozen=True)
class CourseView:
    course: Course
    role: str  # a CourseRole value, or "admin" for site admins not enrolled


def parse_id(raw: str) -> int:
    """A database id from a URL segment; :class:`NotFound` if it cannot be one."""
    if not raw.isascii() or not raw.isdigit():
        raise NotFound()
    value = int(raw)
    # A larger id cannot exist, and PostgreSQL would raise instead of finding nothing.
    if not 0 < value <= MAX_ROW_ID:
        raise NotFound()
    return value


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "email": user.email,
        "is_admin": user.is_admin,
    }


async def courses_for(db: AsyncSession, user: User) -> list[CourseView]:
    """The user's courses with their role; site admins see every course."""
    rows = (
        await db.execute(
            select(Course, Enrolment.role)
            .join(Enrolment, Enrolment.course_id == Course.id)
            .where(Enrolment.user_id == user.id)
            .order_by(Course.code)
        )
    ).all()
    views = [CourseView(course, str(role)) for course, role in rows]
    if user.is_admin:
        enrolled = {view.course.id for view in views}
        others = (await db.scalars(select(Course).order_by(Course.code))).all()
        views += [CourseView(c, str(CourseRole.ADMIN)) for c in others if c.id not in enrolled]
    return views


async def assignments_for(db: AsyncSession, course_ids: list[int]) -> list[Assignment]:
    """Assignments of these courses, soonest due first (undated last)."""
    if not course_ids:
        return []
    rows = await db.scalars(
        select(Assignment)
        .options(selectinload(Assignment.course))
        .where(Assignment.course_id.in_(course_ids))
        .order_by(Assignment.due_at.is_(None), Assignment.due_at, Assignment.id)
    )
    return list(rows.all())


async def recent_submissions(
    db: AsyncSession,
    *,
    student_id: int | None = None,
    assignment_id: int | None = None,
    limit: int = 20,
) -> list[Submission]:
    """Newest submissions first, by student and/or assignment (with their steps, for
    :func:`submission_progress`)."""
    query = select(Submission).options(
        selectinload(Submission.assignment),
        selectinload(Submission.student),
        selectinload(Submission.tasks),
    )
    if student_id is not None:
        query = query.where(Submission.student_id == student_id)
    if assignment_id is not None:
        query = query.where(Submission.assignment_id == assignment_id)
    query = query.order_by(Submission.created_at.desc(), Submission.id.desc()).limit(limit)
    return list((await db.scalars(query)).all())


def submission_progress(submission: Submission) -> int:
    """Its overall progress, 0-100, from its loaded steps."""
    return overall_progress(submission.status, map(step_progress, submission.tasks))


def thumbnail_path(tasks: Iterable[Task]) -> Path | None:
    """The submission's preview PNG, once its thumbnail step made one."""
    for task in tasks:
        if task.kind == THUMBNAIL_KIND and task.status == TaskStatus.DONE and task.result:
            made = task.result.get("thumbnail")
            if isinstance(made, str) and Path(made).is_file():
                return Path(made)
    return None


async def submission_state(
    sessions: async_sessionmaker[AsyncSession], redis: Redis, user: User, submission_id: int
) -> dict[str, Any]:
    """The submission as the API and the live page show it; :class:`NotFound` if not
    visible to ``user`` (whether it exists is not disclosed)."""
    async with sessions() as db:
        if not await can_view_submission(db, user, submission_id):
            raise NotFound()
    topic = submission_topic(submission_id)
    # Read seq BEFORE the state: every event with seq <= this one was published
    # after its DB commit, so the state read below already includes it; the
    # client then applies only events with a later seq. Read in the other order,
    # an event committed in between would be counted but missing from the state.
    seq = await current_seq(redis, topic)
    # A fresh DB session, so the reads start after the seq read on every backend.
    async with sessions() as db:
        submission = await db.scalar(
            select(Submission)
            .options(
                selectinload(Submission.tasks),
                selectinload(Submission.assignment),
                selectinload(Submission.student),
            )
            .where(Submission.id == submission_id)
        )
    if submission is None:
        raise NotFound()
    tasks = list(submission.tasks)
    released = submission.grade_released_at is not None
    return {
        "id": submission.id,
        "topic": topic,
        "status": str(submission.status),
        "seq": seq,
        "progress": submission_progress(submission),
        "detail": submission.status_detail,
        "filename": submission.filename,
        "size": submission.size,
        "content_type": submission.content_type,
        "sha256": submission.sha256,
        "created_at": iso(submission.created_at),
        "assignment": {"id": submission.assignment.id, "title": submission.assignment.title},
        "student": {
            "id": submission.student.id,
            "display_name": submission.student.display_name,
        },
        "steps": [step_state(task) for task in tasks],
        "thumbnail_url": (
            f"/api/submissions/{submission.id}/thumbnail" if thumbnail_path(tasks) else None
        ),
        "grade": submission.grade if released else None,
        "grade_released_at": iso(submission.grade_released_at) if released else None,
    }

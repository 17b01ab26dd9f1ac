"""The assignment a report or export task is about, read from its parameters."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from herald.models import Assignment, Course
from workers.context import TaskContext
from workers.kinds import TaskFailed

__all__ = ["AssignmentInfo", "find_assignment"]


@dataclass(frozen=True)
class AssignmentInfo:
    id: int
    title: str
    course: str  # the course code


async def find_assignment(ctx: TaskContext) -> AssignmentInfo:
    """The task's ``assignment_id`` assignment; :class:`TaskFailed` if there is none."""
    assignment_id = ctx.params.get("assignment_id")
    if not isinstance(assignment_id, int) or isinstance(assignment_id, bool):
        raise TaskFailed("assignment_id must be an integer")
    async with ctx.sessions() as db:
        found = (
            await db.execute(
                select(Assignment.title, Course.code)
                .join(Course, Course.id == Assignment.course_id)
                .where(Assignment.id == assignment_id)
            )
        ).first()
    if found is None:
        raise TaskFailed(f"there is no assignment {assignment_id}")
    return AssignmentInfo(assignment_id, found.title, found.code)

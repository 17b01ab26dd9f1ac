"""An assignment's marking progress: how many submissions are in, processed, graded
and released.

Whatever changes one of the counts (an upload, a pipeline ending, a grade, a release)
announces it on ``assignment.{id}`` with :func:`announce_marking`. The event carries
no figures: students of the course may follow that topic too, and how much of their
cohort's work is graded is the markers' business. Staff pages fetch the counts from
the API on each announcement, which also makes the newest fetch the truth whatever
order the announcements of concurrent changes arrive in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from herald.events import EventPublisher
from herald.models import SUBMISSION_FINAL, Submission
from herald.names import EventType, assignment_topic

__all__ = ["MarkingCounts", "announce_marking", "marking_counts"]


@dataclass(frozen=True)
class MarkingCounts:
    submitted: int
    processed: int
    graded: int
    released: int

    def as_json(self) -> dict[str, int]:
        return asdict(self)


async def marking_counts(db: AsyncSession, assignment_id: int) -> MarkingCounts:
    """The assignment's counts, in one aggregate query."""
    row = (
        await db.execute(
            select(
                func.count(Submission.id),
                # Processed: its pipeline has ended, however it ended.
                func.coalesce(
                    func.sum(case((Submission.status.in_(SUBMISSION_FINAL), 1), else_=0)), 0
                ),
                func.count(Submission.grade),
                func.count(Submission.grade_released_at),
            ).where(Submission.assignment_id == assignment_id)
        )
    ).one()
    return MarkingCounts(*(int(value) for value in row))


async def announce_marking(publisher: EventPublisher, assignment_id: int) -> None:
    """Tell the assignment's pages that its counts changed (after the change's commit)."""
    await publisher.publish(
        assignment_topic(assignment_id),
        EventType.MARKING_PROGRESS,
        {"assignment_id": assignment_id},
    )

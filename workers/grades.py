"""Releasing an assignment's grades: the ``grades.release`` task kind.

A release runs as a queued task, now or at a time (a delayed job), so a scheduled
release runs once however many workers or web processes there are. The release
itself is idempotent: it releases only grades not yet released, so a re-run after
a crash releases nothing twice.

Each student's flash is stored in the same transaction as the release, so a crash
after the commit still leaves every student the flash to see on their next page
view; only the live events of that attempt are lost, and an open page catches up
on its next reconnect.
"""

from __future__ import annotations

from sqlalchemy import select, update

from herald.flash import Flash, add_flashes, flash_json, publish_flashes
from herald.logs import get_logger
from herald.marking import announce_marking
from herald.models import Assignment, Submission, utcnow
from herald.names import EventType, assignment_topic, submission_topic
from workers.context import TaskContext
from workers.kinds import Outcome, TaskFailed, TaskKind, register

__all__ = ["RELEASE_KIND", "release_grades"]

RELEASE_KIND = "grades.release"

log = get_logger(__name__)


async def release_grades(ctx: TaskContext) -> Outcome:
    """Make every graded, unreleased submission's grade visible; tell each student."""
    assignment_id = ctx.params.get("assignment_id")
    if not isinstance(assignment_id, int) or isinstance(assignment_id, bool):
        raise TaskFailed("assignment_id must be an integer")
    async with ctx.sessions.begin() as db:
        title = await db.scalar(select(Assignment.title).where(Assignment.id == assignment_id))
        if title is None:
            raise TaskFailed(f"no assignment {assignment_id}")
        released = (
            await db.execute(
                update(Submission)
                .where(
                    Submission.assignment_id == assignment_id,
                    Submission.grade.is_not(None),
                    Submission.grade_released_at.is_(None),
                )
                .values(grade_released_at=utcnow())
                .returning(Submission.id, Submission.student_id, Submission.grade)
            )
        ).all()
        flashes = [
            add_flashes(
                db,
                [row.student_id],
                Flash(
                    f"Your grade for {title} is out.",
                    level="success",
                    button=("See it", f"/submissions/{row.id}"),
                ),
            )[0]
            for row in released
        ]
        await db.flush()
        payloads = [(message.user_id, flash_json(message)) for message in flashes]
    # Published after the commit: a page that resyncs on the event finds the grade.
    for row in released:
        await ctx.publisher.publish(
            submission_topic(row.id), EventType.GRADE_RELEASED, {"grade": row.grade}
        )
    await publish_flashes(ctx.publisher, payloads)
    await ctx.publisher.publish(
        assignment_topic(assignment_id), EventType.GRADES_RELEASED, {"released": len(released)}
    )
    await announce_marking(ctx.publisher, assignment_id)
    log.info("grades released", assignment_id=assignment_id, released=len(released))
    return Outcome(
        detail=f"Released {len(released)} grade{'s' if len(released) != 1 else ''}",
        result={"released": [row.id for row in released]},
    )


register(TaskKind(RELEASE_KIND, "io", release_grades, label="Releasing grades", max_attempts=5))

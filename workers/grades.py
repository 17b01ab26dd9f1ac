"""Releasing an assignment's grades: the ``grades.release`` task kind.

A release runs as a queued task, now or at a time (a delayed job), so a scheduled
release runs once however many workers or web processes there are. The release
itself is idempotent: it releases only grades not yet released, so a re-run after
a crash releases nothing twice.

Each student's flash, and with ``"email": true`` a ``grades.email`` task per
student, is stored in the same transaction as the release, so a crash after the
commit still leaves every student the flash to see on their next page view and the
email to come (the reconciler enqueues a recorded task whose job never reached
Redis); only the live events of that attempt are lost, and an open page catches up
on its next reconnect.
"""

from __future__ import annotations

from sqlalchemy import select, update

from herald.flash import Flash, add_flashes, flash_json, publish_flashes
from herald.logs import get_logger
from herald.marking import announce_marking
from herald.models import Assignment, Course, Submission, User, utcnow
from herald.names import EventType, assignment_topic, submission_topic
from workers.context import TaskContext
from workers.control import TaskRequest, enqueue_recorded, record_tasks
from workers.kinds import Outcome, TaskFailed, TaskKind, register
from workers.mailer import Mailer, MailPermanentError, build_grade_notice, grade_notice_key

__all__ = ["EMAIL_KIND", "RELEASE_KIND", "email_grade", "release_grades"]

RELEASE_KIND = "grades.release"
EMAIL_KIND = "grades.email"

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
        emails = [
            TaskRequest(
                EMAIL_KIND,
                {"submission_id": row.id},
                key=grade_notice_key(row.id),
                owner_id=ctx.run.owner_id,
            )
            for row in released
            if ctx.params.get("email") is True
        ]
        _, email_jobs = await db.run_sync(
            lambda session: record_tasks(session.connection(), emails)
        )
    await enqueue_recorded(ctx.services.queue, email_jobs)
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


async def email_grade(ctx: TaskContext) -> Outcome:
    """Email one student that their grade is out (once, whatever the re-runs)."""
    submission_id = ctx.params.get("submission_id")
    if not isinstance(submission_id, int) or isinstance(submission_id, bool):
        raise TaskFailed("submission_id must be an integer")
    async with ctx.sessions() as db:
        found = (
            await db.execute(
                select(User.email, User.display_name, Assignment.title, Course.code)
                .select_from(Submission)
                .join(User, User.id == Submission.student_id)
                .join(Assignment, Assignment.id == Submission.assignment_id)
                .join(Course, Course.id == Assignment.course_id)
                .where(Submission.id == submission_id)
            )
        ).first()
    if found is None:
        raise TaskFailed(f"no submission {submission_id}")
    if not found.email:
        return Outcome(detail="No email address on file")
    key = grade_notice_key(submission_id)
    message = build_grade_notice(
        key=key,
        to_address=found.email,
        to_name=found.display_name,
        assignment_title=found.title,
        course=found.code,
        link=f"/submissions/{submission_id}",
    )
    try:
        delivery = await Mailer(ctx.settings).send(message, key)
    except MailPermanentError as exc:
        raise TaskFailed(f"the grade email was refused: {exc}") from exc
    return Outcome(detail=f"Grade notice sent ({delivery.via})")


register(TaskKind(RELEASE_KIND, "io", release_grades, label="Releasing grades", max_attempts=5))
register(TaskKind(EMAIL_KIND, "io", email_grade, label="Emailing a grade notice", max_attempts=5))

"""The steps that tell others about a recorded submission: the admin system, and
the student (a receipt by email and a message in their inbox)."""

from __future__ import annotations

from sqlalchemy import select

from herald.models import Assignment, Course, Message, MessageKind, Submission, User
from workers.mailer import Mailer, MailPermanentError, build_receipt, receipt_key
from workers.step_context import StepContext, StepFailed, StepOutcome
from workers.webhook import AdminWebhook, WebhookRejected

__all__ = ["admin_sync", "notify"]


def _record(submission: Submission, assignment: Assignment) -> dict[str, object]:
    """What the admin system is told: the facts of the submission, no file."""
    return {
        "submission_id": submission.id,
        "assignment_id": submission.assignment_id,
        "course_id": assignment.course_id,
        "student_id": submission.student_id,
        "filename": submission.filename,
        "content_type": submission.content_type,
        "size": submission.size,
        "sha256": submission.sha256,
        "word_count": submission.word_count,
        "received_at": submission.created_at.isoformat(),
    }


async def admin_sync(ctx: StepContext, submission: Submission) -> StepOutcome:
    """POST the submission's record to the admin system, signed, once per submission."""
    url, secret = ctx.settings.admin_webhook_url, ctx.settings.admin_webhook_secret
    if not url or not secret:
        return StepOutcome(detail="Skipped: not configured", result={"sent": False})
    async with ctx.sessions() as db:
        assignment = await db.get(Assignment, submission.assignment_id)
    if assignment is None:
        raise StepFailed("the assignment no longer exists")
    await ctx.progress(20, "sending to the admin system")
    async with AdminWebhook(url, secret) as hook:
        try:
            delivery = await hook.deliver(
                _record(submission, assignment), idempotency_key=f"submission-{submission.id}"
            )
        except WebhookRejected as exc:
            raise StepFailed(f"the admin system refused the record: {exc}") from exc
    detail = "Sent to the admin system"
    if delivery.duplicate:
        detail += " (it already had it)"
    return StepOutcome(
        detail=detail,
        result={"sent": True, "status": delivery.status, "record_id": delivery.record_id},
    )


async def notify(ctx: StepContext, submission: Submission) -> StepOutcome:
    """Email the student a receipt and leave a message in their inbox."""
    async with ctx.sessions() as db:
        student = await db.get(User, submission.student_id)
        assignment = await db.get(Assignment, submission.assignment_id)
        course = await db.get(Course, assignment.course_id) if assignment else None
    if student is None or assignment is None or course is None:
        raise StepFailed("the student or assignment no longer exists")
    link = f"/submissions/{submission.id}"
    sent = "no email address on file"
    if student.email:
        message = build_receipt(
            key=receipt_key(submission.id),
            to_address=student.email,
            to_name=student.display_name,
            assignment_title=assignment.title,
            course=course.code,
            filename=submission.filename,
            size=submission.size,
            sha256=submission.sha256,
            received_at=submission.created_at,
            link=link,
        )
        try:
            delivery = await Mailer(ctx.settings).send(message, receipt_key(submission.id))
        except MailPermanentError as exc:
            raise StepFailed(f"the receipt email was refused: {exc}") from exc
        sent = "emailed" if delivery.via == "smtp" else f"written to the outbox ({delivery.via})"
    await _inbox(ctx, student.id, link, f"Your submission “{submission.filename}” is processed.")
    return StepOutcome(detail=f"Receipt {sent}; inbox message left", result={"email": sent})


async def _inbox(ctx: StepContext, user_id: int, link: str, text: str) -> None:
    # Once per submission: a re-run after a crash finds the message it left.
    async with ctx.sessions.begin() as db:
        existing = await db.scalar(
            select(Message.id).where(
                Message.user_id == user_id, Message.kind == MessageKind.INBOX, Message.link == link
            )
        )
        if existing is None:
            db.add(Message(user_id=user_id, kind=MessageKind.INBOX, text=text, link=link))

"""Accepting a submission: permission, streamed upload, one DB transaction, enqueue."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from herald.access import course_role
from herald.logs import get_logger
from herald.marking import announce_marking
from herald.models import Assignment, CourseRole, Submission, SubmissionStatus, User
from web.errors import Forbidden, NotFound
from web.keys import DB, PUBLISHER, QUEUE, SETTINGS
from web.uploads import accepted_types, receive_upload
from workers.pipeline import plan_submission_tasks
from workers.queue import job_for

__all__ = ["accept_submission", "check_can_submit"]

log = get_logger(__name__)


async def check_can_submit(request: web.Request, user: User, assignment_id: int) -> Assignment:
    """The assignment, if ``user`` may submit to it now.

    :class:`NotFound` for an unknown assignment; :class:`Forbidden` unless the
    user is enrolled as a student in its course and it is open.
    """
    async with request.app[DB]() as db:
        assignment = await db.get(Assignment, assignment_id)
        if assignment is None:
            raise NotFound("No such assignment.")
        role = await course_role(db, user.id, assignment.course_id)
    if role != CourseRole.STUDENT:
        raise Forbidden("Only students enrolled in this course can submit to it.")
    if not assignment.is_open:
        raise Forbidden("This assignment is closed for submissions.")
    return assignment


async def accept_submission(request: web.Request, user: User, assignment_id: int) -> Submission:
    """Check, store and queue one upload; returns the new submission.

    Permission is checked before a byte of the body is read. The submission and
    its pipeline tasks are committed together; the first task is enqueued only
    after the commit, so a worker never sees a job whose row does not exist.
    """
    assignment = await check_can_submit(request, user, assignment_id)
    upload = await receive_upload(
        request, request.app[SETTINGS], allowed=accepted_types(assignment.allowed_types)
    )
    try:
        async with request.app[DB].begin() as db:
            submission = Submission(
                assignment_id=assignment_id,
                student_id=user.id,
                status=SubmissionStatus.RECEIVED,
                filename=upload.filename,
                content_type=upload.content_type,
                size=upload.size,
                sha256=upload.sha256,
                upload_path=str(upload.path),
            )
            db.add(submission)
            await db.flush()  # the tasks' params need submission.id
            tasks = plan_submission_tasks(submission)
            db.add_all(tasks)
    except BaseException:
        # No row points at the file: do not leave it behind.
        await asyncio.shield(asyncio.to_thread(upload.discard))
        raise
    structlog.contextvars.bind_contextvars(submission_id=submission.id, user_id=user.id)
    try:
        await request.app[QUEUE].enqueue(job_for(tasks[0]))
    except RedisError:
        # The DB row says "queued"; the reconciler re-enqueues it when Redis is back.
        log.warning("submission.enqueue_failed", exc_info=True)
    try:
        await announce_marking(request.app[PUBLISHER], assignment_id)
    except RedisError:
        # Only the markers' counts wait for the next announcement (or a page view).
        log.warning("submission.announce_failed", exc_info=True)
    log.info(
        "submission.received",
        assignment_id=assignment_id,
        size=upload.size,
        content_type=upload.content_type,
        sha256=upload.sha256,
    )
    return submission

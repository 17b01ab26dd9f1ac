"""Accepting a submission: permission, streamed upload, one DB transaction, enqueue.

This is the path a deadline burst hits, so its DB work is kept to two round
trips: one query for the permission check, and one transaction (run whole in a
worker thread on SQLite, see :class:`herald.db.Transactions`) that writes the
submission and its task rows. Through aiosqlite each statement of an ORM
transaction waited for a turn of the busy event loop while holding SQLite's write
lock, and concurrent uploads queued behind each other (bench/upload_ack.py).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import structlog
from aiohttp import web
from redis.exceptions import RedisError
from sqlalchemy import Connection, Row, and_, insert, select

from herald.db import Transactions
from herald.logs import get_logger
from herald.marking import announce_marking
from herald.models import (
    Assignment,
    CourseRole,
    Enrolment,
    Submission,
    SubmissionStatus,
    Task,
    User,
    utcnow,
)
from web.errors import Forbidden, NotFound
from web.keys import DB, ENGINE, PUBLISHER, QUEUE, SETTINGS
from web.uploads import accepted_types, receive_upload
from workers.pipeline import submission_task_rows
from workers.queue import job_for

__all__ = ["accept_submission", "check_can_submit"]

log = get_logger(__name__)


async def check_can_submit(request: web.Request, user: User, assignment_id: int) -> Assignment:
    """The assignment, if ``user`` may submit to it now.

    :class:`NotFound` for an unknown assignment; :class:`Forbidden` unless the
    user is enrolled as a student in its course and it is open.
    """
    async with request.app[DB]() as db:
        # One round trip: the assignment with the user's role in its course.
        found = (
            await db.execute(
                select(Assignment, Enrolment.role)
                .outerjoin(
                    Enrolment,
                    and_(
                        Enrolment.course_id == Assignment.course_id,
                        Enrolment.user_id == user.id,
                    ),
                )
                .where(Assignment.id == assignment_id)
            )
        ).first()
    if found is None:
        raise NotFound("No such assignment.")
    assignment, role = found
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
    now = utcnow()
    values: dict[str, Any] = {
        "assignment_id": assignment_id,
        "student_id": user.id,
        "status": SubmissionStatus.RECEIVED,
        "filename": upload.filename,
        "content_type": upload.content_type,
        "size": upload.size,
        "sha256": upload.sha256,
        "upload_path": str(upload.path),
        "created_at": now,
        "updated_at": now,
    }
    try:
        submission_id, first = await Transactions.shared(request.app[ENGINE]).run(
            partial(_record_submission, values)
        )
    except BaseException:
        # No row points at the file: do not leave it behind.
        await asyncio.shield(asyncio.to_thread(upload.discard))
        raise
    # Detached: what the caller reads (id, status, …) is all here already.
    submission = Submission(id=submission_id, **values)
    structlog.contextvars.bind_contextvars(submission_id=submission.id, user_id=user.id)
    try:
        await request.app[QUEUE].enqueue(job_for(first))
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


def _record_submission(
    values: dict[str, Any], conn: Connection
) -> tuple[int, Row[int, str, str, int, int, bool]]:
    """Insert the submission and its pipeline's task rows; returns its id and the
    first task (the one to enqueue)."""
    submission_id: int = conn.execute(
        insert(Submission).values(values).returning(Submission.id)
    ).scalar_one()
    first, *rest = submission_task_rows(submission_id, values["student_id"])
    queued = conn.execute(
        insert(Task)
        .values(first)
        .returning(Task.id, Task.kind, Task.queue, Task.priority, Task.max_attempts, Task.immediate)
    ).one()
    conn.execute(insert(Task), rest)
    return submission_id, queued

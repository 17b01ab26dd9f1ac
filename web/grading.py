"""Markers grade submissions and release an assignment's grades, now or at a time.

Grades stay invisible to students until released (web.queries.submission_state);
the release itself is a queued task (workers.grades), so a scheduled one runs once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select

from herald.access import course_role
from herald.db import Transactions
from herald.models import STAFF_ROLES, Assignment, Submission, User
from web.auth import require_user
from web.errors import BadJson, Forbidden, NotFound
from web.keys import DB, ENGINE, QUEUE
from web.queries import parse_id
from workers.control import TaskRequest, submit_tasks
from workers.grades import RELEASE_KIND

__all__ = ["routes"]

routes = web.RouteTableDef()

MAX_GRADE = 32


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadJson() from None
    if not isinstance(body, dict):
        raise BadJson("The body must be a JSON object.")
    return body


async def _require_staff(request: web.Request, user: User, course_id: int) -> None:
    async with request.app[DB]() as db:
        role = await course_role(db, user.id, course_id)
    if not user.is_admin and role not in STAFF_ROLES:
        raise Forbidden("Only the course's markers may do that.")


@routes.put("/api/submissions/{sid}/grade")
async def set_grade(request: web.Request) -> web.Response:
    """Set or change a submission's grade (course markers); hidden until released."""
    user, _ = require_user(request)
    submission_id = parse_id(request.match_info["sid"])
    body = await _json_object(request)
    grade = body.get("grade")
    if not isinstance(grade, str) or not 0 < len(grade.strip()) <= MAX_GRADE:
        raise BadJson(f"grade must be text of 1 to {MAX_GRADE} characters.")
    async with request.app[DB]() as db:
        course_id = await db.scalar(
            select(Assignment.course_id)
            .join(Submission, Submission.assignment_id == Assignment.id)
            .where(Submission.id == submission_id)
        )
    if course_id is None:
        raise NotFound()
    await _require_staff(request, user, course_id)
    async with request.app[DB].begin() as db:
        submission = await db.get(Submission, submission_id)
        assert submission is not None
        submission.grade = grade.strip()
    return web.json_response({"id": submission_id, "grade": grade.strip()})


@routes.post("/api/assignments/{aid}/release")
async def release(request: web.Request) -> web.Response:
    """Release the assignment's grades now (``"at": null``) or at an ISO time."""
    user, _ = require_user(request)
    assignment_id = parse_id(request.match_info["aid"])
    body = await _json_object(request)
    at = body.get("at")
    when: float | None = None
    if at is not None:
        try:
            moment = datetime.fromisoformat(str(at))
        except ValueError:
            raise BadJson("at must be null or an ISO 8601 time with its zone.") from None
        if moment.tzinfo is None:
            raise BadJson("at must say its time zone, e.g. 2026-12-01T09:00:00+00:00.")
        when = moment.astimezone(UTC).timestamp()
    async with request.app[DB]() as db:
        course_id = await db.scalar(
            select(Assignment.course_id).where(Assignment.id == assignment_id)
        )
    if course_id is None:
        raise NotFound()
    await _require_staff(request, user, course_id)
    transactions = Transactions(request.app[ENGINE])
    try:
        (submitted,) = await submit_tasks(
            transactions,
            request.app[QUEUE],
            [
                TaskRequest(
                    RELEASE_KIND,
                    {"assignment_id": assignment_id},
                    at=when,
                    owner_id=user.id,
                    # A scheduled release is made once however often it is clicked; a
                    # release now may run again later (it releases only what is new).
                    key=None if when is None else f"release-{assignment_id}-{int(when)}",
                )
            ],
        )
    finally:
        transactions.close()
    return web.json_response({"task": submitted.id, "at": at}, status=202)

"""Markers grade submissions and release an assignment's grades, now or at a time.

Grades stay invisible to students until released (web.queries.submission_state);
the release itself is a queued task (workers.grades), so a scheduled one runs once.
Each action has a JSON route (the page script uses these) and a form route that
does the same without JavaScript and comes back to the assignment page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from herald.access import course_role
from herald.db import Transactions
from herald.events import iso
from herald.logs import get_logger
from herald.marking import announce_marking, marking_counts
from herald.models import STAFF_ROLES, Assignment, Submission, Task, TaskStatus, User
from herald.names import EventType, submission_topic
from web.auth import require_user
from web.errors import BadJson, BadRequest, Forbidden, NotFound
from web.json_body import read_json_object
from web.keys import DB, ENGINE, PUBLISHER, QUEUE
from web.queries import parse_id
from workers.control import TaskRequest, submit_tasks
from workers.grades import RELEASE_KIND

__all__ = ["routes"]

routes = web.RouteTableDef()
log = get_logger(__name__)

MAX_GRADE: Final = 32
# Submissions whose grades one marking request may ask for (a page shows up to 200).
MAX_LISTED: Final = 200


async def _require_staff(request: web.Request, user: User, course_id: int | None) -> None:
    """Only the course's markers (and site admins); an unknown course is a 404."""
    if course_id is None:
        raise NotFound()
    async with request.app[DB]() as db:
        role = await course_role(db, user.id, course_id)
    if not user.is_admin and role not in STAFF_ROLES:
        raise Forbidden("Only the course's markers may do that.")


def _checked_grade(raw: object) -> str:
    grade = raw.strip() if isinstance(raw, str) else ""
    if not 0 < len(grade) <= MAX_GRADE:
        raise BadRequest(f"A grade is text of 1 to {MAX_GRADE} characters.")
    return grade


async def _set_grade(request: web.Request, user: User, submission_id: int, grade: str) -> int:
    """Record the grade; returns the submission's assignment id."""
    async with request.app[DB]() as db:
        found = (
            await db.execute(
                select(Assignment.course_id, Assignment.id)
                .join(Submission, Submission.assignment_id == Assignment.id)
                .where(Submission.id == submission_id)
            )
        ).first()
    await _require_staff(request, user, found.course_id if found else None)
    assert found is not None
    async with request.app[DB].begin() as db:
        submission = await db.get(Submission, submission_id, with_for_update=True)
        assert submission is not None
        submission.grade = grade
        released = submission.grade_released_at is not None
    publisher = request.app[PUBLISHER]
    if released:
        # Already out: the student sees the change as it is made.
        await publisher.publish(
            submission_topic(submission_id), EventType.GRADE_RELEASED, {"grade": grade}
        )
    await announce_marking(publisher, found.id)
    log.info("grade set", submission_id=submission_id, user_id=user.id, released=released)
    return int(found.id)


def _release_time(at: object, zone: str | None = None) -> float | None:
    """UNIX time of ``at`` (ISO 8601 with its zone, or local to the IANA ``zone``)."""
    if at is None:
        return None
    try:
        moment = datetime.fromisoformat(str(at))
    except ValueError:
        raise BadRequest("at must be null or an ISO 8601 time with its zone.") from None
    if moment.tzinfo is None:
        if zone is None:
            raise BadRequest("at must say its time zone, e.g. 2026-12-01T09:00:00+00:00.")
        try:
            moment = moment.replace(tzinfo=ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            raise BadRequest(f"Unknown time zone {zone!r}.") from None
    return moment.astimezone(UTC).timestamp()


async def _release(
    request: web.Request, user: User, assignment_id: int, when: float | None, *, email: bool
) -> int:
    """Queue the release task (delayed to ``when``; each student also emailed if
    ``email``); returns its id."""
    async with request.app[DB]() as db:
        course_id = await db.scalar(
            select(Assignment.course_id).where(Assignment.id == assignment_id)
        )
    await _require_staff(request, user, course_id)
    params: dict[str, Any] = {"assignment_id": assignment_id, "email": email}
    if when is not None:
        params["at"] = iso(datetime.fromtimestamp(when, UTC))
    transactions = Transactions(request.app[ENGINE])
    try:
        (submitted,) = await submit_tasks(
            transactions,
            request.app[QUEUE],
            [
                TaskRequest(
                    RELEASE_KIND,
                    params,
                    at=when,
                    owner_id=user.id,
                    # A scheduled release is made once however often it is clicked; a
                    # release now may run again later (it releases only what is new).
                    key=(
                        None if when is None else f"release-{assignment_id}-{int(when)}-{email:d}"
                    ),
                )
            ],
        )
    finally:
        transactions.close()
    log.info(
        "release queued", assignment_id=assignment_id, task_id=submitted.id, at=params.get("at")
    )
    return submitted.id


@routes.put("/api/submissions/{sid}/grade")
async def set_grade(request: web.Request) -> web.Response:
    """Set or change a submission's grade (course markers); hidden until released."""
    user, _ = require_user(request)
    submission_id = parse_id(request.match_info["sid"])
    body = await read_json_object(request)
    try:
        grade = _checked_grade(body.get("grade"))
    except BadRequest as exc:
        raise BadJson(exc.message) from None
    await _set_grade(request, user, submission_id, grade)
    return web.json_response({"id": submission_id, "grade": grade})


@routes.post("/submissions/{sid}/grade")
async def set_grade_form(request: web.Request) -> web.Response:
    """The grade form of the assignment page, without JavaScript."""
    user, _ = require_user(request)
    submission_id = parse_id(request.match_info["sid"])
    form = await request.post()
    assignment_id = await _set_grade(
        request, user, submission_id, _checked_grade(form.get("grade"))
    )
    location = f"/assignments/{assignment_id}#submission-{submission_id}"
    return web.Response(status=303, headers={"Location": location})


@routes.post("/api/assignments/{aid}/release")
async def release(request: web.Request) -> web.Response:
    """Release the assignment's grades now (``"at": null``) or at an ISO time; with
    ``"email": true`` each student is emailed too."""
    user, _ = require_user(request)
    assignment_id = parse_id(request.match_info["aid"])
    body = await read_json_object(request)
    at = body.get("at")
    email = body.get("email", False)
    if not isinstance(email, bool):
        raise BadJson("email must be true or false.")
    try:
        when = _release_time(at)
    except BadRequest as exc:
        raise BadJson(exc.message) from None
    task_id = await _release(request, user, assignment_id, when, email=email)
    return web.json_response({"task": task_id, "at": at}, status=202)


@routes.post("/assignments/{aid}/release")
async def release_form(request: web.Request) -> web.Response:
    """The release form of the assignment page, without JavaScript: ``when`` is
    ``now`` or ``at``, with ``at`` a local time in the browser's zone ``tz`` (UTC
    when the page script could not say)."""
    user, _ = require_user(request)
    assignment_id = parse_id(request.match_info["aid"])
    form = await request.post()
    when = None
    if form.get("when") == "at":
        zone = str(form.get("tz") or "UTC")
        at = str(form.get("at") or "")
        if not at:
            raise BadRequest("Choose the date and time to release the grades at.")
        when = _release_time(at, zone)
    await _release(request, user, assignment_id, when, email=form.get("email") == "1")
    return web.Response(status=303, headers={"Location": f"/assignments/{assignment_id}#marking"})


@routes.get("/api/assignments/{aid}/marking")
async def marking(request: web.Request) -> web.Response:
    """The assignment's marking counts and scheduled releases (course markers), and the
    grade of each submission named in ``?submissions=1,2,3`` (the rows a page shows)."""
    user, _ = require_user(request)
    assignment_id = parse_id(request.match_info["aid"])
    wanted = _id_list(request.query.get("submissions", ""))
    async with request.app[DB]() as db:
        course_id = await db.scalar(
            select(Assignment.course_id).where(Assignment.id == assignment_id)
        )
        await _require_staff(request, user, course_id)
        counts = await marking_counts(db, assignment_id)
        scheduled = await scheduled_releases(db, assignment_id)
        rows = (
            await db.execute(
                select(Submission.id, Submission.grade, Submission.grade_released_at).where(
                    Submission.assignment_id == assignment_id, Submission.id.in_(wanted)
                )
            )
        ).all()
    grades = {
        str(row.id): {"grade": row.grade, "released": row.grade_released_at is not None}
        for row in rows
    }
    return web.json_response({**counts.as_json(), "scheduled": scheduled, "grades": grades})


def _id_list(raw: str) -> list[int]:
    """Ids from ``1,2,3``: at most MAX_LISTED, anything that is not one left out."""
    ids = []
    for part in raw.split(",")[:MAX_LISTED]:
        try:
            ids.append(parse_id(part.strip()))
        except NotFound:
            continue
    return ids


async def scheduled_releases(db: AsyncSession, assignment_id: int) -> list[dict[str, Any]]:
    """Releases of the assignment waiting for their time, soonest first."""
    waiting = await db.scalars(
        select(Task).where(Task.kind == RELEASE_KIND, Task.status == TaskStatus.QUEUED)
    )
    found = [
        {"task": task.id, "at": task.params["at"]}
        for task in waiting
        if task.params.get("assignment_id") == assignment_id and task.params.get("at")
    ]
    return sorted(found, key=lambda item: item["at"])

"""Server-rendered pages: sign-in, dashboard, assignment, submission."""

from __future__ import annotations

from typing import Final

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from herald.access import course_role
from herald.marking import marking_counts
from herald.models import STAFF_ROLES, Assignment, CourseRole, User
from herald.names import submission_topic
from web.auth import (
    authenticate,
    current_user,
    end_session,
    require_user,
    set_session_cookie,
    start_session,
)
from web.errors import BadCredentials, NotFound, TooManyAttempts, Unauthorized, WebError
from web.grading import scheduled_releases
from web.keys import DB, REDIS
from web.queries import (
    assignments_for,
    courses_for,
    parse_id,
    recent_submissions,
    submission_state,
)
from web.render import local_path, render
from web.submissions import accept_submission
from web.uploads import accepted_types, describe_types, picker_hint

__all__ = ["routes", "safe_next"]

routes = web.RouteTableDef()

MAX_FIELD: Final = 200


def safe_next(raw: str | None) -> str:
    """The ``?next=`` target if it is a path on this site, else ``/`` (no open redirect)."""
    return local_path(raw) or "/"


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


@routes.get("/login")
async def login_page(request: web.Request) -> web.StreamResponse:
    """The sign-in form (signed-in users go straight on)."""
    target = safe_next(request.query.get("next"))
    if current_user(request) is not None:
        return _see_other(target)
    return await render(request, "login.html", next=target, username="", error=None)


@routes.post("/login")
async def login_submit(request: web.Request) -> web.StreamResponse:
    """Sign in from the form, then go to ``next`` if it is local."""
    form = await request.post()
    username = str(form.get("username", ""))[:MAX_FIELD]
    password = str(form.get("password", ""))[: MAX_FIELD * 5]
    target = safe_next(str(form.get("next", "")) or None)
    try:
        user = await authenticate(request, username, password)
    except (BadCredentials, TooManyAttempts) as exc:
        response = await render(
            request,
            "login.html",
            status=exc.status,
            next=target,
            username=username,
            error=exc.message,
        )
        response.headers.update(exc.headers)
        return response
    token, _ = await start_session(request, user)
    response = _see_other(target)
    set_session_cookie(request, response, token)
    return response


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    """Sign out (the CSRF middleware has checked the form's token)."""
    response = _see_other("/login")
    await end_session(request, response)
    return response


@routes.get("/")
async def dashboard(request: web.Request) -> web.StreamResponse:
    """My courses and their assignments, and my recent submissions."""
    user, _ = require_user(request)
    async with request.app[DB]() as db:
        courses = await courses_for(db, user)
        assignments = await assignments_for(db, [view.course.id for view in courses])
        submissions = await recent_submissions(db, student_id=user.id, limit=10)
    by_course: dict[int, list[Assignment]] = {}
    for assignment in assignments:
        by_course.setdefault(assignment.course_id, []).append(assignment)
    return await render(
        request, "dashboard.html", courses=courses, by_course=by_course, submissions=submissions
    )


async def _assignment_page(
    request: web.Request,
    user: User,
    assignment_id: int,
    *,
    status: int = 200,
    error: str | None = None,
) -> web.Response:
    async with request.app[DB]() as db:
        assignment = await db.scalar(
            select(Assignment)
            .options(selectinload(Assignment.course))
            .where(Assignment.id == assignment_id)
        )
        if assignment is None:
            raise NotFound("No such assignment.")
        role = await course_role(db, user.id, assignment.course_id)
        if role is None and not user.is_admin:
            # Not disclosed to people outside the course.
            raise NotFound("No such assignment.")
        is_staff = user.is_admin or role in STAFF_ROLES
        mine = await recent_submissions(
            db, student_id=user.id, assignment_id=assignment_id, limit=20
        )
        everyone, counts, scheduled = [], None, []
        if is_staff:
            everyone = await recent_submissions(db, assignment_id=assignment_id, limit=200)
            counts = await marking_counts(db, assignment_id)
            scheduled = await scheduled_releases(db, assignment_id)
    types = accepted_types(assignment.allowed_types)
    return await render(
        request,
        "assignment.html",
        status=status,
        assignment=assignment,
        role=str(role) if role else ("admin" if user.is_admin else None),
        can_submit=role == CourseRole.STUDENT and assignment.is_open,
        is_staff=is_staff,
        mine=mine,
        everyone=everyone,
        counts=counts,
        scheduled=scheduled,
        error=error,
        accepts=describe_types(types),
        accept_hint=picker_hint(types),
    )


@routes.get("/assignments/{aid}")
async def assignment_page(request: web.Request) -> web.StreamResponse:
    """Assignment details, the upload form, and for staff its submissions."""
    user, _ = require_user(request)
    return await _assignment_page(request, user, parse_id(request.match_info["aid"]))


@routes.post("/assignments/{aid}/submit", name="page-upload")
async def assignment_submit(request: web.Request) -> web.StreamResponse:
    """The upload form: accept and go to the submission page, or show why not."""
    user, _ = require_user(request)
    assignment_id = parse_id(request.match_info["aid"])
    try:
        submission = await accept_submission(request, user, assignment_id)
    except (NotFound, Unauthorized):
        raise
    except WebError as exc:
        return await _assignment_page(
            request, user, assignment_id, status=exc.status, error=exc.message
        )
    return _see_other(f"/submissions/{submission.id}")


@routes.get("/submissions/{sid}")
async def submission_page(request: web.Request) -> web.StreamResponse:
    """Live progress of one submission, first rendered from the DB."""
    user, _ = require_user(request)
    submission_id = parse_id(request.match_info["sid"])
    state = await submission_state(request.app[DB], request.app[REDIS], user, submission_id)
    return await render(
        request, "submission.html", state=state, topic=submission_topic(submission_id)
    )

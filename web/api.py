"""The JSON API of DESIGN.md (sessions, me, assignments, tickets, submissions, health)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError

from herald.access import can_view_submission
from herald.events import iso
from herald.models import Task
from herald.names import REALM, submission_topic
from web.auth import authenticate, end_session, require_user, set_session_cookie, start_session
from web.errors import BadJson, NotFound
from web.json_body import read_json_object
from web.keys import DB, ENGINE, REDIS, SESSIONS, SETTINGS
from web.queries import (
    assignments_for,
    courses_for,
    parse_id,
    submission_state,
    thumbnail_path,
    user_json,
)
from web.submissions import accept_submission
from web.uploads import accepted_types

__all__ = ["routes"]

routes = web.RouteTableDef()

HEALTH_TIMEOUT = 2.0


@routes.post("/api/session")
async def create_session(request: web.Request) -> web.Response:
    """Sign in with username and password; sets the session cookie."""
    body = await read_json_object(request)
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise BadJson('Send {"username": ..., "password": ...}.')
    user = await authenticate(request, username, password)
    token, session = await start_session(request, user)
    response = web.json_response({"user": user_json(user), "csrf_token": session.csrf_token})
    set_session_cookie(request, response, token)
    return response


@routes.delete("/api/session")
async def delete_session(request: web.Request) -> web.Response:
    """Sign out."""
    require_user(request)
    response = web.Response(status=204)
    await end_session(request, response)
    return response


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    """The signed-in user, their role in each course, and the CSRF token."""
    user, session = require_user(request)
    async with request.app[DB]() as db:
        courses = await courses_for(db, user)
    return web.json_response(
        {
            "user": user_json(user),
            "roles": {str(view.course.id): view.role for view in courses},
            "courses": [
                {
                    "id": view.course.id,
                    "code": view.course.code,
                    "title": view.course.title,
                    "role": view.role,
                }
                for view in courses
            ],
            "csrf_token": session.csrf_token,
        }
    )


@routes.get("/api/assignments")
async def list_assignments(request: web.Request) -> web.Response:
    """Assignments of the user's courses."""
    user, _ = require_user(request)
    async with request.app[DB]() as db:
        courses = await courses_for(db, user)
        assignments = await assignments_for(db, [view.course.id for view in courses])
    return web.json_response(
        [
            {
                "id": a.id,
                "course": a.course.code,
                "course_id": a.course_id,
                "course_title": a.course.title,
                "title": a.title,
                "description": a.description,
                "due_at": iso(a.due_at),
                "is_open": a.is_open,
                "accepts": list(accepted_types(a.allowed_types)),
                "url": f"/assignments/{a.id}",
            }
            for a in assignments
        ]
    )


@routes.get("/api/wamp/ticket")
async def wamp_ticket(request: web.Request) -> web.Response:
    """A short-lived, single-use WAMP ticket bound to this session."""
    user, session = require_user(request)
    settings = request.app[SETTINGS]
    ticket = await request.app[SESSIONS].issue_ticket(session)
    return web.json_response(
        {
            # ``url`` for clients that know one router; ``urls`` every router node, for
            # the page to spread over and fail over between (herald-live.js).
            "url": settings.router_public_url,
            "urls": list(settings.router_public_urls),
            "realm": REALM,
            "authid": str(user.id),
            "ticket": ticket,
            "expires_in": settings.ticket_ttl_seconds,
        }
    )


@routes.post("/api/assignments/{aid}/submissions", name="api-upload")
async def upload_submission(request: web.Request) -> web.Response:
    """Upload a file (multipart field ``file``) as a new submission."""
    user, _ = require_user(request)
    assignment_id = parse_id(request.match_info["aid"])
    submission = await accept_submission(request, user, assignment_id)
    return web.json_response(
        {
            "id": submission.id,
            "status": str(submission.status),
            "topic": submission_topic(submission.id),
            "url": f"/submissions/{submission.id}",
        },
        status=202,
    )


@routes.get("/api/submissions/{sid}")
async def get_submission(request: web.Request) -> web.Response:
    """A submission's state with the topic ``seq`` it is consistent with."""
    user, _ = require_user(request)
    submission_id = parse_id(request.match_info["sid"])
    state = await submission_state(request.app[DB], request.app[REDIS], user, submission_id)
    return web.json_response(state)


@routes.get("/api/submissions/{sid}/thumbnail")
async def get_thumbnail(request: web.Request) -> web.StreamResponse:
    """The submission's preview PNG (owner and course staff), once it exists."""
    user, _ = require_user(request)
    submission_id = parse_id(request.match_info["sid"])
    async with request.app[DB]() as db:
        if not await can_view_submission(db, user, submission_id):
            raise NotFound()
        tasks = (await db.scalars(select(Task).where(Task.submission_id == submission_id))).all()
    path = thumbnail_path(tasks)
    if path is None:
        raise NotFound("No preview for this submission (yet).")
    # Content-addressed by the file's hash: a cached copy can never go stale.
    return web.FileResponse(path, headers={"Cache-Control": "private, max-age=86400"})


async def _check_db(request: web.Request) -> None:
    async with request.app[ENGINE].connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _check_redis(request: web.Request) -> None:
    await request.app[REDIS].ping()


async def _check_router(request: web.Request) -> None:
    """The router's WebSocket port accepts connections (where browsers join)."""
    settings = request.app[SETTINGS]
    _reader, writer = await asyncio.open_connection(settings.router_host, settings.router_port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _timed(check: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    """One check's verdict: ``ok``, how long it took, and what went wrong if it did."""
    started = time.perf_counter()
    error = None
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            await check()
    except TimeoutError:
        error = f"no answer within {HEALTH_TIMEOUT:g} s"
    except (SQLAlchemyError, RedisError, OSError) as exc:
        error = type(exc).__name__  # the class only: messages may name hosts and users
    verdict: dict[str, Any] = {"ok": error is None}
    verdict["ms"] = round((time.perf_counter() - started) * 1000, 1)
    if error is not None:
        verdict["error"] = error
    return verdict


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 when the DB, Redis and the router all answer (each within 2 s), else 503
    naming those that do not; each check's verdict and time either way."""
    names = ("db", "redis", "router")
    verdicts = await asyncio.gather(
        _timed(lambda: _check_db(request)),
        _timed(lambda: _check_redis(request)),
        _timed(lambda: _check_router(request)),
    )
    checks = dict(zip(names, verdicts, strict=True))
    failing = [name for name in names if not checks[name]["ok"]]
    body: dict[str, Any] = {"status": "unavailable" if failing else "ok", "checks": checks}
    if failing:
        body["failing"] = failing
    return web.json_response(body, status=503 if failing else 200)

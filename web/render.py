"""Server-side HTML: one Jinja2 environment, autoescaping everything."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from herald.broadcasts import unseen_broadcasts
from herald.links import local_path
from herald.models import STAFF_ROLES, Enrolment, User
from web.keys import DB, SESSION, USER
from web.messages import unread_count, unseen_flashes
from web.queries import submission_progress
from workers.pipeline import SUBMISSION_STEPS

__all__ = ["environment", "local_path", "render", "render_error"]

TEMPLATES = Path(__file__).parent / "templates"
FLASH_LIMIT = 5


def _datetime(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%d %b %Y, %H:%M UTC")


def _filesize(value: int | None) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in ("bytes", "KB", "MB"):
        if size < 1024 or unit == "MB":
            return f"{int(size)} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


@cache
def environment() -> Environment:
    """The template environment (built once; autoescape on for every template)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["datetime"] = _datetime
    env.filters["filesize"] = _filesize
    # Autoescaping keeps text out of markup, not a javascript: URL out of an href.
    env.filters["local_path"] = local_path
    # For the submission tables' live progress column (macros see globals only).
    env.globals["submission_progress"] = submission_progress
    env.globals["step_count"] = len(SUBMISSION_STEPS)
    return env


def _base_context(request: web.Request) -> dict[str, Any]:
    session = request.get(SESSION)
    return {
        "user": request.get(USER),
        "csrf_token": session.csrf_token if session is not None else "",
        "flashes": [],
        "broadcasts": [],
        "course_ids": [],
        "runs_reports": False,
        "unread_count": 0,
        "request_path": request.path,
    }


async def _user_context(db: AsyncSession, user: User) -> dict[str, Any]:
    # Flashes and broadcasts not yet acknowledged are shown again on every page view;
    # the page follows course.{id} for each course the user is enrolled in.
    enrolments = (
        await db.execute(
            select(Enrolment.course_id, Enrolment.role)
            .where(Enrolment.user_id == user.id)
            .order_by(Enrolment.course_id)
        )
    ).all()
    return {
        "flashes": await unseen_flashes(db, user.id, limit=FLASH_LIMIT),
        "broadcasts": await unseen_broadcasts(db, user.id, limit=FLASH_LIMIT),
        "course_ids": [row.course_id for row in enrolments],
        # Reports are for markers and admins (workers.catalog says which).
        "runs_reports": user.is_admin or any(row.role in STAFF_ROLES for row in enrolments),
        "unread_count": await unread_count(db, user.id),
    }


async def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    """Render ``template`` with the signed-in user, CSRF token and flash messages."""
    values = _base_context(request)
    user = values["user"]
    if user is not None:
        async with request.app[DB]() as db:
            values.update(await _user_context(db, user))
    values.update(context)
    html = environment().get_template(template).render(values)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def render_error(request: web.Request, status: int, message: str) -> web.Response:
    """The HTML error page (no DB access: it must work when the DB does not)."""
    values = _base_context(request)
    values.update(status=status, message=message)
    html = environment().get_template("error.html").render(values)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

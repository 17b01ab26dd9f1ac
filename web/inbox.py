"""The /messages page: the user's inbox of flashes, inbox messages and broadcasts, with
read state, and forms to mark them read that work without any script."""

from __future__ import annotations

import re
from typing import Final

from aiohttp import web
from sqlalchemy import select

from herald.models import Course, Enrolment
from web.auth import require_user
from web.errors import BadRequest
from web.keys import DB
from web.messages import Kind, acknowledge, acknowledge_all, inbox
from web.queries import parse_id
from web.render import render

__all__ = ["routes"]

routes = web.RouteTableDef()

# An item's key as the page's forms name it (herald.broadcasts, web.messages).
_KEY_RE: Final = re.compile(r"(message|broadcast):([0-9]{1,10})", re.ASCII)


def _back() -> web.Response:
    return web.Response(status=303, headers={"Location": "/messages"})


@routes.get("/messages")
async def messages_page(request: web.Request) -> web.StreamResponse:
    """The inbox, newest first, read and unread."""
    user, _ = require_user(request)
    async with request.app[DB]() as db:
        items = await inbox(db, user.id)
        courses = await db.execute(
            select(Course.id, Course.code)
            .join(Enrolment, Enrolment.course_id == Course.id)
            .where(Enrolment.user_id == user.id)
        )
    # Names a course broadcast's audience ("course:3") by its code.
    codes = {f"course:{course_id}": code for course_id, code in courses.all()}
    return await render(request, "messages.html", items=items, course_codes=codes)


@routes.post("/messages/read")
async def mark_read(request: web.Request) -> web.StreamResponse:
    """ "Mark as read" for one item, then back to the inbox."""
    user, _ = require_user(request)
    form = await request.post()
    match = _KEY_RE.fullmatch(str(form.get("item", "")))
    if match is None:
        raise BadRequest("Say which message to mark as read.")
    kind: Kind = "broadcast" if match.group(1) == "broadcast" else "message"
    await acknowledge(request, user, kind, parse_id(match.group(2)))
    return _back()


@routes.post("/messages/read-all")
async def mark_all_read(request: web.Request) -> web.StreamResponse:
    """ "Mark all as read", then back to the inbox."""
    user, _ = require_user(request)
    await acknowledge_all(request, user)
    return _back()

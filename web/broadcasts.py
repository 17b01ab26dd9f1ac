"""Admins broadcast notices (``POST /api/broadcasts`` and the /admin/broadcast page);
readers acknowledge them (``POST /api/broadcasts/{id}/ack``).

Storing and delivering is herald.broadcasts; acknowledging and telling the user's
other tabs is web.messages, shared with the messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from herald.broadcasts import (
    AUDIENCE_ALL,
    DEFAULT_TTL,
    LEVELS,
    BroadcastError,
    Notice,
    UnknownCourse,
    parse_audience,
    send_broadcast,
)
from herald.models import Broadcast, BroadcastAck, Course, Enrolment, User, utcnow
from herald.names import MAX_ROW_ID
from web.auth import require_user
from web.errors import BadJson, Forbidden, NotFound
from web.json_body import read_json_object
from web.keys import DB, PUBLISHER
from web.messages import acknowledge
from web.queries import parse_id
from web.render import render

__all__ = ["routes"]

routes = web.RouteTableDef()

FIELDS: Final = frozenset({"text", "audience", "level", "link", "expires_at"})
RECENT_LIMIT: Final = 20
# The page's expiry choices, in hours; the API takes any expires_at up to MAX_TTL.
EXPIRY_CHOICES: Final = (
    (1, "1 hour"),
    (24, "1 day"),
    (72, "3 days"),
    (168, "7 days"),
    (720, "30 days"),
)
EXPIRY_HOURS: Final = {str(hours): hours for hours, _label in EXPIRY_CHOICES}
DEFAULT_EXPIRY_HOURS: Final = int(DEFAULT_TTL.total_seconds() // 3600)
NEW_FORM: Final = {
    "text": "",
    "audience": AUDIENCE_ALL,
    "level": "info",
    "link": "",
    "expires_in": str(DEFAULT_EXPIRY_HOURS),
}


def _expires_at(raw: object) -> datetime | None:
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        moment = None
    if moment is None:
        raise BroadcastError("expires_at must be null or an ISO 8601 time with its zone.")
    return moment


def _notice(body: dict[str, Any]) -> Notice:
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise BroadcastError(f"Unknown field(s): {', '.join(unknown)}.")
    text, link = body.get("text"), body.get("link")
    return Notice(
        text=text.strip() if isinstance(text, str) else text,  # type: ignore[arg-type]
        level=body.get("level", "info"),
        link=None if link in (None, "") else link,
        course_id=parse_audience(body.get("audience")),
        expires_at=_expires_at(body.get("expires_at")),
    )


def _require_admin(user: User) -> None:
    if not user.is_admin:
        raise Forbidden("Only admins may broadcast.")


@routes.post("/api/broadcasts")
async def create_broadcast(request: web.Request) -> web.Response:
    """Broadcast to everyone or to a course (admins): 201 with the broadcast."""
    user, _ = require_user(request)
    body = await read_json_object(request)
    _require_admin(user)
    try:
        notice = _notice(body)
        sent = await send_broadcast(
            request.app[DB], request.app[PUBLISHER], notice, sender_id=user.id
        )
    except BroadcastError as exc:
        raise BadJson(str(exc)) from None
    except UnknownCourse as exc:
        raise NotFound(str(exc)) from None
    return web.json_response(sent, status=201)


@routes.post("/api/broadcasts/{bid}/ack")
async def ack_broadcast(request: web.Request) -> web.Response:
    """Mark a broadcast sent to the user seen (again is fine); 404 if not sent to them."""
    user, _ = require_user(request)
    await acknowledge(request, user, "broadcast", parse_id(request.match_info["bid"]))
    return web.Response(status=204)


# --- the admin page -------------------------------------------------------------
def _admin_only(request: web.Request) -> User:
    user, _ = require_user(request)
    if not user.is_admin:
        # As for other things a user may not see: not disclosed.
        raise NotFound()
    return user


@dataclass(frozen=True)
class Recent:
    """A recent broadcast on the admin page, with how many of its audience have seen it."""

    broadcast: Broadcast
    seen: int
    reach: int  # active users in its audience now


async def _recent(db: AsyncSession) -> list[Recent]:
    broadcasts = (
        await db.scalars(
            select(Broadcast)
            .options(selectinload(Broadcast.course), selectinload(Broadcast.sender))
            .order_by(Broadcast.created_at.desc(), Broadcast.id.desc())
            .limit(RECENT_LIMIT)
        )
    ).all()
    seen = await db.execute(
        select(BroadcastAck.broadcast_id, func.count())
        .where(BroadcastAck.broadcast_id.in_([b.id for b in broadcasts]))
        .group_by(BroadcastAck.broadcast_id)
    )
    seen_by: dict[int, int] = {broadcast_id: int(count) for broadcast_id, count in seen.all()}
    everyone = await db.scalar(select(func.count()).select_from(User).where(User.is_active))
    members = await db.execute(
        select(Enrolment.course_id, func.count())
        .join(User, User.id == Enrolment.user_id)
        .where(User.is_active)
        .group_by(Enrolment.course_id)
    )
    reach: dict[int | None, int] = {None: int(everyone or 0)}
    reach.update((course_id, int(count)) for course_id, count in members.all())
    return [Recent(b, seen_by.get(b.id, 0), reach.get(b.course_id, 0)) for b in broadcasts]


async def _page(
    request: web.Request,
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> web.Response:
    raw_sent = request.query.get("sent", "")
    async with request.app[DB]() as db:
        courses = (await db.scalars(select(Course).order_by(Course.code))).all()
        recent = await _recent(db)
        sent = None
        if raw_sent.isascii() and raw_sent.isdigit() and 0 < int(raw_sent) <= MAX_ROW_ID:
            sent = await db.get(Broadcast, int(raw_sent), options=[selectinload(Broadcast.course)])
    return await render(
        request,
        "admin_broadcast.html",
        status=status,
        courses=courses,
        levels=LEVELS,
        expiry_choices=EXPIRY_CHOICES,
        recent=recent,
        now=utcnow(),
        sent=sent,
        error=error,
        form=form or NEW_FORM,
    )


@routes.get("/admin/broadcast")
async def broadcast_page(request: web.Request) -> web.StreamResponse:
    """The broadcast form and the recent broadcasts, with how many have seen each."""
    _admin_only(request)
    return await _page(request)


@routes.post("/admin/broadcast")
async def broadcast_submit(request: web.Request) -> web.StreamResponse:
    """Send from the form, then back to the page with a confirmation; or show why not."""
    user = _admin_only(request)
    posted = await request.post()
    form = {
        name: str(posted.get(name, ""))
        for name in ("text", "audience", "level", "link", "expires_in")
    }
    try:
        hours = EXPIRY_HOURS.get(form["expires_in"] or str(DEFAULT_EXPIRY_HOURS))
        if hours is None:
            raise BroadcastError("Choose when the broadcast expires.")
        notice = Notice(
            text=form["text"].strip(),
            level=form["level"],
            link=form["link"].strip() or None,
            course_id=parse_audience(form["audience"]),
            expires_at=utcnow() + timedelta(hours=hours),
        )
        sent = await send_broadcast(
            request.app[DB], request.app[PUBLISHER], notice, sender_id=user.id
        )
    except BroadcastError as exc:
        return await _page(request, status=400, error=str(exc), form=form)
    except UnknownCourse as exc:
        return await _page(request, status=404, error=str(exc), form=form)
    return web.Response(status=303, headers={"Location": f"/admin/broadcast?sent={sent['id']}"})

"""A user's own messages over the API: flashes and inbox, and acknowledging them.

Acknowledging is announced on ``user.{id}``, so every other tab of the user takes
the message down too.
"""

from __future__ import annotations

import re
from typing import Any, Final

from aiohttp import web
from sqlalchemy import or_, select, update

from herald.events import iso
from herald.models import Message, utcnow
from herald.names import EventType, user_topic
from web.auth import require_user
from web.errors import NotFound
from web.keys import DB, PUBLISHER
from web.queries import parse_id

__all__ = ["routes"]

routes = web.RouteTableDef()

MESSAGE_LIMIT = 100
# The page's own random id for itself, sent with an acknowledgement and echoed in the
# event, so the tab that acknowledged keeps showing the flash while the others drop it.
TAB_HEADER: Final = "X-Herald-Tab"
_TAB_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,32}", re.ASCII)


def message_json(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "kind": str(message.kind),
        "level": message.level,
        "text": message.text,
        "link": message.link,
        "options": message.options or {},
        "created_at": iso(message.created_at),
        "expires_at": iso(message.expires_at),
        "acked_at": iso(message.acked_at),
    }


@routes.get("/api/messages")
async def list_messages(request: web.Request) -> web.Response:
    """The user's unexpired messages, newest first; ``?unread=1`` for unacknowledged only."""
    user, _ = require_user(request)
    query = (
        select(Message)
        .where(
            Message.user_id == user.id,
            or_(Message.expires_at.is_(None), Message.expires_at > utcnow()),
        )
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(MESSAGE_LIMIT)
    )
    if request.query.get("unread") in ("1", "true"):
        query = query.where(Message.acked_at.is_(None))
    async with request.app[DB]() as db:
        messages = (await db.scalars(query)).all()
    return web.json_response([message_json(m) for m in messages])


@routes.post("/api/messages/{mid}/ack")
async def ack_message(request: web.Request) -> web.Response:
    """Mark one of the user's messages seen (again is fine); 404 for anyone else's."""
    user, _ = require_user(request)
    message_id = parse_id(request.match_info["mid"])
    async with request.app[DB].begin() as db:
        found = await db.scalar(
            select(Message.id).where(Message.id == message_id, Message.user_id == user.id)
        )
        if found is None:
            raise NotFound("No such message.")
        acked = await db.execute(
            update(Message)
            .where(Message.id == message_id, Message.acked_at.is_(None))
            .values(acked_at=utcnow())
        )
    if acked.rowcount:  # type: ignore[attr-defined]
        event: dict[str, Any] = {"id": message_id}
        tab = request.headers.get(TAB_HEADER, "")
        if _TAB_RE.fullmatch(tab):
            event["tab"] = tab
        await request.app[PUBLISHER].publish(user_topic(user.id), EventType.MESSAGE_ACKED, event)
    return web.Response(status=204)

"""A user's own messages: flashes, inbox messages and the broadcasts sent to them, over
the API, and acknowledging them (the /messages page is web.inbox).

Messages are rows per user (``messages``); broadcasts are one row each with one
acknowledgement row per reader (herald.broadcasts). Both come out as one list whose
items say their ``kind``, a ``key`` unique across both (``message:12``,
``broadcast:7``) and their own ``ack_url``. Acknowledging is announced on
``user.{id}`` (``message.acked`` / ``broadcast.acked``), so every other tab of the
user takes the item down too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from aiohttp import web
from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from herald.broadcasts import (
    ack_all_broadcasts,
    ack_broadcast,
    broadcast_json,
    broadcasts_for,
    count_unseen,
)
from herald.events import iso
from herald.logs import get_logger
from herald.models import Message, MessageKind, User, utcnow
from herald.names import EventType, user_topic
from web.auth import require_user
from web.errors import NotFound
from web.keys import DB, PUBLISHER
from web.queries import parse_id

__all__ = [
    "MESSAGE_LIMIT",
    "InboxItem",
    "Kind",
    "acknowledge",
    "acknowledge_all",
    "inbox",
    "message_json",
    "routes",
    "unread_count",
    "unseen_flashes",
]

log = get_logger(__name__)

routes = web.RouteTableDef()

MESSAGE_LIMIT = 100
# The page's own random id for itself, sent with an acknowledgement and echoed in the
# event, so the tab that acknowledged keeps showing the flash while the others drop it.
TAB_HEADER: Final = "X-Herald-Tab"
_TAB_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,32}", re.ASCII)

Kind = Literal["message", "broadcast"]
_ACKED: Final[dict[str, EventType]] = {
    "message": EventType.MESSAGE_ACKED,
    "broadcast": EventType.BROADCAST_ACKED,
}


def message_json(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "kind": str(message.kind),
        "key": f"message:{message.id}",
        "level": message.level,
        "text": message.text,
        "link": message.link,
        "options": message.options or {},
        "created_at": iso(message.created_at),
        "expires_at": iso(message.expires_at),
        "acked_at": iso(message.acked_at),
        "ack_url": f"/api/messages/{message.id}/ack",
    }


@dataclass(frozen=True)
class InboxItem:
    """One entry of a user's inbox: a message or a broadcast, as JSON and for pages."""

    data: dict[str, Any]  # the API's JSON for it
    created_at: datetime
    acked_at: datetime | None

    @property
    def key(self) -> str:
        return str(self.data["key"])


def _unread_message(user_id: int) -> tuple[ColumnElement[bool], ...]:
    return (
        Message.user_id == user_id,
        Message.acked_at.is_(None),
        or_(Message.expires_at.is_(None), Message.expires_at > utcnow()),
    )


async def inbox(
    db: AsyncSession, user_id: int, *, unread: bool = False, limit: int = MESSAGE_LIMIT
) -> list[InboxItem]:
    """The user's unexpired messages and broadcasts, newest first, at most ``limit``."""
    query = (
        select(Message)
        .where(
            Message.user_id == user_id,
            or_(Message.expires_at.is_(None), Message.expires_at > utcnow()),
        )
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(limit)
    )
    if unread:
        query = query.where(Message.acked_at.is_(None))
    items = [InboxItem(message_json(m), m.created_at, m.acked_at) for m in await db.scalars(query)]
    for broadcast, acked_at in await broadcasts_for(db, user_id, unread=unread, limit=limit):
        data = broadcast_json(broadcast) | {"acked_at": iso(acked_at)}
        items.append(InboxItem(data, broadcast.created_at, acked_at))
    items.sort(key=lambda item: item.created_at, reverse=True)
    return items[:limit]


async def unseen_flashes(db: AsyncSession, user_id: int, *, limit: int) -> list[Message]:
    """The user's unacknowledged, unexpired flashes, newest first: every page shows them."""
    rows = await db.scalars(
        select(Message)
        .where(*_unread_message(user_id), Message.kind == MessageKind.FLASH)
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(limit)
    )
    return list(rows.all())


async def unread_count(db: AsyncSession, user_id: int) -> int:
    """How many unexpired messages and broadcasts the user has not acknowledged."""
    messages = await db.scalar(select(func.count(Message.id)).where(*_unread_message(user_id)))
    return int(messages or 0) + await count_unseen(db, user_id)


async def _ack_message(db: AsyncSession, user_id: int, message_id: int) -> bool | None:
    found = await db.scalar(
        select(Message.id).where(Message.id == message_id, Message.user_id == user_id)
    )
    if found is None:
        return None
    acked = await db.execute(
        update(Message)
        .where(Message.id == message_id, Message.acked_at.is_(None))
        .values(acked_at=utcnow())
    )
    return bool(acked.rowcount)  # type: ignore[attr-defined]


async def _announce(request: web.Request, user: User, kind: Kind, ids: list[int]) -> None:
    # Tell the user's other tabs; the acknowledging tab (named by TAB_HEADER) keeps its copy.
    tab = request.headers.get(TAB_HEADER, "")
    for item_id in ids:
        event: dict[str, Any] = {"id": item_id}
        if _TAB_RE.fullmatch(tab):
            event["tab"] = tab
        await request.app[PUBLISHER].publish(user_topic(user.id), _ACKED[kind], event)


async def acknowledge(request: web.Request, user: User, kind: Kind, item_id: int) -> None:
    """Mark one of the user's messages or broadcasts seen (again is fine, announced once);
    :class:`NotFound` if it is not theirs."""
    async with request.app[DB].begin() as db:
        if kind == "broadcast":
            first = await ack_broadcast(db, user.id, item_id)
        else:
            first = await _ack_message(db, user.id, item_id)
    if first is None:
        raise NotFound(f"No such {kind}.")
    if first:
        await _announce(request, user, kind, [item_id])


async def acknowledge_all(request: web.Request, user: User) -> None:
    """Mark every unread message and broadcast of the user seen, and announce each."""
    async with request.app[DB].begin() as db:
        messages = await db.scalars(
            update(Message)
            .where(*_unread_message(user.id))
            .values(acked_at=utcnow())
            .returning(Message.id)
        )
        message_ids = list(messages.all())
        broadcast_ids = await ack_all_broadcasts(db, user.id)
    await _announce(request, user, "message", message_ids)
    await _announce(request, user, "broadcast", broadcast_ids)
    log.info(
        "messages.read_all",
        user_id=user.id,
        messages=len(message_ids),
        broadcasts=len(broadcast_ids),
    )


@routes.get("/api/messages")
async def list_messages(request: web.Request) -> web.Response:
    """The user's unexpired messages and broadcasts, newest first; ``?unread=1`` for
    the unacknowledged only."""
    user, _ = require_user(request)
    unread = request.query.get("unread") in ("1", "true")
    async with request.app[DB]() as db:
        items = await inbox(db, user.id, unread=unread)
    return web.json_response([item.data for item in items])


@routes.post("/api/messages/{mid}/ack")
async def ack_message(request: web.Request) -> web.Response:
    """Mark one of the user's messages seen (again is fine); 404 for anyone else's."""
    user, _ = require_user(request)
    await acknowledge(request, user, "message", parse_id(request.match_info["mid"]))
    return web.Response(status=204)

"""Broadcasts: an admin's notice to everyone or to one course, stored once, then live.

A broadcast is ONE row, however many people it reaches, and who has seen it is
one :class:`~herald.models.BroadcastAck` row per reader, written only when that
reader's page acknowledges it. Sending to 10,000 students is one insert and one
publish; a page view reads the few live broadcasts of the user's audience and
looks each one's acknowledgement up by its primary key.

Delivered live on ``broadcast`` (everyone) or ``course.{id}`` (members of the
course), published after the commit; a user who was not connected sees it on the
next page view, until it is acknowledged or expires. The audience is who is
enrolled when the page asks: site admins get a course's broadcasts only if they
are enrolled in it, as its members do (they see every broadcast on /admin/broadcast).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.events import EventPublisher, iso
from herald.links import local_path
from herald.logs import get_logger
from herald.models import Broadcast, BroadcastAck, BroadcastLevel, Course, Enrolment, utcnow
from herald.names import BROADCAST, MAX_ROW_ID, EventType, course_topic

__all__ = [
    "AUDIENCE_ALL",
    "DEFAULT_TTL",
    "LEVELS",
    "MAX_TEXT",
    "MAX_TTL",
    "BroadcastError",
    "Notice",
    "UnknownCourse",
    "ack_all_broadcasts",
    "ack_broadcast",
    "audience",
    "broadcast_json",
    "broadcasts_for",
    "count_unseen",
    "in_audience",
    "parse_audience",
    "send_broadcast",
    "unseen_broadcasts",
]

log = get_logger(__name__)

LEVELS: Final = tuple(level.value for level in BroadcastLevel)
MAX_TEXT: Final = 2000
MAX_LINK: Final = 1024  # the link column's size
DEFAULT_TTL: Final = timedelta(days=7)
# Bounded, so the broadcasts a page view reads (the unexpired ones) stay few.
MAX_TTL: Final = timedelta(days=30)
AUDIENCE_ALL: Final = "all"
_AUDIENCE_COURSE: Final = re.compile(r"course:([1-9][0-9]{0,9})", re.ASCII)


class BroadcastError(ValueError):
    """A broadcast that cannot be sent as asked; the message is for the person sending."""


class UnknownCourse(LookupError):
    """The audience names a course that does not exist."""


def parse_audience(raw: object) -> int | None:
    """``"all"`` → ``None`` (everyone); ``"course:{id}"`` → the course id."""
    if raw == AUDIENCE_ALL:
        return None
    match = _AUDIENCE_COURSE.fullmatch(raw) if isinstance(raw, str) else None
    if match is None or int(match.group(1)) > MAX_ROW_ID:
        raise BroadcastError('audience must be "all" or "course:{id}".')
    return int(match.group(1))


def audience(course_id: int | None) -> str:
    """The wire form of an audience: ``"all"`` or ``"course:{id}"``."""
    return AUDIENCE_ALL if course_id is None else f"course:{course_id}"


@dataclass(frozen=True)
class Notice:
    """What an admin asks to broadcast, checked before anything is stored."""

    text: str
    level: str = BroadcastLevel.INFO
    link: str | None = None  # a local path the broadcast opens
    course_id: int | None = None  # None: everyone
    expires_at: datetime | None = None  # None: DEFAULT_TTL after sending

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip() or len(self.text) > MAX_TEXT:
            raise BroadcastError(f"text must be 1 to {MAX_TEXT} characters.")
        if self.level not in LEVELS:
            raise BroadcastError(f"level must be one of {', '.join(LEVELS)}.")
        if self.link is not None and (
            not isinstance(self.link, str) or len(self.link) > MAX_LINK or not local_path(self.link)
        ):
            raise BroadcastError("link must be a path on this site, like /assignments/1.")
        if self.course_id is not None and (
            type(self.course_id) is not int or not 0 < self.course_id <= MAX_ROW_ID
        ):
            raise BroadcastError("course_id must be a course's id.")
        if self.expires_at is not None:
            if not isinstance(self.expires_at, datetime) or self.expires_at.tzinfo is None:
                raise BroadcastError("expires_at must be a time with its zone.")
            now = utcnow()
            if self.expires_at <= now:
                raise BroadcastError("expires_at must be in the future.")
            if self.expires_at > now + MAX_TTL:
                raise BroadcastError(f"expires_at must be within {MAX_TTL.days} days.")


def broadcast_json(broadcast: Broadcast) -> dict[str, Any]:
    """A broadcast as the live event and the messages API carry it."""
    return {
        "id": broadcast.id,
        "kind": "broadcast",
        "key": f"broadcast:{broadcast.id}",
        "level": str(broadcast.level),
        "text": broadcast.text,
        "link": broadcast.link,
        # Shown as flashes are: an urgent one over the page until dismissed.
        "options": {"modal": broadcast.level == BroadcastLevel.URGENT},
        "audience": audience(broadcast.course_id),
        "created_at": iso(broadcast.created_at),
        "expires_at": iso(broadcast.expires_at),
        "ack_url": f"/api/broadcasts/{broadcast.id}/ack",
    }


async def send_broadcast(
    sessions: async_sessionmaker[AsyncSession],
    publisher: EventPublisher,
    notice: Notice,
    *,
    sender_id: int | None,
) -> dict[str, Any]:
    """Store ``notice`` as one broadcast, then publish it to its audience; returns its JSON.

    :class:`UnknownCourse` if the audience names no course.
    """
    now = utcnow()
    async with sessions.begin() as db:
        if notice.course_id is not None and await db.get(Course, notice.course_id) is None:
            raise UnknownCourse(f"There is no course {notice.course_id}.")
        broadcast = Broadcast(
            course_id=notice.course_id,
            level=BroadcastLevel(notice.level),
            text=notice.text,
            link=notice.link,
            created_by=sender_id,
            created_at=now,
            expires_at=notice.expires_at or now + DEFAULT_TTL,
        )
        db.add(broadcast)
        await db.flush()
        payload = broadcast_json(broadcast)
    # Published after the commit: a page that resyncs on seeing it finds the row.
    topic = BROADCAST if notice.course_id is None else course_topic(notice.course_id)
    await publisher.publish(topic, EventType.BROADCAST, payload)
    log.info(
        "broadcast.sent",
        broadcast_id=payload["id"],
        audience=payload["audience"],
        level=payload["level"],
        sender_id=sender_id,
    )
    return payload


def _audience_of(user_id: int) -> ColumnElement[bool]:
    enrolled = select(Enrolment.course_id).where(Enrolment.user_id == user_id)
    return or_(Broadcast.course_id.is_(None), Broadcast.course_id.in_(enrolled))


def _live(user_id: int, unread: bool) -> ColumnElement[bool]:
    clauses = [Broadcast.expires_at > utcnow(), _audience_of(user_id)]
    if unread:
        clauses.append(BroadcastAck.user_id.is_(None))
    return and_(*clauses)


def _with_ack(user_id: int) -> ColumnElement[bool]:
    return and_(BroadcastAck.broadcast_id == Broadcast.id, BroadcastAck.user_id == user_id)


async def broadcasts_for(
    db: AsyncSession, user_id: int, *, unread: bool = False, limit: int = 100
) -> list[tuple[Broadcast, datetime | None]]:
    """The unexpired broadcasts to the user's audience, newest first, each with when the
    user acknowledged it (``None``: not yet); ``unread`` for the unacknowledged only."""
    rows = await db.execute(
        select(Broadcast, BroadcastAck.acked_at)
        .outerjoin(BroadcastAck, _with_ack(user_id))
        .where(_live(user_id, unread))
        .order_by(Broadcast.created_at.desc(), Broadcast.id.desc())
        .limit(limit)
    )
    return [(broadcast, acked_at) for broadcast, acked_at in rows.all()]


async def unseen_broadcasts(db: AsyncSession, user_id: int, *, limit: int = 100) -> list[Broadcast]:
    """Unexpired broadcasts to everyone or to a course the user is enrolled in, that the
    user has not acknowledged; newest first."""
    return [b for b, _acked in await broadcasts_for(db, user_id, unread=True, limit=limit)]


async def count_unseen(db: AsyncSession, user_id: int) -> int:
    """How many broadcasts :func:`unseen_broadcasts` would list without a limit."""
    count = await db.scalar(
        select(func.count(Broadcast.id))
        .outerjoin(BroadcastAck, _with_ack(user_id))
        .where(_live(user_id, unread=True))
    )
    return int(count or 0)


async def in_audience(db: AsyncSession, user_id: int, broadcast_id: int) -> bool:
    """Whether the broadcast exists and was sent to the user (expired or not)."""
    found = await db.scalar(
        select(Broadcast.id).where(Broadcast.id == broadcast_id, _audience_of(user_id))
    )
    return found is not None


def _insert(db: AsyncSession) -> postgresql.Insert | sqlite.Insert:
    # INSERT … ON CONFLICT DO NOTHING: two tabs acknowledging at once both succeed, once.
    dialect = db.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(BroadcastAck)


async def ack_broadcast(db: AsyncSession, user_id: int, broadcast_id: int) -> bool | None:
    """Record that the user saw the broadcast: ``True`` if this is the first time,
    ``False`` if already recorded, ``None`` if it was not sent to them (or does not exist)."""
    if not await in_audience(db, user_id, broadcast_id):
        return None
    result = await db.execute(
        _insert(db)
        .values(broadcast_id=broadcast_id, user_id=user_id, acked_at=utcnow())
        .on_conflict_do_nothing()
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def ack_all_broadcasts(db: AsyncSession, user_id: int) -> list[int]:
    """Acknowledge every unexpired broadcast the user has not seen; returns their ids."""
    ids = [b.id for b in await unseen_broadcasts(db, user_id, limit=1000)]
    if not ids:
        return []
    now = utcnow()
    inserted = await db.scalars(
        _insert(db)
        .values([{"broadcast_id": i, "user_id": user_id, "acked_at": now} for i in ids])
        .on_conflict_do_nothing()
        .returning(BroadcastAck.broadcast_id)
    )
    return list(inserted.all())

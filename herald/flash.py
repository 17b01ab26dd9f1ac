"""Flash messages: stored per user first, then delivered live on ``user.{id}``.

The row is the truth: a browser that was not connected when the event went out
shows the flash on its next page view, and keeps showing it on every page until
the user has seen it (herald.js acknowledges it once it has been on screen for a
few seconds, or the user acted on it) or it expires.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.events import EventPublisher, iso
from herald.links import local_path
from herald.logs import get_logger
from herald.models import Message, MessageKind, utcnow
from herald.names import EventType, user_topic

__all__ = ["LEVELS", "Flash", "add_flashes", "flash_json", "publish_flashes", "send_flash"]

log = get_logger(__name__)

LEVELS = ("info", "success", "warning", "urgent")
DEFAULT_TTL = timedelta(days=7)
MAX_TEXT = 2000


@dataclass(frozen=True)
class Flash:
    text: str
    level: str = "info"
    link: str | None = None  # a local path the flash opens
    button: tuple[str, str] | None = None  # (label, local path): the action it offers
    modal: bool = False  # shown over the page until dismissed
    autohide: int | None = None  # seconds on screen before it hides itself
    ttl: timedelta = DEFAULT_TTL  # unseen for this long: dropped

    def __post_init__(self) -> None:
        if not self.text or len(self.text) > MAX_TEXT:
            raise ValueError(f"a flash needs 1 to {MAX_TEXT} characters of text")
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        for path in (self.link, self.button[1] if self.button else None):
            if path is not None and local_path(path) is None:
                raise ValueError(f"{path!r} is not a local path")
        if self.autohide is not None and not 1 <= self.autohide <= 600:
            raise ValueError("autohide must be 1 to 600 seconds")

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"modal": self.modal, "autohide": self.autohide}
        if self.button:
            options["button"] = {"label": self.button[0], "url": self.button[1]}
        return options


def flash_json(message: Message) -> dict[str, Any]:
    """A stored flash as events and pages carry it."""
    return {
        "id": message.id,
        "text": message.text,
        "level": message.level,
        "link": message.link,
        "options": message.options or {},
        "created_at": iso(message.created_at),
    }


def add_flashes(db: AsyncSession, user_ids: Iterable[int], flash: Flash) -> list[Message]:
    """Add ``flash`` for each user to ``db``'s transaction (publish after the commit with
    :func:`publish_flashes`), so it is stored with the change it announces or not at all."""
    expires = utcnow() + flash.ttl
    messages = [
        Message(
            user_id=user_id,
            kind=MessageKind.FLASH,
            level=flash.level,
            text=flash.text,
            link=flash.link,
            options=flash.options(),
            expires_at=expires,
        )
        for user_id in user_ids
    ]
    db.add_all(messages)
    return messages


async def publish_flashes(
    publisher: EventPublisher, flashes: Sequence[tuple[int, dict[str, Any]]]
) -> None:
    """Deliver stored flashes, ``(user id, flash_json)`` each, live."""
    for user_id, payload in flashes:
        await publisher.publish(user_topic(user_id), EventType.FLASH, payload)


async def send_flash(
    sessions: async_sessionmaker[AsyncSession],
    publisher: EventPublisher,
    user_ids: Iterable[int],
    flash: Flash,
) -> list[int]:
    """Store ``flash`` for each user, then publish it to each; returns the message ids."""
    async with sessions.begin() as db:
        messages = add_flashes(db, user_ids, flash)
        await db.flush()
        payloads = [(m.user_id, flash_json(m)) for m in messages]
    # Published after the commit: a browser that fetches on seeing it finds the row.
    await publish_flashes(publisher, payloads)
    log.info("flash sent", users=len(payloads), level=flash.level)
    return [payload["id"] for _user, payload in payloads]

"""Announcements that someone's access shrank: a web session ended, an account was
disabled, or a user's enrolments or roles changed.

The web and the CLI publish them on one Redis channel; every router-auth process
listens (router.revocation), drops the decisions it cached for that user and kills
the WAMP sessions concerned, so a browser cannot keep receiving events it may no
longer see. Pub/sub is fire-and-forget: router auth also sweeps live sessions
periodically and after it reconnects, so a missed announcement is caught late,
never lost for good.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from redis.asyncio import Redis

from herald import names
from herald.logs import get_logger

__all__ = ["AccessEvent", "AccessEventKind", "announce", "parse_access_event"]

log = get_logger(__name__)


class AccessEventKind(StrEnum):
    # One web session ended (sign-out, sign-in rotation): kill the WAMP sessions it opened.
    SIGNED_OUT = "signed_out"
    # The account was disabled: kill every WAMP session of the user.
    DISABLED = "disabled"
    # Enrolments or roles changed: cached decisions are stale, and subscriptions made
    # under the old rights must be re-authorised, so the user's sessions rejoin.
    ACCESS_CHANGED = "access_changed"


@dataclass(frozen=True)
class AccessEvent:
    kind: AccessEventKind
    user_id: int
    # The web session's digest (never its token); set for SIGNED_OUT only.
    web_session: str | None = None

    def to_json(self) -> str:
        body: dict[str, object] = {"kind": self.kind.value, "user_id": self.user_id}
        if self.web_session is not None:
            body["web_session"] = self.web_session
        return json.dumps(body)


def parse_access_event(raw: bytes | str) -> AccessEvent | None:
    """The event in a channel message, or ``None`` (logged) if it is not one."""
    try:
        body = json.loads(raw)
        kind = AccessEventKind(body["kind"])
        user_id = body["user_id"]
        web_session = body.get("web_session")
        if not isinstance(user_id, int) or isinstance(user_id, bool):
            raise ValueError("user_id is not an integer")
        if kind is AccessEventKind.SIGNED_OUT and not isinstance(web_session, str):
            raise ValueError("signed_out without a web session")
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("malformed access event ignored", error=str(exc))
        return None
    return AccessEvent(kind, user_id, web_session if kind is AccessEventKind.SIGNED_OUT else None)


async def announce(redis: Redis, event: AccessEvent) -> None:
    """Tell every router-auth process; returns once Redis took the message."""
    listeners = await redis.publish(names.ACCESS_EVENTS_CHANNEL, event.to_json())
    log.info(
        "access event announced",
        kind=event.kind.value,
        user_id=event.user_id,
        listeners=listeners,
    )

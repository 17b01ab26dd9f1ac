"""Web sessions and WAMP tickets, both kept in Redis.

A browser holds a random session token in an HttpOnly cookie; Redis keeps only
its SHA-256, so a Redis dump cannot be replayed as a login. A WAMP ticket is a
second random token, valid for ``ticket_ttl_seconds``, redeemable once (GETDEL),
and bound to the session that asked for it: the router's authenticator refuses
it if that session has ended.

The WAMP sessions a web session opens are recorded against it, so ending the web
session (sign-out) can announce them for killing (herald.access_events).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass

from redis.asyncio import Redis

from herald import names
from herald.access_events import AccessEvent, AccessEventKind, announce

__all__ = ["SessionStore", "TicketGrant", "WebSession"]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class WebSession:
    digest: str
    user_id: int
    csrf_token: str


@dataclass(frozen=True)
class TicketGrant:
    user_id: int
    session_digest: str


class SessionStore:
    """Create, look up and end web sessions; issue and redeem WAMP tickets."""

    def __init__(self, redis: Redis, *, session_ttl: int, ticket_ttl: int) -> None:
        self._redis = redis
        self._session_ttl = session_ttl
        self._ticket_ttl = ticket_ttl

    async def create(self, user_id: int) -> tuple[str, WebSession]:
        """A new session for ``user_id``; returns the cookie token and the session."""
        token = secrets.token_urlsafe(32)
        session = WebSession(_digest(token), user_id, secrets.token_urlsafe(32))
        body = json.dumps({"user_id": user_id, "csrf": session.csrf_token})
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(names.session_key(session.digest), body, ex=self._session_ttl)
            pipe.sadd(names.user_sessions_key(user_id), session.digest)
            pipe.expire(names.user_sessions_key(user_id), self._session_ttl)
            await pipe.execute()
        return token, session

    async def get(self, token: str) -> WebSession | None:
        """The live session for a cookie token, its expiry pushed back (sliding)."""
        if not token or len(token) > 200:
            return None
        return await self.get_by_digest(_digest(token), touch=True)

    async def get_by_digest(self, digest: str, *, touch: bool = False) -> WebSession | None:
        key = names.session_key(digest)
        raw = await (
            self._redis.getex(key, ex=self._session_ttl) if touch else self._redis.get(key)
        )
        if raw is None:
            return None
        body = json.loads(raw)
        return WebSession(digest, int(body["user_id"]), str(body["csrf"]))

    async def end(self, session: WebSession) -> None:
        """End one web session and have the WAMP sessions it opened killed."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(names.session_key(session.digest))
            pipe.srem(names.user_sessions_key(session.user_id), session.digest)
            await pipe.execute()
        await announce(
            self._redis,
            AccessEvent(AccessEventKind.SIGNED_OUT, session.user_id, session.digest),
        )

    async def end_all(self, user_id: int) -> int:
        """End every web session of ``user_id`` (the caller announces why); returns how many."""
        key = names.user_sessions_key(user_id)
        members = await self._redis.smembers(key)
        digests = [m.decode() if isinstance(m, bytes) else m for m in members]
        async with self._redis.pipeline(transaction=True) as pipe:
            for digest in digests:
                pipe.delete(names.session_key(digest))
            pipe.delete(key)
            await pipe.execute()
        return len(digests)

    async def bind_wamp_session(self, digest: str, wamp_session_id: int) -> bool:
        """Record that a WAMP session joined with a ticket of web session ``digest``.

        Returns whether that web session is still live. Recording and checking run
        as one transaction, so a sign-out either happened before (False: refuse the
        join) or comes after and finds this WAMP session to kill.
        """
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(names.session_wamp_key(digest), wamp_session_id)
            pipe.expire(names.session_wamp_key(digest), self._session_ttl)
            pipe.set(names.wamp_session_key(wamp_session_id), digest, ex=self._session_ttl)
            pipe.exists(names.session_key(digest))
            *_recorded, live = await pipe.execute()
        return bool(live)

    async def wamp_sessions_of(self, digest: str) -> list[int]:
        """The WAMP sessions opened under web session ``digest`` (records expire with it).

        Read, not taken: every router node's router auth kills its own of them.
        """
        return sorted(int(m) for m in await self._redis.smembers(names.session_wamp_key(digest)))

    async def wamp_sessions_live(self, wamp_session_ids: list[int]) -> dict[int, bool]:
        """For each WAMP session: is the web session it joined with still live?

        A live one has its records' expiry pushed back to the session's (web
        sessions slide, so the records must too); one with no record is not live.
        """
        if not wamp_session_ids:
            return {}
        digests = await self._redis.mget([names.wamp_session_key(i) for i in wamp_session_ids])
        known = {
            wamp_id: (digest.decode() if isinstance(digest, bytes) else digest)
            for wamp_id, digest in zip(wamp_session_ids, digests, strict=True)
            if digest is not None
        }
        async with self._redis.pipeline(transaction=False) as pipe:
            for digest in known.values():
                pipe.exists(names.session_key(digest))
            alive = await pipe.execute()
        live = {wamp_id: False for wamp_id in wamp_session_ids}
        async with self._redis.pipeline(transaction=False) as pipe:
            for (wamp_id, digest), exists in zip(known.items(), alive, strict=True):
                if exists:
                    live[wamp_id] = True
                    pipe.expire(names.wamp_session_key(wamp_id), self._session_ttl)
                    pipe.expire(names.session_wamp_key(digest), self._session_ttl)
            await pipe.execute()
        return live

    async def issue_ticket(self, session: WebSession) -> str:
        ticket = secrets.token_urlsafe(32)
        body = json.dumps({"user_id": session.user_id, "session": session.digest})
        await self._redis.set(names.ticket_key(_digest(ticket)), body, ex=self._ticket_ttl)
        return ticket

    async def redeem_ticket(self, ticket: str) -> TicketGrant | None:
        """Consume a ticket: ``None`` if unknown, expired, already used, or its session ended."""
        if not isinstance(ticket, str) or not ticket or len(ticket) > 200:
            return None
        raw = await self._redis.getdel(names.ticket_key(_digest(ticket)))
        if raw is None:
            return None
        body = json.loads(raw)
        grant = TicketGrant(int(body["user_id"]), str(body["session"]))
        if await self._redis.exists(names.session_key(grant.session_digest)) == 0:
            return None
        return grant

"""Take live access away: kill the WAMP sessions of a sign-out, a disabled account
or a user whose rights changed, and drop that user's cached decisions.

Crossbar consults the authorizer only when a session subscribes, so a browser
that subscribed before losing a right would keep receiving events. Killing the
session is the only way to withdraw such a subscription: the page then asks the
web for a fresh ticket, which fails once the web session is gone, or rejoins
and re-subscribes through the authorizer when only its rights changed.

Announcements arrive over Redis pub/sub (herald.access_events), which drops
messages while disconnected. So after every (re)subscription, and every
``SWEEP_INTERVAL`` besides, the cache is cleared or checked and a sweep kills any
browser session whose web session has ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from autobahn.asyncio.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from herald import names
from herald.access_events import AccessEvent, AccessEventKind, parse_access_event
from herald.logs import get_logger
from herald.sessions import SessionStore
from herald.subscription import stay_subscribed
from router.decision_cache import DecisionCache

__all__ = ["SessionRevoker"]

log = get_logger(__name__)

SWEEP_INTERVAL = 15.0
CALL_TIMEOUT = 10.0
# Sessions checked per Redis batch in a sweep. In one batch, 10,000 sessions took
# ~0.9 s of CPU: pipelines of 10,000 EXISTS and 20,000 EXPIRE built and parsed without
# yielding, while every join waiting on authentication stalled. Batches of 500 take
# under 0.1 s each and let joins through in between.
SWEEP_BATCH = 500

_CLOSE_REASONS = {
    AccessEventKind.SIGNED_OUT: (names.CLOSE_SIGNED_OUT, "signed out"),
    AccessEventKind.DISABLED: (names.CLOSE_ACCOUNT_DISABLED, "account disabled"),
    AccessEventKind.ACCESS_CHANGED: (names.CLOSE_ACCESS_CHANGED, "access changed; rejoin"),
}


class _WatchedPubSub(PubSub):
    """Counts its connections: redis-py reconnects and resubscribes silently, and
    whatever was published in between is lost, so the listener must know."""

    connects = 0

    async def on_connect(self, connection: Any) -> None:
        self.connects += 1
        await super().on_connect(connection)


class SessionRevoker:
    """Applies access events to the router this process is joined to."""

    def __init__(
        self,
        store: SessionStore,
        cache: DecisionCache,
        on_count: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._cache = cache
        # Told how many browser sessions the router holds, at every sweep (the metrics).
        self._on_count = on_count
        self._session: ApplicationSession | None = None
        self._rejoined = asyncio.Event()

    def attach(self, session: ApplicationSession | None) -> None:
        """The backend session to kill through (``None`` while Crossbar is away)."""
        self._session = session
        if session is not None:
            # Sign-outs may have happened while this process was not joined.
            self._rejoined.set()

    async def apply(self, event: AccessEvent) -> int:
        """Drop the user's cached decisions and kill the sessions concerned; returns kills."""
        self._cache.forget_user(str(event.user_id))
        session = self._session
        if session is None:
            return 0  # not joined: the sweep on rejoin covers it
        reason, message = _CLOSE_REASONS[event.kind]
        killed = 0
        if event.kind is AccessEventKind.SIGNED_OUT and event.web_session is not None:
            # Other router nodes' sessions of this web session are killed by their own
            # router auth; here those ids are simply not found.
            for wamp_id in await self._store.wamp_sessions_of(event.web_session):
                killed += await _kill(session, wamp_id, reason, message)
        else:
            ids = await session.call(
                "wamp.session.kill_by_authid", str(event.user_id), reason=reason, message=message
            )
            killed = len(ids or [])
        log.info(
            "access event applied", kind=event.kind.value, user_id=event.user_id, killed=killed
        )
        return killed

    async def sweep(self) -> int:
        """Kill every browser session whose web session is gone; returns how many."""
        session = self._session
        if session is None:
            return 0
        ids = list(await session.call("wamp.session.list", [names.ROLE_BROWSER]) or [])
        if self._on_count is not None:
            await self._on_count(len(ids))
        killed = 0
        for start in range(0, len(ids), SWEEP_BATCH):
            live = await self._store.wamp_sessions_live(ids[start : start + SWEEP_BATCH])
            for wamp_id, is_live in live.items():
                if not is_live:
                    killed += await _kill(session, wamp_id, names.CLOSE_SIGNED_OUT, "signed out")
        if killed:
            log.info("sweep killed sessions of ended web sessions", killed=killed)
        return killed

    async def follow(self, redis: Redis, stop: asyncio.Event) -> None:
        """Apply announcements as they come and sweep periodically, until ``stop``."""

        async def subscribe(pubsub: _WatchedPubSub) -> None:
            await pubsub.subscribe(names.ACCESS_EVENTS_CHANNEL)

        await stay_subscribed(
            redis,
            stop,
            name="access-events",
            subscribe=subscribe,
            pump=lambda pubsub: self._pump(pubsub, stop),
            pubsub_class=_WatchedPubSub,
        )

    async def _pump(self, pubsub: _WatchedPubSub, stop: asyncio.Event) -> None:
        seen_connects = 0
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while not stop.is_set():
            if pubsub.connects != seen_connects:
                # (Re)subscribed: announcements since the last connection may be lost.
                seen_connects = pubsub.connects
                self._cache.clear()
                next_sweep = loop.time()
            if self._rejoined.is_set():
                self._rejoined.clear()
                next_sweep = loop.time()
            if loop.time() >= next_sweep:
                await self._guarded(self.sweep(), "sweep")
                next_sweep = loop.time() + SWEEP_INTERVAL
            timeout = max(0.0, min(next_sweep - loop.time(), 1.0))
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
            if message is None or message["type"] != "message":
                continue
            event = parse_access_event(message["data"])
            if event is not None:
                await self._guarded(self.apply(event), "apply")

    async def _guarded(self, work: Coroutine[Any, Any, int], what: str) -> None:
        # A router hiccup (a call lost mid-restart) must not end the listener; the
        # next sweep retries. Redis errors propagate: they end the subscription.
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                await work
        except RedisError:
            raise
        except Exception as exc:
            log.warning("access event work failed", what=what, error=f"{type(exc).__name__}: {exc}")


async def _kill(session: ApplicationSession, wamp_id: int, reason: str, message: str) -> int:
    try:
        await session.call("wamp.session.kill", wamp_id, reason=reason, message=message)
    except ApplicationError as exc:
        if exc.error == ApplicationError.NO_SUCH_SESSION:
            return 0  # gone already, or joined to another router node
        raise
    return 1

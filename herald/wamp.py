"""Backend components' link to Crossbar: join as the ``backend`` role over the
loopback rawsocket with WAMP-CRA, and rejoin with backoff whenever the router
goes away, until told to stop.

Router auth and the bridge both use :class:`BackendLink`; :class:`Readiness`
turns "joined" (and whatever else a component needs) into its health key.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from autobahn.asyncio.rawsocket import WampRawSocketClientFactory
from autobahn.asyncio.wamp import ApplicationSession
from autobahn.rawsocket.util import parse_url
from autobahn.wamp import auth
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import MsgPackSerializer
from autobahn.wamp.types import CloseDetails, ComponentConfig, SessionDetails
from redis.asyncio import Redis
from redis.exceptions import RedisError

from herald import names
from herald.health import HEALTH_INTERVAL, keep_health
from herald.logs import get_logger
from herald.settings import Settings

__all__ = [
    "BackendLink",
    "OnJoin",
    "Readiness",
    "finish_tasks",
    "halt_on_exit",
]

log = get_logger(__name__)

OnJoin = Callable[[ApplicationSession], Awaitable[None]]

# Backend messages are envelopes and auth calls; the router allows up to 1 MiB.
# They travel as MessagePack: Crossbar decodes the backend's JSON with autobahn's
# pure-Python scanner (~97 µs per publish, 29 % of the router at 1,000 events/s in
# bench/event_latency.py), MessagePack with the C extension (~10 µs).
MAX_MESSAGE_SIZE = 1 << 20
CONNECT_TIMEOUT = 5.0
JOIN_TIMEOUT = 10.0
LEAVE_TIMEOUT = 2.0
FIRST_DELAY = 0.25
MAX_DELAY = 10.0
ERROR_SETUP_FAILED = "herald.error.setup_failed"


class _BackendSession(ApplicationSession):
    """One WAMP session of a :class:`BackendLink`; reports its lifecycle to the link."""

    def __init__(self, config: ComponentConfig, link: BackendLink) -> None:
        super().__init__(config)
        self._link = link
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def onConnect(self) -> None:
        self.join(self.config.realm, authmethods=["wampcra"], authid=names.BACKEND_AUTHID)

    def onChallenge(self, challenge: Any) -> str:
        if challenge.method != "wampcra":
            raise ApplicationError(ERROR_SETUP_FAILED, f"unexpected auth method {challenge.method}")
        key: bytes | str = self._link.secret.encode()
        extra = challenge.extra
        if "salt" in extra:
            key = auth.derive_key(
                self._link.secret,
                extra["salt"],
                extra.get("iterations", 1000),
                extra.get("keylen", 32),
            )
        signature: bytes = auth.compute_wcs(key, extra["challenge"].encode())
        return signature.decode("ascii")

    async def onJoin(self, details: SessionDetails) -> None:
        try:
            await self._link.on_join(self)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Half set up (e.g. a procedure already registered elsewhere without
            # roundrobin): leave, and the link rejoins after a backoff.
            log.exception("backend setup failed", component=self._link.name)
            self.leave(ERROR_SETUP_FAILED, "setup failed")
            return
        if not self.joined.done():
            self.joined.set_result(None)

    def onLeave(self, details: CloseDetails) -> Any:
        log.info(
            "wamp session left",
            component=self._link.name,
            reason=details.reason,
            message=details.message,
        )
        return super().onLeave(details)

    def onDisconnect(self) -> None:
        super().onDisconnect()
        if not self.gone.done():
            self.gone.set_result(None)


class BackendLink:
    """Keeps one backend session joined to Crossbar, rejoining with backoff until stopped.

    ``on_join`` runs on every (re)join, e.g. to register procedures; the link
    counts as up only once it has returned. ``on_change(up)`` is told whenever
    that changes.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        name: str,
        on_join: OnJoin,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.name = name
        self.secret = settings.require_backend_secret()
        self.on_join = on_join
        self._on_change = on_change
        self._url = settings.backend_url
        self._session: _BackendSession | None = None

    @property
    def session(self) -> ApplicationSession | None:
        """The joined, set-up session, or ``None`` while Crossbar is unreachable."""
        return self._session

    async def run(self, stop: asyncio.Event) -> None:
        """Join, stay joined, rejoin after every loss; return once ``stop`` is set."""
        delay = FIRST_DELAY
        while not stop.is_set():
            joined = False
            try:
                joined = await self._session_once(stop)
            except (OSError, TimeoutError, ApplicationError) as exc:
                log.warning(
                    "crossbar unreachable",
                    component=self.name,
                    url=self._url,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in=round(delay, 2),
                )
            except Exception:
                # A bug or protocol surprise must not end the process for good: log the
                # traceback once and rejoin like after any other loss.
                log.exception("backend session failed", component=self.name)
            if joined:
                delay = FIRST_DELAY
            if stop.is_set():
                break
            # Jitter spreads the rejoin of many components after a router restart.
            pause = delay * (0.5 + random.random())  # noqa: S311 - jitter, not security
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
            delay = min(delay * 2, MAX_DELAY)

    async def _session_once(self, stop: asyncio.Event) -> bool:
        """One session from connect to disconnect; returns whether it joined."""
        loop = asyncio.get_running_loop()
        _secure, host, port = parse_url(self._url)
        created: asyncio.Future[_BackendSession] = loop.create_future()

        def make_session() -> _BackendSession:
            session = _BackendSession(ComponentConfig(realm=names.REALM), self)
            created.set_result(session)
            return session

        factory = WampRawSocketClientFactory(make_session, serializer=MsgPackSerializer())
        factory.setProtocolOptions(maxMessagePayloadSize=MAX_MESSAGE_SIZE)
        transport, protocol = await asyncio.wait_for(
            loop.create_connection(factory, host, port), CONNECT_TIMEOUT
        )
        stopping = asyncio.ensure_future(stop.wait())
        session: _BackendSession | None = None
        try:
            # The session exists once the rawsocket handshake is done; then it joins.
            async with asyncio.timeout(JOIN_TIMEOUT):
                handshake: list[asyncio.Future[Any]] = [created, protocol.is_closed, stopping]
                await asyncio.wait(handshake, return_when=asyncio.FIRST_COMPLETED)
                if not created.done():
                    return False
                session = created.result()
                joining: list[asyncio.Future[Any]] = [session.joined, session.gone, stopping]
                await asyncio.wait(joining, return_when=asyncio.FIRST_COMPLETED)
            if not session.joined.done():
                return False
            self._set(session)
            log.info("joined crossbar", component=self.name, session=session.session_id)
            running: list[asyncio.Future[Any]] = [session.gone, stopping]
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            return True
        finally:
            self._set(None)
            stopping.cancel()
            await self._close(session, transport)

    async def _close(
        self, session: _BackendSession | None, transport: asyncio.BaseTransport
    ) -> None:
        if session is None:
            transport.close()
            return
        if session.gone.done():
            return
        if session.is_attached():
            # A GOODBYE lets Crossbar drop our registrations at once.
            session.leave("wamp.close.normal")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(session.gone), LEAVE_TIMEOUT)
        transport.close()

    def _set(self, session: _BackendSession | None) -> None:
        was_up = self._session is not None
        self._session = session
        if self._on_change is not None and was_up != (session is not None):
            self._on_change(session is not None)


class Readiness:
    """Named readiness flags (e.g. ``wamp``, ``redis``); the health key lives while all are up."""

    def __init__(self, *parts: str) -> None:
        self._parts = dict.fromkeys(parts, False)
        self._all_up = asyncio.Event()
        self._down: asyncio.Event | None = None

    @property
    def ready(self) -> bool:
        return all(self._parts.values())

    def is_up(self, part: str) -> bool:
        return self._parts[part]

    def set(self, part: str, up: bool) -> None:
        """Record one part's state (``part`` must be one given at construction)."""
        if part not in self._parts:
            raise KeyError(part)
        self._parts[part] = up
        if self.ready:
            self._all_up.set()
        else:
            self._all_up.clear()
            if self._down is not None:
                self._down.set()

    async def keep_health(
        self, redis: Redis, process: str, instance: str, stop: asyncio.Event
    ) -> None:
        """Hold the health key of ``process`` while every part is up, until ``stop``."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                up = asyncio.ensure_future(self._all_up.wait())
                try:
                    await asyncio.wait([up, stopping], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    up.cancel()
                if stop.is_set():
                    return
                if not self.ready:  # went down again before we resumed
                    continue
                down = self._down = asyncio.Event()
                # One event ends this round of keep_health: a part going down, or stop.
                relay = asyncio.ensure_future(_relay(stop, down))
                try:
                    await keep_health(redis, process, instance, down)
                except (RedisError, OSError) as exc:
                    # Redis itself is away: no key can be kept; try again shortly.
                    log.warning("health key not kept", process=process, error=str(exc))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(stopping), HEALTH_INTERVAL)
                finally:
                    relay.cancel()
                    self._down = None
        finally:
            stopping.cancel()


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


@contextlib.asynccontextmanager
async def halt_on_exit(stop: asyncio.Event) -> AsyncIterator[asyncio.Event]:
    """An event set when ``stop`` is, and also when the block exits by error or cancellation.

    Helpers watch it instead of ``stop``, so they wind down gracefully whatever
    ends the component (cancelling them is the fallback: some clients, redis-py's
    among them, can swallow a cancellation that lands mid-connect).
    """
    halt = asyncio.Event()
    relay = asyncio.ensure_future(_relay(stop, halt))
    try:
        yield halt
    finally:
        halt.set()
        relay.cancel()


async def finish_tasks(tasks: set[asyncio.Task[None]], grace: float) -> None:
    """Give tasks that end on their own (their stop event is set) ``grace`` seconds, then
    cancel the stragglers; exceptions are logged, never left unretrieved."""
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:
        log.warning("task stuck at shutdown; cancelling", task=task.get_name())
        task.cancel()
    await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.error("task failed", task=task.get_name(), exc_info=task.exception())

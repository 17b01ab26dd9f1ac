"""A browser-like WAMP client for tests: autobahn asyncio over WebSocket, JSON,
WAMP-Ticket, with the Origin a page on the web port would send."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit

from autobahn.asyncio.wamp import ApplicationSession
from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp.serializer import JsonSerializer, Serializer
from autobahn.wamp.types import CloseDetails, ComponentConfig, SessionDetails

from herald import names
from herald.settings import Settings

JOIN_TIMEOUT = 10.0


class JoinRefused(Exception):
    """The router aborted the join; ``reason`` is the WAMP error URI."""

    def __init__(self, reason: str, message: str | None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class BrowserSession(ApplicationSession):
    """Joins with a ticket and records what happens to it."""

    def __init__(self, config: ComponentConfig, ticket: str) -> None:
        super().__init__(config)
        self._ticket = ticket
        loop = asyncio.get_running_loop()
        self.joined: asyncio.Future[SessionDetails] = loop.create_future()
        self.gone: asyncio.Future[None] = loop.create_future()
        self.left: CloseDetails | None = None

    def onConnect(self) -> None:
        # The claimed authid is ignored: the authenticator decides who this is.
        self.join(self.config.realm, authmethods=["ticket"], authid="claimed")

    def onChallenge(self, challenge: Any) -> str:
        return self._ticket

    def onJoin(self, details: SessionDetails) -> None:
        self.joined.set_result(details)

    def onLeave(self, details: CloseDetails) -> Any:
        self.left = details
        if not self.joined.done():
            self.joined.set_exception(JoinRefused(details.reason, details.message))
        return super().onLeave(details)

    def onDisconnect(self) -> None:
        super().onDisconnect()
        if not self.joined.done():
            self.joined.set_exception(ConnectionError("disconnected before joining"))
        if not self.gone.done():
            self.gone.set_result(None)


async def connect_browser(
    settings: Settings,
    ticket: str,
    *,
    origin: str | None = None,
    serializer: Serializer | None = None,
) -> BrowserSession:
    """A joined browser session; raises JoinRefused if the router refuses the ticket.

    ``serializer``: WAMP-JSON by default; another JSON serializer (same bytes on the
    wire) may decode faster.
    """
    url = settings.router_public_url
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    created: asyncio.Future[BrowserSession] = loop.create_future()

    def make() -> BrowserSession:
        session = BrowserSession(ComponentConfig(realm=names.REALM), ticket)
        created.set_result(session)
        return session

    factory = WampWebSocketClientFactory(
        make,
        url=url,
        serializers=[serializer or JsonSerializer()],
        origin=origin if origin is not None else settings.allowed_origins[0],
    )
    transport, protocol = await loop.create_connection(factory, parts.hostname, parts.port)
    try:
        async with asyncio.timeout(JOIN_TIMEOUT):
            # The session exists once the WebSocket handshake succeeded; a refused
            # handshake (e.g. a foreign Origin) closes the connection instead.
            await asyncio.wait([created, protocol.is_closed], return_when=asyncio.FIRST_COMPLETED)
            if not created.done():
                raise ConnectionRefusedError("websocket handshake refused")
            session = created.result()
            await session.joined
    except BaseException:
        transport.close()
        raise
    return session


async def close_browser(session: BrowserSession) -> None:
    """Leave and wait for the transport to close."""
    if session.is_attached():
        session.leave()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(session.gone), 5)
    session.disconnect()

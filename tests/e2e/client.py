"""Test clients that behave like a browser: an HTTP client with the session
cookie and CSRF header, and a WAMP client that joins with a ticket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from autobahn.asyncio.wamp import ApplicationSession
from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import JsonSerializer
from autobahn.wamp.types import CloseDetails, ComponentConfig, SessionDetails, SubscribeOptions


class HeraldClient:
    """An HTTP client signed in through the JSON API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.csrf = ""
        # unsafe=True: keep cookies from IP hosts such as 127.0.0.1, as browsers do.
        self.http = aiohttp.ClientSession(base_url, cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def __aenter__(self) -> HeraldClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()

    async def login(self, username: str, password: str) -> dict[str, Any]:
        response = await self.http.post(
            "/api/session", json={"username": username, "password": password}
        )
        body: dict[str, Any] = await response.json()
        assert response.status == 200, body
        self.csrf = body["csrf_token"]
        return body

    async def get_json(self, path: str) -> Any:
        response = await self.http.get(path)
        assert response.status == 200, await response.text()
        return await response.json()

    async def upload(self, assignment_id: int, name: str, content: bytes) -> tuple[int, Any]:
        form = aiohttp.FormData()
        form.add_field("file", content, filename=name, content_type="application/octet-stream")
        response = await self.http.post(
            f"/api/assignments/{assignment_id}/submissions",
            data=form,
            headers={"X-CSRF-Token": self.csrf},
        )
        return response.status, await response.json()

    async def ticket(self) -> dict[str, str]:
        ticket: dict[str, str] = await self.get_json("/api/wamp/ticket")
        return ticket


class _TicketSession(ApplicationSession):
    def __init__(self, config: ComponentConfig, owner: WampBrowser) -> None:
        super().__init__(config)
        self._owner = owner

    def onConnect(self) -> None:
        self.join(self.config.realm, authmethods=["ticket"], authid=self._owner.ticket["authid"])

    def onChallenge(self, challenge: Any) -> str:
        return self._owner.ticket["ticket"]

    async def onJoin(self, details: SessionDetails) -> None:
        self._owner.joined.set_result(None)

    def onLeave(self, details: CloseDetails) -> None:
        if not self._owner.joined.done():
            self._owner.joined.set_exception(ApplicationError(details.reason, details.message))
        self.disconnect()

    def onDisconnect(self) -> None:
        if not self._owner.joined.done():
            self._owner.joined.set_exception(ConnectionError("disconnected before joining"))
        if not self._owner.closed.done():
            self._owner.closed.set_result(None)


class WampBrowser:
    """A WAMP session joined with a ticket, as the browser page does it."""

    def __init__(self, ticket: dict[str, str]) -> None:
        self.ticket = ticket
        self.session: _TicketSession | None = None
        loop = asyncio.get_running_loop()
        self.joined: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    async def __aenter__(self) -> WampBrowser:
        url = urlsplit(self.ticket["url"])
        factory = WampWebSocketClientFactory(
            self._make_session, url=self.ticket["url"], serializers=[JsonSerializer()]
        )
        await asyncio.get_running_loop().create_connection(factory, url.hostname, url.port)
        # The session is created once the WebSocket handshake is done; wait for the join.
        await asyncio.wait_for(self.joined, 10)
        return self

    def _make_session(self) -> _TicketSession:
        self.session = _TicketSession(ComponentConfig(realm=self.ticket["realm"]), self)
        return self.session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.session is not None and self.session.is_attached():
            self.session.leave()
            await asyncio.wait_for(self.closed, 10)

    async def subscribe(
        self, topic: str, handler: Callable[[dict[str, Any]], None], match: str = "exact"
    ) -> None:
        assert self.session is not None
        await self.session.subscribe(handler, topic, options=SubscribeOptions(match=match))

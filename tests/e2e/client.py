"""An HTTP test client that behaves like a signed-in browser: session cookie
and CSRF header, through the JSON API."""

from __future__ import annotations

from typing import Any

import aiohttp


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

    async def ticket(self) -> str:
        """A fresh single-use WAMP ticket for this session."""
        body = await self.get_json("/api/wamp/ticket")
        return str(body["ticket"])

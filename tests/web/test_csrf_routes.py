"""CSRF on every state-changing route, found from the app's own route table, so a route
added later is covered without anyone remembering to add it here."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import FormData

from herald.settings import Settings
from tests.web.conftest import Client, Demo, assert_nothing_stored, login
from web import create_app
from web.auth import CSRF_EXEMPT, UNSAFE_METHODS
from web.keys import SETTINGS

SIGN_IN = {("POST", "/api/session"), ("POST", "/login")}
WRONG = "forged-token"


def _unsafe_routes() -> list[tuple[str, str]]:
    # Building the app opens nothing (clients start with it), so any settings do.
    app = create_app(Settings.from_env({}))
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method in UNSAFE_METHODS and route.resource is not None
    }
    return sorted(routes - SIGN_IN)


UNSAFE_ROUTES = _unsafe_routes()


def test_the_route_table_is_really_read() -> None:
    """The generated list holds the known state-changing routes, and only sign-in is exempt."""
    assert ("DELETE", "/api/session") in UNSAFE_ROUTES
    assert ("POST", "/api/assignments/{aid}/submissions") in UNSAFE_ROUTES
    assert ("POST", "/logout") in UNSAFE_ROUTES
    assert ("POST", "/assignments/{aid}/submit") in UNSAFE_ROUTES
    assert frozenset(SIGN_IN) == CSRF_EXEMPT


def _json(token: str | None) -> dict[str, Any]:
    return {"json": {"text": "x"}, "headers": {"X-CSRF-Token": token} if token else {}}


def _form(token: str | None) -> dict[str, Any]:
    return {"data": {"csrf_token": token} if token else {"text": "x"}}


def _multipart(token: str | None) -> dict[str, Any]:
    form = FormData()
    if token:
        form.add_field("csrf_token", token)
    form.add_field("file", io.BytesIO(b"essay text"), filename="essay.txt")
    return {"data": form}


def _header_on_multipart(token: str | None) -> dict[str, Any]:
    return {**_multipart(None), "headers": {"X-CSRF-Token": token} if token else {}}


BODIES: dict[str, Callable[[str | None], dict[str, Any]]] = {
    "json": _json,
    "form": _form,
    "multipart": _multipart,
    "multipart-header": _header_on_multipart,
}


def _url(canonical: str, demo: Demo) -> str:
    # Real ids, so a request that got past CSRF would really act.
    return re.sub(r"\{[^}]+\}", str(demo.assignment_id), canonical)


@pytest.mark.parametrize(("method", "canonical"), UNSAFE_ROUTES)
@pytest.mark.parametrize("body", sorted(BODIES))
@pytest.mark.parametrize("token", ["missing", "wrong"])
async def test_cookie_request_without_the_right_token_is_403(
    client: Client, demo: Demo, method: str, canonical: str, body: str, token: str
) -> None:
    """A cookie-authenticated request with no or a wrong CSRF token is refused with 403
    (JSON for the API), acts on nothing, and the session survives."""
    await login(client, "alice")
    url = _url(canonical, demo)
    kwargs = BODIES[body](WRONG if token == "wrong" else None)
    response = await client.request(method, url, allow_redirects=False, **kwargs)
    assert response.status == 403, (method, url, body, token)
    if url.startswith("/api/"):
        assert await response.json() == {
            "error": "csrf_failed",
            "message": "The form has expired or did not come from this site; reload and retry.",
        }
    else:
        assert response.headers["Content-Type"].startswith("text/html")
    await assert_nothing_stored(client, demo)
    assert (await client.get("/api/me")).status == 200


@pytest.mark.parametrize(("method", "canonical"), UNSAFE_ROUTES)
async def test_the_right_token_gets_past_csrf(
    client: Client, demo: Demo, method: str, canonical: str
) -> None:
    """The control: the same routes with the right token are not refused as forgeries."""
    csrf = await login(client, "alice")
    url = _url(canonical, demo)
    upload = canonical.endswith(("/submissions", "/submit"))
    kwargs = _multipart(csrf) if upload else _form(csrf)
    response = await client.request(method, url, allow_redirects=False, **kwargs)
    # A student may still be refused (403) for who they are, but never as a forgery.
    text = await response.text()
    assert response.status != 403 or "did not come from this site" not in text, (method, url, text)


async def test_sign_in_from_a_foreign_page_is_refused(client: Client, demo: Demo) -> None:
    """Login CSRF: a cross-site form or fetch cannot sign the browser into any account;
    our own pages (an allowed Origin) and non-browser clients (no Origin) can."""
    credentials = {"username": "alice", "password": "demo"}
    for origin in ("http://evil.test", "null"):
        api = await client.post("/api/session", json=credentials, headers={"Origin": origin})
        assert api.status == 403
        assert (await api.json())["error"] == "csrf_failed"
        form = await client.post(
            "/login", data=credentials, headers={"Origin": origin}, allow_redirects=False
        )
        assert form.status == 403
        assert "herald_session" not in form.cookies
    (own, *_others) = client.server.app[SETTINGS].allowed_origins
    signed_in = await client.post("/api/session", json=credentials, headers={"Origin": own})
    assert signed_in.status == 200
    assert (await client.post("/api/session", json=credentials)).status == 200

"""Behind a TLS-terminating proxy: X-Forwarded-* believed only with HERALD_TRUST_PROXY."""

from __future__ import annotations

from aiohttp import ClientResponse

from tests.web.conftest import Client, ClientFactory, Demo

HTTPS = {"X-Forwarded-Proto": "https"}


async def _login(client: Client, headers: dict[str, str]) -> ClientResponse:
    response = await client.post(
        "/api/session", json={"username": "alice", "password": "demo"}, headers=headers
    )
    assert response.status == 200
    return response


async def test_trusted_proxy_https_gives_secure_cookie_and_hsts(
    make_client: ClientFactory, demo: Demo
) -> None:
    """With the setting, a request the proxy received over https gets a Secure cookie and HSTS,
    on the API, the form sign-in and pages."""
    client = await make_client(HERALD_TRUST_PROXY="true")
    response = await _login(client, HTTPS)
    assert response.cookies["herald_session"]["secure"]
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"

    response = await client.post(
        "/login",
        data={"username": "bob", "password": "demo"},
        headers=HTTPS,
        allow_redirects=False,
    )
    assert response.status == 303
    assert response.cookies["herald_session"]["secure"]
    assert "Strict-Transport-Security" in response.headers

    for path in ("/login", "/api/me", "/static/herald.css"):
        response = await client.get(path, headers=HTTPS, allow_redirects=False)
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000", path


async def test_trusted_proxy_plain_http_is_not_secure(
    make_client: ClientFactory, demo: Demo
) -> None:
    """With the setting, a request the proxy received over http gets neither Secure nor HSTS."""
    client = await make_client(HERALD_TRUST_PROXY="1")
    for headers in ({}, {"X-Forwarded-Proto": "http"}, {"X-Forwarded-Proto": "gopher"}):
        response = await _login(client, headers)
        assert not response.cookies["herald_session"]["secure"]
        assert "Strict-Transport-Security" not in response.headers


async def test_proxy_headers_ignored_by_default(make_client: ClientFactory, demo: Demo) -> None:
    """Without the setting a client claiming https is served as the plain http it is."""
    client = await make_client()
    response = await _login(client, HTTPS)
    assert not response.cookies["herald_session"]["secure"]
    assert "Strict-Transport-Security" not in response.headers
    response = await client.get("/login", headers=HTTPS)
    assert "Strict-Transport-Security" not in response.headers


async def test_only_the_proxys_own_entry_is_believed(
    make_client: ClientFactory, demo: Demo
) -> None:
    """The last X-Forwarded-Proto / X-Forwarded-For entry is the proxy's; what the client
    put before it is ignored."""
    client = await make_client(HERALD_TRUST_PROXY="1", HERALD_LOGIN_ADDRESS_LIMIT="2")
    response = await _login(client, {"X-Forwarded-Proto": "https, http"})
    assert not response.cookies["herald_session"]["secure"]
    response = await _login(client, {"X-Forwarded-Proto": "http, https"})
    assert response.cookies["herald_session"]["secure"]

    # Two failures with forged first entries still count for the proxy-seen 192.0.2.10.
    for forged in ("198.51.100.1", "198.51.100.2"):
        response = await client.post(
            "/api/session",
            json={"username": "ghost", "password": "x"},
            headers={"X-Forwarded-For": f"{forged}, 192.0.2.10"},
        )
        assert response.status == 401
    response = await client.post(
        "/api/session",
        json={"username": "alice", "password": "demo"},
        headers={"X-Forwarded-For": "192.0.2.10:51234"},
    )
    assert response.status == 429
    response = await client.post(
        "/api/session",
        json={"username": "alice", "password": "demo"},
        headers={"X-Forwarded-For": "192.0.2.10, not-an-address"},
    )
    # An entry that is no address is ignored: the peer (127.0.0.1) counts instead.
    assert response.status == 200

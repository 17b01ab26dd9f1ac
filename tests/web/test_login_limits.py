"""Sign-in rate limits: per username and per client address, on the API and the form."""

from __future__ import annotations

import asyncio

from aiohttp import ClientResponse
from redis.asyncio import Redis

from tests.web.conftest import Client, ClientFactory, Demo, settings_of

WRONG = "not-the-password"


async def _api_login(
    client: Client, username: str, password: str = WRONG, *, address: str | None = None
) -> ClientResponse:
    headers = {"X-Forwarded-For": address} if address else {}
    return await client.post(
        "/api/session", json={"username": username, "password": password}, headers=headers
    )


async def _assert_refused(response: ClientResponse, window: int) -> dict[str, str]:
    assert response.status == 429
    body = await response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == "too_many_attempts"
    assert "Too many failed sign-in attempts" in body["message"]
    assert 0 < int(response.headers["Retry-After"]) <= window
    assert "herald_session" not in response.cookies
    return body


async def test_account_limit_refuses_even_the_right_password(
    make_client: ClientFactory, demo: Demo
) -> None:
    """Past the failure limit for a username, sign-in is refused (429), right password too."""
    client = await make_client()
    settings = settings_of(client)
    assert settings.login_account_limit == 5
    for _ in range(5):
        assert (await _api_login(client, "alice")).status == 401
    await _assert_refused(await _api_login(client, "alice", "demo"), settings.login_window_seconds)
    # Another account from the same address is not affected.
    assert (await _api_login(client, "bob", "demo")).status == 200


async def test_account_limit_holds_across_addresses(make_client: ClientFactory, demo: Demo) -> None:
    """Guessing one account's password from many addresses still hits the account limit."""
    client = await make_client(HERALD_TRUST_PROXY="1", HERALD_LOGIN_ACCOUNT_LIMIT="3")
    for n in range(3):
        assert (await _api_login(client, "alice", address=f"198.51.100.{n}")).status == 401
    response = await _api_login(client, "alice", "demo", address="203.0.113.9")
    await _assert_refused(response, settings_of(client).login_window_seconds)


async def test_unknown_and_existing_usernames_are_limited_alike(
    make_client: ClientFactory, demo: Demo
) -> None:
    """An unknown username is counted and refused exactly like a real one: same status,
    body and headers, so the limit does not reveal which accounts exist."""
    client = await make_client(HERALD_LOGIN_ACCOUNT_LIMIT="2")
    window = settings_of(client).login_window_seconds
    answers = []
    for username in ("alice", "no-such-user"):
        for _ in range(2):
            assert (await _api_login(client, username)).status == 401
        response = await _api_login(client, username)
        answers.append((await _assert_refused(response, window), response.headers["Retry-After"]))
    (alice_body, alice_wait), (nobody_body, nobody_wait) = answers
    assert alice_body == nobody_body
    assert abs(int(alice_wait) - int(nobody_wait)) <= 1


async def test_address_limit_counts_every_username(make_client: ClientFactory, demo: Demo) -> None:
    """Failures on many (also unknown) usernames from one address use up that address's
    limit; other addresses still sign in."""
    client = await make_client(
        HERALD_TRUST_PROXY="1", HERALD_LOGIN_ADDRESS_LIMIT="4", HERALD_LOGIN_ACCOUNT_LIMIT="100"
    )
    window = settings_of(client).login_window_seconds
    attacker = "192.0.2.66"
    for username in ("alice", "bob", "ghost-1", "ghost-2"):
        assert (await _api_login(client, username, address=attacker)).status == 401
    await _assert_refused(await _api_login(client, "mark", "demo", address=attacker), window)
    await _assert_refused(await _api_login(client, "ghost-3", address=attacker), window)
    assert (await _api_login(client, "mark", "demo", address="192.0.2.67")).status == 200


async def test_ipv6_addresses_are_counted_per_64(make_client: ClientFactory, demo: Demo) -> None:
    """Hopping between addresses of one IPv6 /64 does not reset the address limit."""
    client = await make_client(
        HERALD_TRUST_PROXY="1", HERALD_LOGIN_ADDRESS_LIMIT="2", HERALD_LOGIN_ACCOUNT_LIMIT="100"
    )
    for host in ("2001:db8:1:2::a", "2001:db8:1:2::b"):
        assert (await _api_login(client, "alice", address=host)).status == 401
    response = await _api_login(client, "alice", "demo", address="2001:db8:1:2:ffff::1")
    assert response.status == 429
    assert (await _api_login(client, "alice", "demo", address="2001:db8:1:3::1")).status == 200


async def test_spoofed_forwarded_for_is_ignored_without_trusted_proxy(
    make_client: ClientFactory, demo: Demo
) -> None:
    """Without HERALD_TRUST_PROXY a client cannot dodge the address limit by sending
    X-Forwarded-For: the peer address is what counts."""
    client = await make_client(HERALD_LOGIN_ADDRESS_LIMIT="2", HERALD_LOGIN_ACCOUNT_LIMIT="100")
    for n in range(2):
        assert (await _api_login(client, f"ghost-{n}", address=f"198.51.100.{n}")).status == 401
    response = await _api_login(client, "alice", "demo", address="198.51.100.99")
    assert response.status == 429


async def test_success_resets_the_account_counter(make_client: ClientFactory, demo: Demo) -> None:
    """A successful sign-in clears the username's failures, so they do not add up."""
    client = await make_client(HERALD_LOGIN_ACCOUNT_LIMIT="3")
    for _ in range(2):
        for _ in range(2):
            assert (await _api_login(client, "alice")).status == 401
        assert (await _api_login(client, "alice", "demo")).status == 200


async def test_successes_do_not_use_up_the_address_limit(
    make_client: ClientFactory, demo: Demo
) -> None:
    """Only failures count against an address: many users signing in behind one NAT are fine."""
    client = await make_client(HERALD_LOGIN_ADDRESS_LIMIT="2")
    for _ in range(3):
        for username in ("alice", "bob", "mark", "ada"):
            assert (await _api_login(client, username, "demo")).status == 200


async def test_parallel_guesses_cannot_pass_the_limit(
    make_client: ClientFactory, demo: Demo
) -> None:
    """Guesses sent all at once get exactly the limit's worth of password checks."""
    client = await make_client(HERALD_LOGIN_ACCOUNT_LIMIT="5")
    responses = await asyncio.gather(*(_api_login(client, "alice") for _ in range(20)))
    statuses = sorted(response.status for response in responses)
    assert statuses == [401] * 5 + [429] * 15


async def test_counters_expire_with_the_window(
    make_client: ClientFactory, demo: Demo, redis: Redis
) -> None:
    """Every counter in Redis carries the window as its expiry: no lockout is permanent."""
    client = await make_client(HERALD_LOGIN_WINDOW="120")
    assert (await _api_login(client, "alice")).status == 401
    keys = [key async for key in redis.scan_iter(match="herald:{login-failures}:*")]
    assert len(keys) == 2  # the username's and the address's
    for key in keys:
        assert 0 < await redis.ttl(key) <= 120
    for _ in range(4):
        await _api_login(client, "alice")
    response = await _api_login(client, "alice")
    assert 0 < int(response.headers["Retry-After"]) <= 120
    assert "2 minutes" in (await response.json())["message"]


async def test_form_login_is_limited_with_a_readable_page(
    make_client: ClientFactory, demo: Demo
) -> None:
    """The /login form shares the counters and answers 429 with the reason on the page."""
    client = await make_client(HERALD_LOGIN_ACCOUNT_LIMIT="2")
    assert (await _api_login(client, "alice")).status == 401
    response = await client.post("/login", data={"username": "alice", "password": WRONG})
    assert response.status == 401
    response = await client.post("/login", data={"username": "alice", "password": "demo"})
    assert response.status == 429
    assert response.headers["Content-Type"].startswith("text/html")
    assert 0 < int(response.headers["Retry-After"]) <= settings_of(client).login_window_seconds
    html = await response.text()
    assert "Too many failed sign-in attempts. Try again in 15 minutes." in html
    assert '<form method="post" action="/login"' in html
    assert "herald_session" not in response.cookies


async def test_limits_can_be_switched_off(make_client: ClientFactory, demo: Demo) -> None:
    """A limit of 0 counts nothing for that dimension."""
    client = await make_client(HERALD_LOGIN_ACCOUNT_LIMIT="0", HERALD_LOGIN_ADDRESS_LIMIT="0")
    for _ in range(8):
        assert (await _api_login(client, "alice")).status == 401
    assert (await _api_login(client, "alice", "demo")).status == 200

"""GET /healthz: 200 with each check's verdict when the DB, Redis and the router answer;
503 naming whichever does not, answered within the checks' timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import RedisServer
from tests.web.conftest import Client, ClientFactory, Demo, settings_of


@pytest.fixture
async def router_port(client: Client) -> AsyncIterator[None]:
    """Something accepting connections on the router's port (what the check asks)."""

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    settings = settings_of(client)
    server = await asyncio.start_server(accept, settings.router_host, settings.router_port)
    yield
    server.close()
    await server.wait_closed()


async def test_all_up_is_200_with_every_check(
    client: Client, demo: Demo, router_port: None
) -> None:
    """DB, Redis and the router's port all answer: 200, each check ok with its time."""
    response = await client.get("/healthz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok" and "failing" not in body
    assert set(body["checks"]) == {"db", "redis", "router"}
    for check in body["checks"].values():
        assert check["ok"] is True and check["ms"] >= 0 and "error" not in check


async def test_router_down_is_503_naming_it(client: Client, demo: Demo) -> None:
    """Nothing listens on the router's port: 503, and only the router is named."""
    response = await client.get("/healthz")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "unavailable" and body["failing"] == ["router"]
    assert body["checks"]["router"] == {
        "ok": False,
        "ms": body["checks"]["router"]["ms"],
        "error": "ConnectionRefusedError",
    }
    assert body["checks"]["db"]["ok"] and body["checks"]["redis"]["ok"]


async def test_redis_down_is_503_naming_it(
    make_client: ClientFactory, demo: Demo, tmp_path: Path
) -> None:
    """A Redis that stopped: 503 naming redis (and the router, absent here), not the DB."""
    private = RedisServer(tmp_path / "redis-down")
    private.start()
    try:
        client = await make_client(HERALD_REDIS_URL=private.url)
        assert (await (await client.get("/healthz")).json())["checks"]["redis"]["ok"]
    finally:
        private.stop()
    response = await client.get("/healthz")
    assert response.status == 503
    body = await response.json()
    assert body["failing"] == ["redis", "router"]
    assert body["checks"]["redis"]["ok"] is False and body["checks"]["redis"]["error"]
    assert body["checks"]["db"]["ok"] is True

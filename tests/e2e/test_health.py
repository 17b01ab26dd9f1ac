"""/healthz on the running stack: 200 with the real Crossbar up; 503 naming the router
while it is down; 200 again once it is back."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.stack import Stack
from tests.support import eventually


async def _health(stack: Stack) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{stack.web_url}/healthz") as answer:
        return answer.status, dict(await answer.json())


async def test_healthz_follows_the_router(stack: Stack) -> None:
    """Each check's verdict while all is up; the router named while it is stopped."""
    status, body = await _health(stack)
    assert status == 200 and body["status"] == "ok"
    assert all(check["ok"] for check in body["checks"].values())
    try:
        await asyncio.to_thread(stack.stop_router)
        status, body = await _health(stack)
        assert status == 503
        assert body["failing"] == ["router"]
        assert body["checks"]["db"]["ok"] and body["checks"]["redis"]["ok"]
    finally:
        # The stack is shared by every end-to-end test: leave the router up and joined.
        await asyncio.to_thread(stack.ensure_router)

    async def healthy() -> bool:
        return (await _health(stack))[0] == 200

    await eventually(healthy, timeout=30, what="/healthz to be 200 again")

"""The running stack, shared by the end-to-end tests of one session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from tests.stack import Stack, start_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from start_stack(tmp_path_factory.mktemp("stack"))


@pytest.fixture
async def stack_redis(stack: Stack) -> AsyncIterator[Redis]:
    """A client on the stack's own Redis (never flushed: the stack lives on it)."""
    client = Redis.from_url(stack.settings.redis_url)
    yield client
    await client.aclose()

"""The running stack, shared by the end-to-end tests of one session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from herald.db import create_engine, session_factory
from tests.stack import QueueSwitch, Stack, start_stack
from workers.pipeline import SUBMISSION_STEPS
from workers.queue import RedisQueue


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from start_stack(tmp_path_factory.mktemp("stack"))


@pytest.fixture
async def stack_redis(stack: Stack) -> AsyncIterator[Redis]:
    """A client on the stack's own Redis (never flushed: the stack lives on it)."""
    client = Redis.from_url(stack.settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def first_step_queue(stack: Stack, stack_redis: Redis) -> AsyncIterator[QueueSwitch]:
    """Pause and resume the queue of the pipeline's first step as an operator does (DB
    setting, mirrored live to every worker), so a test can hold a submission before any
    work happens; the queue is resumed when the test ends, whatever happens."""
    engine = create_engine(stack.settings)
    queue = SUBMISSION_STEPS[0].queue
    switch = QueueSwitch(session_factory(engine), RedisQueue(stack_redis), queue)
    try:
        yield switch
    finally:
        await switch.resume()
        await engine.dispose()

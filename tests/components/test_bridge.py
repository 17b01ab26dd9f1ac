"""The bridge: filtering of Redis messages, Redis outages, and Crossbar restarts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from components.bridge import Bridge
from herald import names
from herald.events import EventPublisher
from herald.health import instance_id, is_healthy
from herald.names import EventType
from tests.conftest import make_settings
from tests.router.e2e import Stack, backend_stack
from tests.support import RedisServer, eventually
from tests.wamp_client import close_browser, connect_browser


def _envelope(topic: str, **overrides: object) -> bytes:
    body: dict[str, object] = {
        "topic": topic,
        "type": "step.progress",
        "seq": 1,
        "ts": "2026-11-22T10:00:00.000Z",
        "data": {},
    }
    body.update(overrides)
    return json.dumps(body).encode()


@pytest.fixture
def bridge(tmp_path: Path, redis_server: str, redis: Redis) -> Bridge:
    settings = make_settings(tmp_path, redis_server, f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    return Bridge(settings, redis)


def test_malformed_and_mismatched_messages_are_dropped(bridge: Bridge) -> None:
    """Non-JSON, incomplete, topic-mismatched and non-canonical-channel messages are dropped."""
    bad = [
        (b"submission.1", b"not json"),
        (b"submission.1", b"[1, 2]"),
        (b"submission.1", _envelope("submission.1", seq="1")),
        (b"submission.1", _envelope("submission.1", data=[])),
        (b"submission.1", json.dumps({"topic": "submission.1"}).encode()),
        # A message on one channel claiming another topic must not leak there.
        (b"submission.1", _envelope("submission.2")),
        (b"user.1", _envelope("user.2")),
        # Pattern subscriptions also match non-canonical channels.
        (b"user.01", _envelope("user.01")),
        (b"user.1.x", _envelope("user.1.x")),
        (b"user.\xff", b"{}"),
    ]
    for channel, data in bad:
        assert bridge.handle(channel, data) is False, (channel, data)
    assert bridge.dropped_malformed == len(bad)
    assert bridge.dropped_offline == 0


def test_events_while_wamp_is_down_are_counted(bridge: Bridge) -> None:
    """Valid events with no joined WAMP session are dropped and counted, not buffered."""
    for topic in ("submission.1", names.BROADCAST, names.ADMIN_TASKS, "course.3"):
        assert bridge.handle(topic.encode(), _envelope(topic)) is False
    assert bridge.dropped_offline == 4
    assert bridge.dropped_malformed == 0
    assert bridge.relayed == 0


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


async def test_redis_restart_resubscribes(tmp_path: Path, private_redis: RedisServer) -> None:
    """After Redis restarts the bridge subscribes again and relays the next message."""
    settings = make_settings(
        tmp_path, private_redis.url, f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    )
    client = Redis.from_url(private_redis.url)
    bridge = Bridge(settings, client)
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run_redis(stop))
    try:

        async def subscribed() -> bool:
            return bridge.readiness.is_up("redis")

        async def unsubscribed() -> bool:
            return not bridge.readiness.is_up("redis")

        await eventually(subscribed, timeout=10, what="bridge subscribed")
        await asyncio.to_thread(private_redis.stop)
        await eventually(unsubscribed, timeout=10, what="bridge noticing redis is gone")
        await asyncio.to_thread(private_redis.start)
        await eventually(subscribed, timeout=20, what="bridge resubscribed")

        topic = names.submission_topic(7)
        await EventPublisher(client).publish(topic, EventType.STEP_PROGRESS, {"n": 1})

        async def counted() -> bool:
            # No WAMP link in this test: a relayed message shows up as dropped_offline.
            return bridge.dropped_offline == 1

        await eventually(counted, timeout=10, what="message after restart")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await client.aclose()


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, redis_server: str
) -> AsyncIterator[Stack]:
    async with backend_stack(tmp_path_factory.mktemp("bridge-e2e"), redis_server) as running:
        yield running


async def _receive_one(stack: Stack, topic: str) -> dict[str, object]:
    alice = await connect_browser(stack.settings, await stack.ticket("alice"))
    received: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    try:
        await alice.subscribe(lambda envelope: received.put_nowait(envelope), topic)
        await EventPublisher(stack.redis).publish(topic, EventType.STEP_DONE, {"ok": True})
        return await asyncio.wait_for(received.get(), 10)
    finally:
        await close_browser(alice)


async def test_rejoin_after_crossbar_restart(stack: Stack) -> None:
    """Router auth and the bridge rejoin a restarted Crossbar; browsers join and get events."""
    topic = names.submission_topic(stack.world.alice_submission)
    assert (await _receive_one(stack, topic))["type"] == "step.done"

    await asyncio.to_thread(stack.node.stop)

    async def gone() -> bool:
        return not await is_healthy(stack.redis, "bridge", instance_id())

    await eventually(gone, timeout=20, what="bridge health key gone while crossbar is down")
    # Published while the router is down: dropped by the bridge, seq still advances.
    await EventPublisher(stack.redis).publish(topic, EventType.STEP_PROGRESS, {"lost": True})
    await asyncio.to_thread(stack.node.start)
    await stack.wait_ready()

    envelope = await _receive_one(stack, topic)
    assert envelope["type"] == "step.done"
    assert envelope["seq"] == 3  # the gap tells the client to resync

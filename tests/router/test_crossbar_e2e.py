"""Router auth end to end: a real Crossbar, router auth and bridge, a browser-like client."""

from __future__ import annotations

import asyncio
import http.client

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from herald import names
from herald.events import EventPublisher
from herald.names import EventType
from tests.router.e2e import Stack
from tests.wamp_client import JoinRefused, close_browser, connect_browser

NOT_AUTHORIZED = "wamp.error.not_authorized"


async def _refused_subscribe(session: object, topic: str, **options: str) -> str:
    with pytest.raises(ApplicationError) as caught:
        await session.subscribe(  # type: ignore[attr-defined]
            lambda *_a: None, topic, options=SubscribeOptions(**options) if options else None
        )
    return str(caught.value.error)


async def test_own_topics_allowed_others_refused(stack: Stack) -> None:
    """A student subscribes to its own user topic; others' topics and prefix matches are refused."""
    world = stack.world
    alice = await connect_browser(stack.settings, await stack.ticket("alice"))
    try:
        assert alice.joined.result().authid == str(world.uid("alice"))
        assert alice.joined.result().authrole == names.ROLE_BROWSER
        sub = await alice.subscribe(lambda *_a: None, names.user_topic(world.uid("alice")))
        assert sub.active
        await alice.subscribe(lambda *_a: None, names.submission_topic(world.alice_submission))
        await alice.subscribe(lambda *_a: None, names.BROADCAST)

        assert await _refused_subscribe(alice, names.user_topic(world.uid("bob"))) == NOT_AUTHORIZED
        bob_sub = names.submission_topic(world.bob_submission)
        assert await _refused_subscribe(alice, bob_sub) == NOT_AUTHORIZED
        assert await _refused_subscribe(alice, names.ADMIN_TASKS) == NOT_AUTHORIZED
        own = names.user_topic(world.uid("alice"))
        assert await _refused_subscribe(alice, own, match="prefix") == NOT_AUTHORIZED
        assert await _refused_subscribe(alice, "user", match="prefix") == NOT_AUTHORIZED
        assert await _refused_subscribe(alice, "user..", match="wildcard") == NOT_AUTHORIZED
        # The session survives refusals.
        assert alice.is_attached()
    finally:
        await close_browser(alice)


async def test_browser_cannot_publish_call_or_register(stack: Stack) -> None:
    """Publishing (acknowledged), calling and registering are refused with not_authorized."""
    world = stack.world
    alice = await connect_browser(stack.settings, await stack.ticket("alice"))
    try:
        own = names.user_topic(world.uid("alice"))
        with pytest.raises(ApplicationError) as caught:
            await alice.publish(own, {"forged": True}, options=PublishOptions(acknowledge=True))
        assert caught.value.error == NOT_AUTHORIZED
        with pytest.raises(ApplicationError) as caught:
            await alice.call(names.PROC_AUTHORIZE, {}, own, "subscribe", {})
        assert caught.value.error == NOT_AUTHORIZED
        with pytest.raises(ApplicationError) as caught:
            await alice.register(lambda: None, "herald.evil")
        assert caught.value.error == NOT_AUTHORIZED
        # The router's meta API would let a browser list and kill other people's sessions.
        for procedure, args in (
            ("wamp.session.list", ()),
            ("wamp.session.kill_by_authid", (str(world.uid("bob")),)),
            ("wamp.subscription.list", ()),
            (names.PROC_AUTHENTICATE, ("herald", "x", {"ticket": "x"})),
        ):
            with pytest.raises(ApplicationError) as caught:
                await alice.call(procedure, *args)
            assert caught.value.error == NOT_AUTHORIZED, procedure
        with pytest.raises(ApplicationError) as caught:
            await alice.subscribe(lambda *_a: None, "wamp.session.on_join")
        assert caught.value.error == NOT_AUTHORIZED
    finally:
        await close_browser(alice)


async def test_forged_and_reused_tickets_are_refused(stack: Stack) -> None:
    """A forged ticket and a second use of a ticket abort the join with the generic error."""
    with pytest.raises(JoinRefused) as caught:
        await connect_browser(stack.settings, "forged-ticket-" + "x" * 30)
    assert caught.value.reason == names.ERROR_AUTH_FAILED
    assert caught.value.message == "authentication failed"

    ticket = await stack.ticket("bob")
    bob = await connect_browser(stack.settings, ticket)
    await close_browser(bob)
    with pytest.raises(JoinRefused) as caught:
        await connect_browser(stack.settings, ticket)
    assert caught.value.reason == names.ERROR_AUTH_FAILED


async def test_foreign_origin_is_refused(stack: Stack) -> None:
    """A WebSocket handshake from an origin not in allowed_origins is refused."""
    with pytest.raises(ConnectionRefusedError):
        await connect_browser(stack.settings, await stack.ticket("bob"), origin="http://evil.test")


async def test_http_root_leaks_nothing(stack: Stack) -> None:
    """A plain HTTP GET on / gets no node info page, and /ws without upgrade is refused."""

    def probe(path: str) -> tuple[int | None, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", stack.settings.router_port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        except (TimeoutError, http.client.RemoteDisconnected, ConnectionResetError):
            return None, b""
        finally:
            conn.close()

    status, body = await asyncio.to_thread(probe, "/")
    assert status is None or status >= 400
    assert b"rossbar" not in body and b"node" not in body.lower()
    status, body = await asyncio.to_thread(probe, "/ws")
    assert status is not None and status >= 400
    assert b"rossbar" not in body and b"utobahn" not in body


async def test_event_reaches_subscriber_through_bridge(stack: Stack) -> None:
    """An event published with EventPublisher arrives at the subscribed client, envelope intact."""
    world = stack.world
    topic = names.submission_topic(world.alice_submission)
    alice = await connect_browser(stack.settings, await stack.ticket("alice"))
    received: asyncio.Queue[object] = asyncio.Queue()
    try:
        await alice.subscribe(lambda *args, **kwargs: received.put_nowait((args, kwargs)), topic)
        publisher = EventPublisher(stack.redis)
        data = {"step": "scan", "progress": 40, "text": "ünïcode ✓"}
        seq = await publisher.publish(topic, EventType.STEP_PROGRESS, data)
        args, kwargs = await asyncio.wait_for(received.get(), 10)
        assert kwargs == {}
        (envelope,) = args
        assert envelope["topic"] == topic
        assert envelope["type"] == "step.progress"
        assert envelope["seq"] == seq
        assert envelope["data"] == data
        assert envelope["ts"].endswith("Z")
        # Order is kept: a burst arrives in seq order.
        seqs = [
            await publisher.publish(topic, EventType.STEP_PROGRESS, {"i": i}) for i in range(20)
        ]
        got = [(await asyncio.wait_for(received.get(), 10))[0][0]["seq"] for _ in seqs]
        assert got == seqs
    finally:
        await close_browser(alice)

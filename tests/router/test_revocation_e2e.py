"""Taking access away from live browsers, through a real Crossbar: sign-out, disabled
accounts, lost enrolments, expired and revoked tickets, and a sign-out announced
while Redis had dropped router auth's subscription."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from autobahn.wamp.exception import ApplicationError

import router.revocation
from herald import names
from herald.models import CourseRole
from herald.sessions import SessionStore
from tests.router.e2e import Stack
from tests.support import eventually
from tests.wamp_client import BrowserSession, JoinRefused, close_browser, connect_browser

KILL_TIMEOUT = 10.0
DEMO_COURSE = "DEMO101"


async def _join(stack: Stack, web: object) -> BrowserSession:
    return await connect_browser(stack.settings, await stack.store.issue_ticket(web))  # type: ignore[arg-type]


async def _killed_with(session: BrowserSession) -> str:
    """Wait for the router to end ``session``; the close reason it gave."""
    await asyncio.wait_for(asyncio.shield(session.gone), KILL_TIMEOUT)
    assert session.left is not None, "transport dropped without a GOODBYE"
    return str(session.left.reason)


async def _can_subscribe(session: BrowserSession, topic: str) -> bool:
    try:
        await session.subscribe(lambda *_a: None, topic)
    except ApplicationError as exc:
        assert exc.error == "wamp.error.not_authorized"
        return False
    return True


async def test_sign_out_kills_the_sessions_of_that_web_session_only(stack: Stack) -> None:
    """Two tabs of one login are closed at sign-out; the same user's other login lives on."""
    alice = stack.world.uid("alice")
    _token, laptop = await stack.store.create(alice)
    _token, phone = await stack.store.create(alice)
    tabs = [await _join(stack, laptop), await _join(stack, laptop)]
    other = await _join(stack, phone)
    try:
        await stack.store.end(laptop)
        for tab in tabs:
            assert await _killed_with(tab) == names.CLOSE_SIGNED_OUT
        assert other.is_attached()
        assert await _can_subscribe(other, names.user_topic(alice))
        with pytest.raises(JoinRefused):
            await _join(stack, laptop)  # its tickets died with it
    finally:
        await close_browser(other)


async def test_disabling_an_account_kills_every_session_and_refuses_new_ones(
    stack: Stack,
) -> None:
    bob = stack.world.uid("bob")
    _token, web = await stack.store.create(bob)
    session = await _join(stack, web)
    assert await _can_subscribe(session, names.course_topic(stack.world.demo_course))
    try:
        await stack.accounts.set_active("bob", False)
        assert await _killed_with(session) == names.CLOSE_ACCOUNT_DISABLED
        assert await stack.store.get_by_digest(web.digest) is None  # signed out of the web too
        _token, fresh = await stack.store.create(bob)
        with pytest.raises(JoinRefused):
            await _join(stack, fresh)
    finally:
        await stack.accounts.set_active("bob", True)


async def test_losing_an_enrolment_ends_its_subscriptions(stack: Stack) -> None:
    """A marker removed from a course is disconnected; rejoining, the course is refused."""
    world = stack.world
    course = names.course_topic(world.demo_course)
    submission = names.submission_topic(world.bob_submission)
    _token, web = await stack.store.create(world.uid("mark"))
    session = await _join(stack, web)
    assert await _can_subscribe(session, course)
    assert await _can_subscribe(session, submission)  # now also in the decision cache
    try:
        await stack.accounts.unenrol("mark", DEMO_COURSE)
        assert await _killed_with(session) == names.CLOSE_ACCESS_CHANGED
        again = await _join(stack, web)  # the web session itself is still good
        try:
            assert not await _can_subscribe(again, submission)
            assert not await _can_subscribe(again, course)
            assert await _can_subscribe(again, names.user_topic(world.uid("mark")))
        finally:
            await close_browser(again)
    finally:
        await stack.accounts.enrol("mark", DEMO_COURSE, CourseRole.MARKER)


async def test_a_sign_out_missed_during_a_redis_blip_is_enforced_by_the_sweep(
    stack: Stack,
) -> None:
    """Redis drops router auth's subscription while a session ends unannounced: the
    sweep on resubscribing finds the WAMP session of a dead web session and kills it."""
    _token, web = await stack.store.create(stack.world.uid("alice"))
    session = await _join(stack, web)
    # The web session vanishes with no announcement (as if published during the gap).
    await stack.redis.delete(names.session_key(web.digest))
    killed = await stack.redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    assert killed >= 1
    assert await _killed_with(session) == names.CLOSE_SIGNED_OUT


async def test_expired_and_revoked_tickets_are_refused(stack: Stack) -> None:
    short = SessionStore(stack.redis, session_ttl=600, ticket_ttl=1)
    _token, web = await short.create(stack.world.uid("alice"))
    expiring = await short.issue_ticket(web)

    async def expired() -> bool:
        # Redis expires the key; nothing here waits a fixed time.
        return not await _ticket_exists(stack, expiring)

    await eventually(expired, timeout=5, what="the ticket to expire")
    with pytest.raises(JoinRefused) as caught:
        await connect_browser(stack.settings, expiring)
    assert caught.value.reason == names.ERROR_AUTH_FAILED

    revoked = await short.issue_ticket(web)
    await short.end(web)
    with pytest.raises(JoinRefused) as caught:
        await connect_browser(stack.settings, revoked)
    assert caught.value.message == "authentication failed"


async def _ticket_exists(stack: Stack, ticket: str) -> bool:
    digest = hashlib.sha256(ticket.encode()).hexdigest()
    return bool(await stack.redis.exists(names.ticket_key(digest)))


async def test_the_sweep_checks_sessions_batch_by_batch(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With batches of one, a sweep still kills every session of an ended web session
    and only those, across batches."""
    monkeypatch.setattr(router.revocation, "SWEEP_BATCH", 1)
    webs = [(await stack.store.create(stack.world.uid(name)))[1] for name in ("alice", "bob")]
    _token, live_web = await stack.store.create(stack.world.uid("mark"))
    doomed = [await _join(stack, web) for web in webs]
    survivor = await _join(stack, live_web)
    try:
        for web in webs:  # ended with no announcement: only the sweep can find them
            await stack.redis.delete(names.session_key(web.digest))
        await stack.redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        for session in doomed:
            assert await _killed_with(session) == names.CLOSE_SIGNED_OUT
        assert survivor.is_attached()
    finally:
        await close_browser(survivor)

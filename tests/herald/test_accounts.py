"""Account changes on the databases and Redis: what each commits, and which ones
announce that access shrank (the announcement router auth acts on)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from herald import names
from herald.access_events import AccessEvent, AccessEventKind, parse_access_event
from herald.accounts import AccountError, Accounts
from herald.db import session_factory
from herald.demo import load_demo_data
from herald.models import Course, CourseRole, Enrolment, User
from herald.sessions import SessionStore


class Announcements:
    """Everything published on the access events channel, in order."""

    def __init__(self, redis: Redis) -> None:
        self._pubsub = redis.pubsub()

    async def start(self) -> None:
        await self._pubsub.subscribe(names.ACCESS_EVENTS_CHANNEL)
        # Consume the confirmation, so drain() only ever sees published messages.
        confirmation = await self._pubsub.get_message(timeout=5)
        assert confirmation is not None and confirmation["type"] == "subscribe"

    async def drain(self) -> list[AccessEvent]:
        events = []
        # Published before this call returned, so they are already queued on the socket.
        while message := await self._pubsub.get_message(
            ignore_subscribe_messages=True, timeout=0.5
        ):
            event = parse_access_event(message["data"])
            assert event is not None
            events.append(event)
        return events

    async def close(self) -> None:
        await self._pubsub.aclose()


@pytest.fixture
async def heard(redis: Redis) -> AsyncIterator[Announcements]:
    announcements = Announcements(redis)
    await announcements.start()
    yield announcements
    await announcements.close()


@pytest.fixture
async def accounts(engine: AsyncEngine, redis: Redis) -> Accounts:
    sessions = session_factory(engine)
    await load_demo_data(sessions, "demo")
    return Accounts(sessions, redis, SessionStore(redis, session_ttl=600, ticket_ttl=60))


async def _user(accounts: Accounts, username: str) -> User:
    async with accounts.sessions() as db:
        user = await db.scalar(select(User).where(User.username == username))
        assert user is not None
        return user


async def _role(accounts: Accounts, username: str) -> CourseRole | None:
    async with accounts.sessions() as db:
        return await db.scalar(
            select(Enrolment.role)
            .join(User, User.id == Enrolment.user_id)
            .join(Course, Course.id == Enrolment.course_id)
            .where(User.username == username, Course.code == "DEMO101")
        )


async def test_disable_signs_out_everywhere_and_announces(
    accounts: Accounts, heard: Announcements
) -> None:
    bob = await _user(accounts, "bob")
    _token, first = await accounts.store.create(bob.id)
    _token, second = await accounts.store.create(bob.id)
    await accounts.set_active("bob", False)
    assert not (await _user(accounts, "bob")).is_active
    assert await accounts.store.get_by_digest(first.digest) is None
    assert await accounts.store.get_by_digest(second.digest) is None
    assert await heard.drain() == [AccessEvent(AccessEventKind.DISABLED, bob.id)]

    await accounts.set_active("bob", True)  # gaining access needs no announcement
    assert (await _user(accounts, "bob")).is_active
    assert await heard.drain() == []


async def test_sign_out_announces_its_web_session(redis: Redis, heard: Announcements) -> None:
    store = SessionStore(redis, session_ttl=600, ticket_ttl=60)
    _token, web = await store.create(7)
    await store.end(web)
    assert await heard.drain() == [AccessEvent(AccessEventKind.SIGNED_OUT, 7, web.digest)]


async def test_enrolment_changes_announce_only_when_access_shrinks(
    accounts: Accounts, heard: Announcements
) -> None:
    mark = await _user(accounts, "mark")
    await accounts.enrol("mark", "DEMO101", CourseRole.MARKER)  # unchanged
    assert await heard.drain() == []
    await accounts.enrol("mark", "DEMO101", CourseRole.STUDENT)
    assert await _role(accounts, "mark") is CourseRole.STUDENT
    assert await heard.drain() == [AccessEvent(AccessEventKind.ACCESS_CHANGED, mark.id)]

    await accounts.unenrol("mark", "DEMO101")
    assert await _role(accounts, "mark") is None
    assert await heard.drain() == [AccessEvent(AccessEventKind.ACCESS_CHANGED, mark.id)]
    await accounts.enrol("mark", "DEMO101", CourseRole.MARKER)  # a new enrolment
    assert await _role(accounts, "mark") is CourseRole.MARKER
    assert await heard.drain() == []

    ada = await _user(accounts, "ada")
    await accounts.set_admin("ada", True)  # already admin
    await accounts.set_admin("ada", False)
    assert not (await _user(accounts, "ada")).is_admin
    assert await heard.drain() == [AccessEvent(AccessEventKind.ACCESS_CHANGED, ada.id)]


async def test_unknown_names_are_clear_errors_and_change_nothing(
    accounts: Accounts, heard: Announcements
) -> None:
    with pytest.raises(AccountError, match="no user 'nobody'"):
        await accounts.set_active("nobody", False)
    with pytest.raises(AccountError, match="no course with code 'NOPE'"):
        await accounts.enrol("alice", "NOPE", CourseRole.STUDENT)
    await accounts.unenrol("alice", "DEMO101")
    with pytest.raises(AccountError, match="not enrolled"):
        await accounts.unenrol("alice", "DEMO101")
    await heard.drain()
    with pytest.raises(AccountError):
        await accounts.set_admin("nobody", True)
    assert await heard.drain() == []


def test_malformed_announcements_are_ignored() -> None:
    for raw in (b"", b"{", b"[]", b'{"kind": "nope", "user_id": 1}', b'{"kind": "disabled"}'):
        assert parse_access_event(raw) is None
    assert parse_access_event(b'{"kind": "disabled", "user_id": true}') is None
    assert parse_access_event(b'{"kind": "signed_out", "user_id": 1}') is None
    event = AccessEvent(AccessEventKind.SIGNED_OUT, 3, "abc")
    assert parse_access_event(event.to_json()) == event

"""The ticket authenticator against real Redis and the databases, without Crossbar."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from autobahn.wamp.exception import ApplicationError
from redis.asyncio import Redis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from herald import names
from herald.db import session_factory
from herald.models import User
from herald.sessions import SessionStore
from herald.settings import Settings
from router.authenticator import Authenticator
from router.service import redis_client
from tests.router.fixtures import World, build_world


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    return await build_world(session_factory(engine))


def _store(redis: Redis) -> SessionStore:
    return SessionStore(redis, session_ttl=600, ticket_ttl=60)


_wamp_ids = itertools.count(1_000)


def _details(ticket: object) -> dict[str, object]:
    """What Crossbar passes: the ticket and the joining WAMP session's id."""
    return {"ticket": ticket, "session": next(_wamp_ids)}


async def _refused(auth: Authenticator, details: dict[str, object], realm: str = "herald") -> None:
    with pytest.raises(ApplicationError) as caught:
        await auth(realm, "someone", details)
    assert caught.value.error == names.ERROR_AUTH_FAILED
    # The same generic words for every reason: the client learns nothing.
    assert caught.value.args == ("authentication failed",)


async def test_ticket_is_single_use_and_maps_to_its_user(
    engine: AsyncEngine, redis: Redis, world: World
) -> None:
    """A fresh ticket yields the user's browser role once; the same ticket again is refused."""
    store = _store(redis)
    auth = Authenticator(store, session_factory(engine))
    alice = world.users["alice"]
    _token, web = await store.create(alice.id)
    ticket = await store.issue_ticket(web)
    result = await auth(names.REALM, "claimed-anything", _details(ticket))
    assert result == {
        "realm": names.REALM,
        "authid": str(alice.id),
        "role": names.ROLE_BROWSER,
        "extra": {"user_id": alice.id, "username": "alice"},
    }
    await _refused(auth, _details(ticket))


async def test_bad_tickets_are_refused_generically(
    engine: AsyncEngine, redis: Redis, world: World
) -> None:
    """Forged, missing, non-string, ended-session, inactive-user, wrong-realm tickets all fail."""
    store = _store(redis)
    sessions = session_factory(engine)
    auth = Authenticator(store, sessions)
    await _refused(auth, _details("forged-" + "x" * 40))
    await _refused(auth, {"session": 1})
    # Without the WAMP session id the session could not be killed at sign-out: refused.
    _token, web = await store.create(world.uid("alice"))
    await _refused(auth, {"ticket": await store.issue_ticket(web)})
    await _refused(auth, _details(42))
    await _refused(auth, _details("y" * 10_000))

    _token, web = await store.create(world.uid("bob"))
    ticket = await store.issue_ticket(web)
    await store.end(web)
    await _refused(auth, _details(ticket))

    _token, web = await store.create(world.uid("zed"))
    await _refused(auth, _details(await store.issue_ticket(web)))

    _token, web = await store.create(world.uid("alice"))
    await _refused(auth, _details(await store.issue_ticket(web)), realm="other")

    # Deactivating an account takes effect at the next ticket.
    _token, web = await store.create(world.uid("mark"))
    ticket = await store.issue_ticket(web)
    async with sessions.begin() as db:
        await db.execute(update(User).where(User.id == world.uid("mark")).values(is_active=False))
    await _refused(auth, _details(ticket))


async def test_join_records_the_wamp_session_against_its_web_session(
    engine: AsyncEngine, redis: Redis, world: World
) -> None:
    """A join is recorded for sign-out; a web session ending mid-join refuses the join."""
    store = _store(redis)
    auth = Authenticator(store, session_factory(engine))
    _token, web = await store.create(world.uid("alice"))
    first, second = _details(await store.issue_ticket(web)), _details(await store.issue_ticket(web))
    await auth(names.REALM, "alice", first)
    await auth(names.REALM, "alice", second)
    assert await store.wamp_sessions_of(web.digest) == [first["session"], second["session"]]
    assert await store.wamp_sessions_live([first["session"], 424242]) == {
        first["session"]: True,
        424242: False,
    }

    # The recording and the liveness check are one transaction: a sign-out that
    # lands between redeeming and recording makes the join fail.
    _token, racing = await store.create(world.uid("bob"))
    await redis.delete(names.session_key(racing.digest))
    assert not await store.bind_wamp_session(racing.digest, 77)
    await store.end(web)
    assert await store.wamp_sessions_live([first["session"]]) == {first["session"]: False}


async def test_a_burst_of_joins_waits_for_redis_instead_of_failing(
    settings: Settings, engine: AsyncEngine, redis: Redis, world: World
) -> None:
    """300 joins at once all succeed on router auth's client (more than redis-py's 100)."""
    client = redis_client(settings)
    try:
        store = _store(client)
        auth = Authenticator(store, session_factory(engine))
        tickets = []
        for _ in range(300):
            _token, web = await _store(redis).create(world.uid("alice"))
            tickets.append(await store.issue_ticket(web))
        results = await asyncio.gather(
            *(auth(names.REALM, "alice", _details(ticket)) for ticket in tickets)
        )
        assert {r["authid"] for r in results} == {str(world.uid("alice"))}
    finally:
        await client.aclose()

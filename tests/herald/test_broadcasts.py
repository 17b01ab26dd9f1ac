"""Broadcasts on both databases: what may be sent, who gets what until when, that
acknowledging is once per reader, and that sending stores one row then publishes."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from redis.asyncio import Redis
from sqlalchemy import func, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from herald.broadcasts import (
    MAX_TEXT,
    BroadcastError,
    Notice,
    UnknownCourse,
    ack_all_broadcasts,
    ack_broadcast,
    audience,
    count_unseen,
    parse_audience,
    send_broadcast,
    unseen_broadcasts,
)
from herald.db import session_factory
from herald.events import EventPublisher
from herald.migrate import alembic_config, upgrade_async
from herald.models import (
    Broadcast,
    BroadcastAck,
    BroadcastLevel,
    Course,
    CourseRole,
    Enrolment,
    User,
    utcnow,
)
from herald.names import BROADCAST, course_topic

# --- what may be sent ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"text": ""}, "text must be 1 to 2000"),
        ({"text": "   \n"}, "text must be 1 to 2000"),
        ({"text": "x" * (MAX_TEXT + 1)}, "text must be 1 to 2000"),
        ({"text": 7}, "text must be"),
        ({"text": "hi", "level": "shout"}, "level must be one of info, warning, urgent"),
        ({"text": "hi", "level": "success"}, "level must be one of"),
        ({"text": "hi", "link": "https://evil.test/"}, "link must be a path on this site"),
        ({"text": "hi", "link": "//evil.test/"}, "link must be a path"),
        ({"text": "hi", "link": "/\\evil.test/"}, "link must be a path"),
        ({"text": "hi", "link": "/\t/evil.test/"}, "link must be a path"),
        ({"text": "hi", "link": "javascript:alert(1)"}, "link must be a path"),
        ({"text": "hi", "link": "/" + "a" * 1024}, "link must be a path"),
        ({"text": "hi", "link": 5}, "link must be a path"),
        ({"text": "hi", "course_id": 0}, "course_id"),
        ({"text": "hi", "course_id": "3"}, "course_id"),
        ({"text": "hi", "expires_at": datetime(2030, 1, 1)}, "with its zone"),
        ({"text": "hi", "expires_at": "tomorrow"}, "with its zone"),
        ({"text": "hi", "expires_at": datetime(2020, 1, 1, tzinfo=UTC)}, "in the future"),
        ({"text": "hi", "expires_at": utcnow() + timedelta(days=31)}, "within 30 days"),
    ],
)
def test_bad_broadcasts_are_refused(fields: dict[str, object], message: str) -> None:
    """Empty or long text, unknown levels, off-site links, and an expiry that is zoneless,
    past or over 30 days away are refused before anything is stored."""
    with pytest.raises(BroadcastError, match=message):
        Notice(**fields)  # type: ignore[arg-type]


def test_a_good_notice_passes() -> None:
    """Every level, a local link and an expiry within the bound are accepted."""
    for level in ("info", "warning", "urgent"):
        Notice("Library closes at 18:00", level=level, link="/assignments/1?x=1#y")
    Notice("hi", expires_at=utcnow() + timedelta(days=29), course_id=3)


@pytest.mark.parametrize(
    ("raw", "expected"), [("all", None), ("course:1", 1), ("course:2147483647", 2147483647)]
)
def test_audience_is_everyone_or_one_course(raw: str, expected: int | None) -> None:
    """ "all" is everyone, "course:{id}" one course, and the wire form goes back the same."""
    assert parse_audience(raw) == expected
    assert audience(expected) == raw


@pytest.mark.parametrize(
    "raw",
    ["everyone", "ALL", "course:", "course:0", "course:01", "course:x", "course:2147483648",
     "course:1 ", "course:١", None, 3, ["all"]],
)  # fmt: skip
def test_other_audiences_are_refused(raw: object) -> None:
    """Anything but exactly "all" or "course:{canonical id}" is refused."""
    with pytest.raises(BroadcastError, match="audience must be"):
        parse_audience(raw)


# --- who gets what ------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    sessions: async_sessionmaker[AsyncSession]
    alice: int  # student of course a
    bob: int  # student of course b
    mark: int  # marker of both
    ada: int  # site admin, enrolled in nothing
    a: int
    b: int


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    sessions = session_factory(engine)
    async with sessions.begin() as db:
        a, b = Course(code="A101", title="A"), Course(code="B202", title="B")
        users = {
            name: User(username=name, display_name=name, password_hash="x", is_admin=name == "ada")
            for name in ("alice", "bob", "mark", "ada")
        }
        db.add_all([a, b, *users.values()])
        db.add_all(
            [
                Enrolment(user=users["alice"], course=a, role=CourseRole.STUDENT),
                Enrolment(user=users["bob"], course=b, role=CourseRole.STUDENT),
                Enrolment(user=users["mark"], course=a, role=CourseRole.MARKER),
                Enrolment(user=users["mark"], course=b, role=CourseRole.MARKER),
            ]
        )
        await db.flush()
        ids = {name: user.id for name, user in users.items()}
        return World(sessions, a=a.id, b=b.id, **ids)


async def _add(world: World, text: str, course_id: int | None = None, **fields: object) -> int:
    async with world.sessions.begin() as db:
        broadcast = Broadcast(
            course_id=course_id,
            level=BroadcastLevel.INFO,
            text=text,
            expires_at=fields.pop("expires_at", utcnow() + timedelta(days=1)),
        )
        for name, value in fields.items():
            setattr(broadcast, name, value)
        db.add(broadcast)
        await db.flush()
        return broadcast.id


async def _unseen(world: World, user_id: int) -> list[str]:
    async with world.sessions() as db:
        texts = [b.text for b in await unseen_broadcasts(db, user_id)]
        assert await count_unseen(db, user_id) == len(texts)
        return texts


async def test_audience_expiry_and_acks_decide_who_sees_what(world: World) -> None:
    """Everyone gets a broadcast to all; a course's broadcast reaches only its members
    (an admin enrolled in nothing does not get it); expired ones reach nobody; one
    acknowledged by a reader is gone for that reader only; newest first."""
    now = utcnow()
    await _add(world, "to all", created_at=now - timedelta(minutes=2))
    await _add(world, "to A", world.a, created_at=now - timedelta(minutes=1))
    await _add(world, "to B", world.b, created_at=now)
    await _add(world, "expired", expires_at=now - timedelta(seconds=1))
    await _add(world, "expired in A", world.a, expires_at=now - timedelta(seconds=1))

    assert await _unseen(world, world.alice) == ["to A", "to all"]
    assert await _unseen(world, world.bob) == ["to B", "to all"]
    assert await _unseen(world, world.mark) == ["to B", "to A", "to all"]
    assert await _unseen(world, world.ada) == ["to all"]

    async with world.sessions.begin() as db:
        (to_all,) = [b.id for b in await unseen_broadcasts(db, world.ada)]
        assert await ack_broadcast(db, world.alice, to_all) is True
    assert await _unseen(world, world.alice) == ["to A"]
    assert await _unseen(world, world.bob) == ["to B", "to all"]


async def test_acknowledging_is_once_per_reader_and_only_in_the_audience(world: World) -> None:
    """The first acknowledgement records, a second is a no-op; anyone outside the
    audience and an unknown id get None (the API's 404)."""
    to_a = await _add(world, "to A", world.a)
    expired = await _add(world, "old", world.a, expires_at=utcnow() - timedelta(hours=1))
    async with world.sessions.begin() as db:
        assert await ack_broadcast(db, world.alice, to_a) is True
        assert await ack_broadcast(db, world.alice, to_a) is False
        assert await ack_broadcast(db, world.bob, to_a) is None
        assert await ack_broadcast(db, world.ada, to_a) is None
        assert await ack_broadcast(db, world.alice, 999_999) is None
        # Still in the audience once expired: a page that saw it just then may say so.
        assert await ack_broadcast(db, world.alice, expired) is True
    async with world.sessions() as db:
        acks = await db.scalar(select(func.count()).select_from(BroadcastAck))
    assert acks == 2


async def test_two_acknowledgements_at_once_both_succeed_once(world: World) -> None:
    """Two tabs acknowledging the same broadcast concurrently: no error, one row."""
    to_all = await _add(world, "to all")

    async def ack() -> bool | None:
        async with world.sessions.begin() as db:
            return await ack_broadcast(db, world.bob, to_all)

    results = await asyncio.gather(ack(), ack())
    assert sorted(map(bool, results)) == [False, True]
    async with world.sessions() as db:
        assert await db.scalar(select(func.count()).select_from(BroadcastAck)) == 1


async def test_ack_all_acknowledges_the_unseen_ones(world: World) -> None:
    """Mark all as read: every unseen broadcast of the reader, reported once."""
    first = await _add(world, "to all")
    second = await _add(world, "to A", world.a)
    await _add(world, "to B", world.b)
    async with world.sessions.begin() as db:
        assert await ack_broadcast(db, world.alice, first) is True
        assert await ack_all_broadcasts(db, world.alice) == [second]
        assert await ack_all_broadcasts(db, world.alice) == []
    assert await _unseen(world, world.alice) == []


# --- sending ----------------------------------------------------------------------


async def _listen(redis: Redis, *channels: str):  # type: ignore[no-untyped-def]
    pubsub = redis.pubsub()
    await pubsub.subscribe(*channels)
    for _ in channels:
        assert (await pubsub.get_message(timeout=5)) is not None  # the confirmations
    return pubsub


async def test_send_stores_one_row_then_publishes_to_its_audience(
    world: World, redis: Redis
) -> None:
    """A course broadcast is one row, published on course.{id} as a `broadcast` event
    with its JSON; a broadcast to all goes on `broadcast`, expiring after 7 days."""
    pubsub = await _listen(redis, BROADCAST, course_topic(world.a))
    publisher = EventPublisher(redis)
    expires = (utcnow() + timedelta(hours=2)).replace(microsecond=0)
    sent = await send_broadcast(
        world.sessions,
        publisher,
        Notice("Lab moved <b>to</b> room 2", level="urgent", link="/", course_id=world.a,
               expires_at=expires),
        sender_id=world.ada,
    )  # fmt: skip
    event = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    assert event is not None
    envelope = json.loads(event["data"])
    assert (envelope["topic"], envelope["type"]) == (course_topic(world.a), "broadcast")
    assert envelope["data"] == sent
    assert sent["text"] == "Lab moved <b>to</b> room 2"
    assert sent["audience"] == f"course:{world.a}"
    assert sent["options"] == {"modal": True}
    assert sent["ack_url"] == f"/api/broadcasts/{sent['id']}/ack"
    assert sent["expires_at"] == expires.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    everyone = await send_broadcast(world.sessions, publisher, Notice("Hi all"), sender_id=None)
    event = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    assert event is not None
    assert json.loads(event["data"])["topic"] == BROADCAST
    async with world.sessions() as db:
        assert await db.scalar(select(func.count()).select_from(Broadcast)) == 2
        row = await db.get(Broadcast, everyone["id"])
        assert row is not None and row.course_id is None and row.created_by is None
        ttl = row.expires_at - row.created_at
        assert ttl == timedelta(days=7)
    await pubsub.aclose()


async def test_unknown_course_stores_and_publishes_nothing(world: World, redis: Redis) -> None:
    """A broadcast to a course that does not exist is refused before anything happens."""
    pubsub = await _listen(redis, course_topic(999_999))
    with pytest.raises(UnknownCourse):
        await send_broadcast(
            world.sessions, EventPublisher(redis), Notice("x", course_id=999_999), sender_id=None
        )
    assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5) is None
    async with world.sessions() as db:
        assert await db.scalar(select(func.count()).select_from(Broadcast)) == 0
    await pubsub.aclose()


async def test_broadcasts_migration_goes_down_and_up(
    engine: AsyncEngine, database_url: str
) -> None:
    """0007 can be undone and redone: the two tables go and come back."""

    def tables(connection):  # type: ignore[no-untyped-def]
        return set(inspect(connection).get_table_names())

    await engine.dispose()
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0006")
    async with engine.connect() as connection:
        assert {"broadcasts", "broadcast_acks"}.isdisjoint(await connection.run_sync(tables))
    await engine.dispose()
    await upgrade_async(database_url)
    async with engine.connect() as connection:
        assert {"broadcasts", "broadcast_acks"} <= await connection.run_sync(tables)

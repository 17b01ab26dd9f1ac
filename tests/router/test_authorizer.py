"""The authorizer's decision table, on SQLite and PostgreSQL, without Crossbar."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from herald import names
from herald.db import session_factory
from router.authorizer import MAX_URI_LENGTH, Authorizer, authorize
from tests.router.fixtures import World, build_world

VIEWERS = ("alice", "bob", "mark", "ada")
OTHER_ACTIONS = ("publish", "call", "register")

# topic (built from the world) -> the viewers allowed to subscribe to it exactly.
TABLE: list[tuple[str, Callable[[World], str], set[str]]] = [
    ("own user", lambda w: names.user_topic(w.uid("alice")), {"alice"}),
    ("other user", lambda w: names.user_topic(w.uid("bob")), {"bob"}),
    ("unrelated user", lambda w: names.user_topic(w.uid("carol")), set()),
    ("unknown user", lambda w: names.user_topic(999_999), set()),
    (
        "own submission",
        lambda w: names.submission_topic(w.alice_submission),
        {"alice", "mark", "ada"},
    ),
    (
        "classmate's submission",
        lambda w: names.submission_topic(w.bob_submission),
        {"bob", "mark", "ada"},
    ),
    ("other course's submission", lambda w: names.submission_topic(w.carol_submission), {"ada"}),
    ("unknown submission", lambda w: names.submission_topic(999_999), set()),
    ("own assignment", lambda w: names.assignment_topic(w.demo_assignment), set(VIEWERS)),
    ("other course's assignment", lambda w: names.assignment_topic(w.other_assignment), {"ada"}),
    ("unknown assignment", lambda w: names.assignment_topic(999_999), set()),
    ("own course", lambda w: names.course_topic(w.demo_course), set(VIEWERS)),
    ("other course", lambda w: names.course_topic(w.other_course), {"ada"}),
    # Site admins may view any course id, as herald.access decides for pages too.
    ("unknown course", lambda w: names.course_topic(999_999), {"ada"}),
    ("broadcast", lambda w: names.BROADCAST, set(VIEWERS)),
    ("admin tasks", lambda w: names.ADMIN_TASKS, {"ada"}),
]


def _arabic_digits(number: int) -> str:
    return "".join(chr(0x660 + int(c)) for c in str(number))


# Topics no browser may subscribe to whoever it is; built from alice's own ids.
HOSTILE: list[Callable[[World], str]] = [
    lambda w: "submission.",
    lambda w: "submission",
    lambda w: f"submission.{w.alice_submission}.x",
    lambda w: f"submission.0{w.alice_submission}",
    lambda w: f"submission.+{w.alice_submission}",
    lambda w: f"submission.-{w.alice_submission}",
    lambda w: f"submission. {w.alice_submission}",
    lambda w: f"submission.{w.alice_submission} ",
    lambda w: f"submission.{w.alice_submission}\n",
    lambda w: f"submission.{_arabic_digits(w.alice_submission)}",
    lambda w: f"submission.{w.alice_submission:_>3}".replace("_", "0"),
    lambda w: "submission." + "1" * 5000,
    lambda w: "submission.1" + "0" * (MAX_URI_LENGTH + 10),
    lambda w: f"user.{w.uid('alice')}.tasks",
    lambda w: f"user.0{w.uid('alice')}",
    lambda w: f"User.{w.uid('alice')}",
    lambda w: "user.*",
    lambda w: "user.",
    lambda w: "user..",
    lambda w: "broadcast.x",
    lambda w: "broadcast ",
    lambda w: "admin.tasks.x",
    lambda w: "admin",
    lambda w: "",
    lambda w: "herald.auth.authorize",
    lambda w: names.PROC_AUTHENTICATE,
    lambda w: "wamp.session.kill_by_authid",
]


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    return await build_world(session_factory(engine))


async def test_subscribe_decision_table(engine: AsyncEngine, world: World) -> None:
    """Every topic family allows an exact subscribe to exactly the viewers DESIGN.md names."""
    sessions = session_factory(engine)
    async with sessions() as db:
        for label, make_topic, allowed in TABLE:
            topic = make_topic(world)
            for viewer in VIEWERS:
                user = world.users[viewer]
                got = await authorize(db, user, topic, "subscribe", {"match": "exact"})
                assert got is (viewer in allowed), (label, topic, viewer)
                # No match option means exact, the WAMP default.
                assert await authorize(db, user, topic, "subscribe", {}) is got, (label, viewer)


async def test_browsers_never_publish_call_or_register(engine: AsyncEngine, world: World) -> None:
    """Publish, call and register are refused on every topic, even one the user may subscribe to."""
    sessions = session_factory(engine)
    async with sessions() as db:
        for label, make_topic, _allowed in TABLE:
            topic = make_topic(world)
            for viewer in VIEWERS:
                for action in OTHER_ACTIONS:
                    got = await authorize(db, world.users[viewer], topic, action, {})
                    assert got is False, (label, viewer, action)
        for proc in (names.PROC_AUTHENTICATE, names.PROC_AUTHORIZE):
            for action in ("call", "register"):
                assert not await authorize(db, world.users["ada"], proc, action, {})


async def test_prefix_and_wildcard_subscriptions_are_refused(
    engine: AsyncEngine, world: World
) -> None:
    """A subscribe with match prefix or wildcard is refused even on the user's own topics."""
    sessions = session_factory(engine)
    own = [
        names.user_topic(world.uid("alice")),
        names.submission_topic(world.alice_submission),
        names.BROADCAST,
        "user.",
        "user..",
        "",
    ]
    async with sessions() as db:
        for topic in own:
            for match in ("prefix", "wildcard", "EXACT", "", None):
                options = {"match": match}
                got = await authorize(db, world.users["alice"], topic, "subscribe", options)
                assert got is False, (topic, match)
        assert not await authorize(
            db, world.users["ada"], names.ADMIN_TASKS, "subscribe", {"match": "prefix"}
        )


async def test_hostile_topic_strings_are_refused(engine: AsyncEngine, world: World) -> None:
    """Malformed, non-canonical, over-long and unicode-digit topics are refused for everyone."""
    sessions = session_factory(engine)
    async with sessions() as db:
        for make_topic in HOSTILE:
            topic = make_topic(world)
            for viewer in VIEWERS:
                got = await authorize(db, world.users[viewer], topic, "subscribe", {})
                assert got is False, (topic[:60], viewer)


async def test_inactive_or_missing_user_is_refused(engine: AsyncEngine, world: World) -> None:
    """An inactive account or no account is refused even broadcast and its own user topic."""
    sessions = session_factory(engine)
    zed = world.users["zed"]
    async with sessions() as db:
        for topic in (
            names.BROADCAST,
            names.user_topic(zed.id),
            names.course_topic(world.demo_course),
        ):
            assert not await authorize(db, zed, topic, "subscribe", {})
            assert not await authorize(db, None, topic, "subscribe", {})


async def test_procedure_checks_role_and_authid_and_never_lets_crossbar_cache(
    engine: AsyncEngine, world: World
) -> None:
    """The procedure answers allow/disclose only (no "cache" for Crossbar), from the authid."""
    procedure = Authorizer(session_factory(engine))
    alice = world.uid("alice")

    def session(authid: object, role: str = names.ROLE_BROWSER) -> dict[str, object]:
        return {"session": 1, "authid": authid, "authrole": role}

    own = names.user_topic(alice)
    assert await procedure(session(str(alice)), own, "subscribe", {}) == {
        "allow": True,
        "disclose": False,
    }
    denied = {"allow": False, "disclose": False}
    assert await procedure(session(str(world.uid("bob"))), own, "subscribe", {}) == denied
    assert await procedure(session(str(alice), names.ROLE_BACKEND), own, "subscribe", {}) == denied
    for authid in (None, "", "alice", f"0{alice}", f"{alice} ", _arabic_digits(alice), alice):
        assert await procedure(session(authid), own, "subscribe", {}) == denied, authid
    assert await procedure(session(str(world.uid("zed"))), names.BROADCAST, "subscribe", {}) == (
        denied
    )

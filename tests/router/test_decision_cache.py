"""The authorizer's own decision cache: per authid, allows only, expiring, bounded,
and dropped for a user the moment their access shrinks; and the active users it
keeps so a join's subscribes need not read the user again."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from sqlalchemy import delete, event, update
from sqlalchemy.ext.asyncio import AsyncEngine

from herald import names
from herald.db import session_factory
from herald.models import Enrolment, User
from herald.sessions import SessionStore
from router.authenticator import Authenticator
from router.authorizer import Authorizer, needs_db
from router.decision_cache import DecisionCache
from tests.router.fixtures import World, build_world


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_allows_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = DecisionCache(ttl=30, clock=clock)
    cache.remember_allow("7", "user.7", "subscribe")
    assert cache.allowed("7", "user.7", "subscribe")
    assert not cache.allowed("8", "user.7", "subscribe")  # the authid is part of the key
    assert not cache.allowed("7", "user.7", "publish")
    clock.now += 29.9
    assert cache.allowed("7", "user.7", "subscribe")
    clock.now += 0.2
    assert not cache.allowed("7", "user.7", "subscribe")
    assert len(cache) == 0
    assert (cache.stats.hits, cache.stats.misses) == (2, 3)


def test_size_is_bounded_least_recently_used_first() -> None:
    cache = DecisionCache(max_entries=3)
    for topic in ("a", "b", "c"):
        cache.remember_allow("1", topic, "subscribe")
    assert cache.allowed("1", "a", "subscribe")  # "a" is now the most recent
    cache.remember_allow("1", "d", "subscribe")
    assert len(cache) == 3
    assert not cache.allowed("1", "b", "subscribe")
    assert all(cache.allowed("1", topic, "subscribe") for topic in ("a", "c", "d"))


def test_forget_user_drops_only_that_user() -> None:
    cache = DecisionCache()
    cache.remember_allow("1", "course.1", "subscribe")
    cache.remember_allow("1", "user.1", "subscribe")
    cache.remember_allow("2", "course.1", "subscribe")
    assert cache.forget_user("1") == 2
    assert not cache.allowed("1", "course.1", "subscribe")
    assert cache.allowed("2", "course.1", "subscribe")
    assert cache.forget_user("1") == 0
    cache.clear()
    assert len(cache) == 0


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        DecisionCache(ttl=0)
    with pytest.raises(ValueError):
        DecisionCache(max_entries=0)


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    return await build_world(session_factory(engine))


def _session(user_id: int) -> dict[str, object]:
    return {"session": 1, "authid": str(user_id), "authrole": names.ROLE_BROWSER}


async def test_authorizer_serves_allows_from_cache_until_told(
    engine: AsyncEngine, world: World
) -> None:
    """A cached allow outlives an unannounced change; forget_user (the announcement) ends it."""
    sessions = session_factory(engine)
    authorizer = Authorizer(sessions, cache=DecisionCache())
    bob = world.uid("bob")
    course = names.course_topic(world.demo_course)
    assert (await authorizer(_session(bob), course, "subscribe", {}))["allow"]
    async with sessions.begin() as db:
        await db.execute(delete(Enrolment).where(Enrolment.user_id == bob))
    # Proof the answer came from the cache: the DB already says no.
    assert (await authorizer(_session(bob), course, "subscribe", {}))["allow"]
    authorizer.cache.forget_user(str(bob))
    assert not (await authorizer(_session(bob), course, "subscribe", {}))["allow"]


async def test_authorizer_never_caches_denials_or_non_exact_matches(
    engine: AsyncEngine, world: World
) -> None:
    """A deny is asked again (a right granted a second ago works at once); prefix never hits."""
    sessions = session_factory(engine)
    authorizer = Authorizer(sessions, cache=DecisionCache())
    zed = world.uid("zed")  # inactive: denied everything
    broadcast = names.BROADCAST
    assert not (await authorizer(_session(zed), broadcast, "subscribe", {}))["allow"]
    async with sessions.begin() as db:
        await db.execute(update(User).where(User.id == zed).values(is_active=True))
    assert (await authorizer(_session(zed), broadcast, "subscribe", {}))["allow"]

    # A cached exact allow must not answer a prefix request for the same URI.
    prefix = {"match": "prefix"}
    assert not (await authorizer(_session(zed), broadcast, "subscribe", prefix))["allow"]
    assert len(authorizer.cache) == 1


def test_users_expire_are_bounded_and_forgotten_with_their_decisions() -> None:
    """A kept user expires with the TTL, the oldest goes first, forget_user and clear drop it."""
    clock = Clock()
    cache = DecisionCache(ttl=30, max_entries=2, clock=clock)
    alice, bob, carol = (User(id=i, username=n) for i, n in ((1, "a"), (2, "b"), (3, "c")))
    cache.remember_user("1", alice)
    assert cache.user("1") is alice
    assert cache.user("2") is None
    clock.now += 30.1
    assert cache.user("1") is None
    for user in (alice, bob, carol):
        cache.remember_user(str(user.id), user)
    assert cache.user("1") is None  # the least recently used went
    assert cache.user("2") is bob and cache.user("3") is carol
    cache.forget_user("2")
    assert cache.user("2") is None and cache.user("3") is carol
    cache.clear()
    assert cache.user("3") is None


def test_nothing_is_stored_across_an_invalidation() -> None:
    """An answer read from the DB before an announcement is not kept after it."""
    cache = DecisionCache()
    before = cache.epoch
    cache.forget_user("9")  # announced while the caller was reading the DB
    cache.remember_user("1", User(id=1, username="a"), epoch=before)
    cache.remember_allow("1", "user.1", "subscribe", epoch=before)
    assert cache.user("1") is None
    assert not cache.allowed("1", "user.1", "subscribe")
    now = cache.epoch
    cache.remember_user("1", User(id=1, username="a"), epoch=now)
    cache.remember_allow("1", "user.1", "subscribe", epoch=now)
    assert cache.user("1") is not None
    assert cache.allowed("1", "user.1", "subscribe")


class StatementCounter:
    """Counts the SQL statements an engine runs (its real cursor executions)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args: object) -> None:
        self.count += 1


async def test_the_authenticated_user_serves_the_subscribes_that_follow(
    engine: AsyncEngine, redis: Redis, world: World
) -> None:
    """After a join, the own-topic and broadcast subscribes read no DB; a submission reads once."""
    sessions = session_factory(engine)
    cache = DecisionCache()
    store = SessionStore(redis, session_ttl=600, ticket_ttl=60)
    authenticate = Authenticator(store, sessions, cache=cache)
    authorizer = Authorizer(sessions, cache=cache)
    alice = world.uid("alice")
    _token, web = await store.create(alice)
    await authenticate(
        names.REALM, "alice", {"ticket": await store.issue_ticket(web), "session": 5}
    )
    counter = StatementCounter(engine)
    assert (await authorizer(_session(alice), names.user_topic(alice), "subscribe", {}))["allow"]
    assert (await authorizer(_session(alice), names.BROADCAST, "subscribe", {}))["allow"]
    assert counter.count == 0
    own = names.submission_topic(world.alice_submission)
    assert (await authorizer(_session(alice), own, "subscribe", {}))["allow"]
    assert counter.count == 1
    # Another user's topic is refused; a deny is checked against a fresh row.
    other = names.user_topic(world.uid("bob"))
    assert not (await authorizer(_session(alice), other, "subscribe", {}))["allow"]
    assert counter.count == 2


async def test_a_right_granted_since_the_row_was_kept_works_at_once(
    engine: AsyncEngine, world: World
) -> None:
    """Made admin without an announcement, a user may subscribe to admin.tasks at once."""
    sessions = session_factory(engine)
    authorizer = Authorizer(sessions, cache=DecisionCache())
    bob = world.uid("bob")
    assert (await authorizer(_session(bob), names.BROADCAST, "subscribe", {}))["allow"]
    assert not (await authorizer(_session(bob), names.ADMIN_TASKS, "subscribe", {}))["allow"]
    async with sessions.begin() as db:
        await db.execute(update(User).where(User.id == bob).values(is_admin=True))
    assert (await authorizer(_session(bob), names.ADMIN_TASKS, "subscribe", {}))["allow"]


async def test_a_disabled_account_is_read_again_once_announced(
    engine: AsyncEngine, world: World
) -> None:
    """forget_user (a disabled account's announcement) drops the kept row: the DB refuses."""
    sessions = session_factory(engine)
    authorizer = Authorizer(sessions, cache=DecisionCache())
    bob = world.uid("bob")
    assert (await authorizer(_session(bob), names.BROADCAST, "subscribe", {}))["allow"]
    assert authorizer.cache.user(str(bob)) is not None
    async with sessions.begin() as db:
        await db.execute(update(User).where(User.id == bob).values(is_active=False))
    authorizer.cache.forget_user(str(bob))
    assert not (await authorizer(_session(bob), names.user_topic(bob), "subscribe", {}))["allow"]
    assert authorizer.cache.user(str(bob)) is None  # inactive users are never kept


def test_needs_db_only_for_rows_behind_the_topic() -> None:
    """The DB is needed for submission, assignment and course topics only."""
    assert needs_db("submission.4", "subscribe", {})
    assert needs_db("assignment.4", "subscribe", {})
    assert needs_db("course.4", "subscribe", {})
    assert not needs_db("user.4", "subscribe", {})
    assert not needs_db(names.BROADCAST, "subscribe", {})
    assert not needs_db(names.ADMIN_TASKS, "subscribe", {})
    assert not needs_db("submission.4", "publish", {})
    assert not needs_db("submission.4", "subscribe", {"match": "prefix"})
    assert not needs_db("submission." + "9" * 300, "subscribe", {})

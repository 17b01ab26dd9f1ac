"""The authorizer's own decision cache: per authid, allows only, expiring, bounded,
and dropped for a user the moment their access shrinks."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncEngine

from herald import names
from herald.db import session_factory
from herald.models import Enrolment, User
from router.authorizer import Authorizer
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

"""The Redis queue's guarantees, on a real Redis: ordering, leases, fencing, recovery."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from herald import names
from workers.queue import CancelOutcome, Job, LeaseState, RedisQueue


async def _ids(queue: RedisQueue, name: str, count: int = 100) -> list[str]:
    return [lease.id for lease in await queue.claim(name, "w1", count, 30)]


async def _settings(
    queue: RedisQueue,
    name: str,
    *,
    paused: bool = False,
    max_active: int | None = None,
    immediate: bool = False,
) -> None:
    await queue.apply_settings(
        name, paused=paused, max_active=max_active, window=None, immediate=immediate
    )


async def test_priority_first_then_fifo(redis: Redis) -> None:
    """Higher priority runs first; equal priorities run in arrival order."""
    queue = RedisQueue(redis)
    await queue.enqueue(
        Job("a", "k", "q", priority=0),
        Job("b", "k", "q", priority=5),
        Job("c", "k", "q", priority=0),
        Job("d", "k", "q", priority=-3),
        Job("e", "k", "q", priority=5),
    )
    assert await _ids(queue, "q") == ["b", "e", "a", "c", "d"]


async def test_enqueue_is_idempotent_while_the_job_exists(redis: Redis) -> None:
    """Enqueuing a job id that is waiting or running changes nothing, not even its token."""
    queue = RedisQueue(redis)
    await queue.enqueue(Job("a", "k", "q"))
    await queue.enqueue(Job("a", "k", "q"))
    assert await queue.depth("q") == 1
    [lease] = await queue.claim("q", "w1", 10, 30)
    await queue.enqueue(Job("a", "k", "q"))
    assert await queue.depth("q") == 0
    assert await queue.complete(lease) == [True]


async def test_a_job_leaves_redis_only_when_completed(redis: Redis) -> None:
    """Claiming leases a job; completing it removes every trace of it."""
    queue = RedisQueue(redis)
    await queue.enqueue(Job("a", "k", "q"))
    [lease] = await queue.claim("q", "w1", 10, 30)
    assert await redis.exists(names.job_key("a"))
    assert await redis.zscore(names.queue_leases_key("q"), "a") is not None
    assert await queue.complete(lease) == [True]
    assert not await redis.exists(names.job_key("a"))
    assert await redis.zcard(names.queue_leases_key("q")) == 0


async def test_expired_lease_is_recovered_and_fenced(redis: Redis) -> None:
    """A dead worker's job returns to the queue; its stale lease can neither renew nor complete."""
    queue = RedisQueue(redis)
    await queue.enqueue(Job("a", "k", "q"))
    [dead] = await queue.claim("q", "dead-worker", 10, lease_seconds=0.05)
    await asyncio.sleep(0.1)  # let the lease run out: this is the clock under test
    assert await queue.reap("q") == ["a"]
    [alive] = await queue.claim("q", "w2", 10, 30)
    assert alive.attempts == 2 and alive.token != dead.token
    assert await queue.heartbeat([dead, alive], 30) == [LeaseState.LOST, LeaseState.HELD]
    assert await queue.complete(dead, alive) == [False, True]


async def test_release_hands_the_job_back_in_its_place(redis: Redis) -> None:
    """A released job (shutdown) is claimable again, ahead of later arrivals of its priority."""
    queue = RedisQueue(redis)
    await queue.enqueue(Job("a", "k", "q"), Job("b", "k", "q"))
    [lease] = await queue.claim("q", "w1", 1, 30)
    assert lease.id == "a"
    assert await queue.release(lease)
    assert not await queue.release(lease)  # no longer held
    assert await _ids(queue, "q") == ["a", "b"]


async def test_paused_queue_hands_out_nothing_until_resumed(redis: Redis) -> None:
    """While paused, claims return nothing and jobs wait; resuming drains them."""
    queue = RedisQueue(redis)
    await _settings(queue, "q", paused=True)
    await queue.enqueue(Job("a", "k", "q"))
    assert await queue.claim("q", "w1", 10, 30) == []
    await _settings(queue, "q", paused=False)
    assert await _ids(queue, "q") == ["a"]


async def test_wait_wakes_on_enqueue(redis: Redis) -> None:
    """A worker blocked on an empty queue wakes when a job arrives, not at its timeout."""
    queue = RedisQueue(redis)
    waiter = asyncio.create_task(queue.wait(["q"], seconds=30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await queue.enqueue(Job("a", "k", "q"))
    await asyncio.wait_for(waiter, 5)


def test_priority_is_bounded() -> None:
    """Priorities outside -100..100 are refused (they would break the score's ordering)."""
    with pytest.raises(ValueError, match="priority"):
        Job("a", "k", "q", priority=101)


async def test_delayed_release_waits_in_redis_until_due(redis: Redis) -> None:
    """A retry's backoff keeps the job in Redis's delayed set until due, then it is claimable."""
    queue = RedisQueue(redis)
    await queue.enqueue(Job("a", "k", "q"))
    [lease] = await queue.claim("q", "w1", 10, 30)
    assert await queue.release(lease, delay_seconds=0.2)
    assert await redis.zscore(names.queue_delayed_key("q"), "a") is not None
    assert await queue.promote("q") == 0
    assert await queue.claim("q", "w1", 10, 30) == []
    await asyncio.sleep(0.25)  # the backoff under test
    assert await queue.promote("q") == 1
    [again] = await queue.claim("q", "w1", 10, 30)
    assert again.id == "a" and again.attempts == 2


async def test_enqueue_at_a_future_time(redis: Redis) -> None:
    """A job enqueued for a later time is not handed out before it; a past time means now."""
    queue = RedisQueue(redis)
    now = time.time()
    await queue.enqueue(Job("later", "k", "q"), at=now + 3600)
    await queue.enqueue(Job("past", "k", "q"), at=now - 10)
    await queue.promote("q")
    assert await _ids(queue, "q") == ["past"]
    assert await redis.zscore(names.queue_delayed_key("q"), "later") is not None


async def test_worker_refuses_a_redis_that_evicts_any_key(redis: Redis) -> None:
    """With maxmemory-policy allkeys-lru a worker refuses to start; noeviction is accepted."""
    from workers.worker import UnsafeRedis, check_redis_keeps_jobs

    await redis.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(UnsafeRedis, match="allkeys-lru"):
            await check_redis_keeps_jobs(redis)
    finally:
        await redis.config_set("maxmemory-policy", "noeviction")
    await check_redis_keeps_jobs(redis)


async def test_max_active_caps_running_jobs_across_workers(redis: Redis) -> None:
    """With max_active=2, claims by any number of workers hold at most 2 leases at once;
    finishing one frees its slot."""
    queue = RedisQueue(redis)
    await _settings(queue, "q", max_active=2)
    await queue.enqueue(*(Job(str(i), "k", "q") for i in range(5)))
    first = await queue.claim("q", "w1", 10, 30)
    second = await queue.claim("q", "w2", 10, 30)
    assert len(first) == 2 and second == []
    assert await queue.complete(first[0]) == [True]
    [third] = await queue.claim("q", "w2", 10, 30)
    assert third.id == "2"


async def test_an_expired_lease_gives_its_slot_back(redis: Redis) -> None:
    """A dead worker's slot is free once its lease runs out, before any reaper pass."""
    queue = RedisQueue(redis)
    await _settings(queue, "q", max_active=1)
    await queue.enqueue(Job("a", "k", "q"), Job("b", "k", "q"))
    await queue.claim("q", "dead", 1, lease_seconds=0.05)
    assert await queue.claim("q", "w2", 1, 30) == []
    await asyncio.sleep(0.1)  # the lease running out is what is under test
    [lease] = await queue.claim("q", "w2", 1, 30)
    assert lease.id == "b"


async def test_immediate_jobs_run_outside_window_and_cap_but_not_pause(redis: Redis) -> None:
    """Immediate jobs are claimed first, with the window shut and the cap full; pause
    stops them too."""
    queue = RedisQueue(redis)
    await _settings(queue, "q", max_active=1)
    await queue.enqueue(Job("slow", "k", "q"), Job("held", "k", "q"))
    [busy] = await queue.claim("q", "w1", 1, 30)
    await queue.enqueue(Job("now", "k", "q", immediate=True))
    assert [lease.id for lease in await queue.claim("q", "w2", 10, 30, window_open=False)] == [
        "now"
    ]
    await queue.enqueue(Job("now2", "k", "q", immediate=True))
    await _settings(queue, "q", paused=True, max_active=1)
    assert await queue.claim("q", "w2", 10, 30) == []
    assert busy.id == "slow"


async def test_queue_immediate_mode_lifts_window_and_cap(redis: Redis) -> None:
    """A queue in immediate mode hands out its ready jobs with its window shut and past its cap."""
    queue = RedisQueue(redis)
    await _settings(queue, "q", max_active=1, immediate=True)
    await queue.enqueue(Job("a", "k", "q"), Job("b", "k", "q"))
    assert len(await queue.claim("q", "w1", 10, 30, window_open=False)) == 2


async def test_closed_window_holds_ready_jobs(redis: Redis) -> None:
    """Outside the window nothing is handed out and nothing is dropped."""
    queue = RedisQueue(redis)
    await queue.enqueue(Job("a", "k", "q"))
    assert await queue.claim("q", "w1", 10, 30, window_open=False) == []
    assert await queue.depth("q") == 1
    assert await _ids(queue, "q") == ["a"]


async def test_cancel_removes_waiting_and_signals_running(redis: Redis) -> None:
    """Cancelling a waiting or delayed job removes it; a running one is flagged, and its
    worker's heartbeat answers CANCEL."""
    queue = RedisQueue(redis)
    await queue.enqueue(Job("waiting", "k", "q"), Job("running", "k", "q"))
    await queue.enqueue(Job("later", "k", "q"), at=time.time() + 3600)
    assert await queue.cancel("later", "q") == CancelOutcome.REMOVED
    [lease] = await queue.claim("q", "w1", 1, 30)
    assert lease.id == "waiting"
    assert await queue.cancel("running", "q") == CancelOutcome.REMOVED
    assert await queue.cancel("waiting", "q") == CancelOutcome.SIGNALLED
    assert await queue.heartbeat([lease], 30) == [LeaseState.CANCEL]
    assert await queue.cancel("nothing", "q") == CancelOutcome.ABSENT
    assert await queue.depth("q") == 0


async def test_hand_back_refunds_the_attempt_but_a_retry_does_not(redis: Redis) -> None:
    """A job handed back at shutdown keeps its attempt count; a failed attempt counts."""
    queue = RedisQueue(redis)
    await queue.enqueue(Job("a", "k", "q"))
    [first] = await queue.claim("q", "w1", 1, 30)
    assert await queue.release(first, refund=True)
    [second] = await queue.claim("q", "w1", 1, 30)
    assert second.attempts == 1
    assert await queue.release(second)
    [third] = await queue.claim("q", "w1", 1, 30)
    assert third.attempts == 2

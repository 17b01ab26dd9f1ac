"""The scheduler against a real Redis and each database: one task per firing however
many schedulers run (two real processes included), the missed-run policies across
restarts and Redis loss, a scheduler dying mid-firing, and unknown kinds."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from herald.db import Transactions, create_engine, session_factory
from herald.models import Task
from herald.settings import Settings
from herald.supervisor import Child, Supervisor
from tests.conftest import stack_env
from tests.support import eventually
from workers import _schedule_state
from workers.schedule import ScheduledJob, parse_jobs
from workers.scheduler import FiringOutcome, Scheduler

# Monday 23 November 2026, 10:00 UTC.
T0 = datetime(2026, 11, 23, 10, tzinfo=UTC).timestamp()
HOUR = 3600.0


class Clock:
    """The scheduler's clock, moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def jobs(**tables: dict[str, Any]) -> list[ScheduledJob]:
    """The given jobs (kind diag.noop unless said), the built-in ones switched off."""
    document = {"jobs": {"outputs.purge": {"enabled": False}}}
    for name, table in tables.items():
        document["jobs"][name] = {"kind": "diag.noop", **table}
    return parse_jobs(document, "UTC", now=datetime.fromtimestamp(T0, UTC))


@dataclass
class Cluster:
    """The shared backends; each scheduler() is one more scheduler process's worth."""

    redis: Redis
    sessions: async_sessionmaker[AsyncSession]
    transactions: Transactions
    clock: Clock

    def scheduler(self, schedule: list[ScheduledJob], owner: str = "a") -> Scheduler:
        return Scheduler(
            schedule,
            redis=self.redis,
            sessions=self.sessions,
            transactions=self.transactions,
            clock=self.clock,
            owner=owner,
        )

    async def keys(self, job: str) -> list[str]:
        """Idempotency keys of the job's tasks, oldest first."""
        async with self.sessions() as db:
            found = await db.scalars(
                select(Task.idempotency_key)
                .where(Task.idempotency_key.like(f"schedule:{job}:%"))
                .order_by(Task.id)
            )
            return [key for key in found if key]


@pytest.fixture
async def cluster(settings: Settings, redis: Redis) -> AsyncIterator[Cluster]:
    engine = create_engine(settings)
    transactions = Transactions(engine)
    yield Cluster(redis, session_factory(engine), transactions, Clock(T0))
    transactions.close()
    await engine.dispose()


def key(job: str, hour: int, minute: int = 0, day: int = 23) -> str:
    return f"schedule:{job}:2026-11-{day:02d}T{hour:02d}:{minute:02d}:00Z"


async def test_each_firing_submits_one_task_keyed_by_its_time(cluster: Cluster) -> None:
    """A firing submits its job's task once, keyed schedule:{job}:{UTC time}; looking
    again changes nothing until the next time."""
    schedule = jobs(hourly={"cron": "0 * * * *", "params": {"count_in": "n"}, "priority": 5})
    scheduler = cluster.scheduler(schedule)
    cluster.clock.now = T0 + 0.3
    with capture_logs() as logs:
        [firing] = await scheduler.tick()
    assert firing.outcome is FiringOutcome.FIRED and firing.late == pytest.approx(0.3)
    assert not [entry for entry in logs if entry["event"] == "schedule.missed"]
    async with cluster.sessions() as db:
        task = await db.get(Task, firing.task_id)
    assert task is not None
    assert (task.kind, task.params, task.priority) == ("diag.noop", {"count_in": "n"}, 5)
    assert task.idempotency_key == key("hourly", 10)
    assert await scheduler.tick() == []
    cluster.clock.now = T0 + HOUR / 2
    assert await scheduler.tick() == []
    cluster.clock.now = T0 + HOUR + 0.2
    [later] = await scheduler.tick()
    assert later.outcome is FiringOutcome.FIRED
    assert await cluster.keys("hourly") == [key("hourly", 10), key("hourly", 11)]


async def test_two_schedulers_fire_each_time_once(cluster: Cluster) -> None:
    """Two schedulers looking at the same moments (concurrently): each firing of an
    every-second job is submitted by one of them, and the other never reaches the DB."""
    schedule = jobs(tick={"cron": "* * * * * *"})
    first, second = cluster.scheduler(schedule, "a"), cluster.scheduler(schedule, "b")
    outcomes: list[FiringOutcome] = []
    for step in range(12):
        cluster.clock.now = T0 + step + 0.5
        for firings in await asyncio.gather(first.tick(), second.tick()):
            outcomes += [firing.outcome for firing in firings]
    keys = await cluster.keys("tick")
    assert outcomes == [FiringOutcome.FIRED] * len(keys)  # no "already" from the DB
    assert keys == [f"schedule:tick:2026-11-23T10:00:{s:02d}Z" for s in range(12)]


async def test_a_late_scheduler_runs_every_firing_within_the_grace(cluster: Cluster) -> None:
    """A scheduler a few seconds behind (a stall, a slow database) runs each firing it
    missed within the grace, not only the latest."""
    schedule = jobs(tick={"cron": "*/2 * * * * *"})
    scheduler = cluster.scheduler(schedule)
    await scheduler.tick()
    cluster.clock.now = T0 + 7.5
    firings = await scheduler.tick()
    assert [f.outcome for f in firings] == [FiringOutcome.FIRED] * 3
    assert [f.due.second for f in firings] == [2, 4, 6]


async def test_missed_firings_are_skipped_under_skip(cluster: Cluster) -> None:
    """Every scheduler down from 10:30 to 13:30: an hourly 'skip' job runs none of
    11:00-13:00 and carries on at 14:00. A firing up to a minute late still runs."""
    schedule = jobs(hourly={"cron": "0 * * * *", "missed": "skip"})
    cluster.clock.now = T0 + 1
    await cluster.scheduler(schedule).tick()
    cluster.clock.now = T0 + 3.5 * HOUR
    with capture_logs() as logs:
        [missed] = await cluster.scheduler(schedule, "restarted").tick()  # a new process
    assert missed.outcome is FiringOutcome.MISSED and missed.due.hour == 13
    [entry] = [e for e in logs if e["event"] == "schedule.missed"]
    assert entry["first_missed"].startswith("2026-11-23T11:00")
    assert entry["latest_missed"].startswith("2026-11-23T13:00")
    assert entry["action"] == "skip: wait for the next time"
    cluster.clock.now = T0 + 4 * HOUR + 45  # 45 s late: on time
    [fired] = await cluster.scheduler(schedule, "again").tick()
    assert fired.outcome is FiringOutcome.FIRED
    assert await cluster.keys("hourly") == [key("hourly", 10), key("hourly", 14)]


async def test_missed_firings_run_once_under_once(cluster: Cluster) -> None:
    """The same downtime under 'once': one catch-up run, for 13:00 (the latest missed),
    and nothing more until 14:00."""
    schedule = jobs(hourly={"cron": "0 * * * *", "missed": "once"})
    cluster.clock.now = T0 + 1
    await cluster.scheduler(schedule).tick()
    cluster.clock.now = T0 + 3.5 * HOUR
    restarted = cluster.scheduler(schedule, "restarted")
    [caught_up] = await restarted.tick()
    assert caught_up.outcome is FiringOutcome.FIRED and caught_up.late == 1800
    cluster.clock.now += 60
    assert await restarted.tick() == []
    cluster.clock.now = T0 + 4 * HOUR + 1
    await restarted.tick()
    assert await cluster.keys("hourly") == [
        key("hourly", 10),
        key("hourly", 13),
        key("hourly", 14),
    ]


async def test_once_gives_up_on_a_firing_more_than_a_day_old(cluster: Cluster) -> None:
    """A weekly 'once' job whose latest missed firing is 57 hours old is not caught up."""
    schedule = jobs(weekly={"cron": "0 10 * * mon", "missed": "once"})
    cluster.clock.now = T0 + 1
    await cluster.scheduler(schedule).tick()
    cluster.clock.now = T0 + (7 * 24 + 57) * HOUR  # Wednesday of the next week, 19:00
    [missed] = await cluster.scheduler(schedule, "restarted").tick()
    assert missed.outcome is FiringOutcome.MISSED and missed.due.day == 30
    assert await cluster.keys("weekly") == [key("weekly", 10)]


async def test_the_policy_holds_when_redis_lost_the_cursor(cluster: Cluster) -> None:
    """After a FLUSHALL the cursor is rebuilt from the job's latest task in the DB: no
    firing runs twice, and missed ones still follow the policy."""
    schedule = jobs(
        caught={"cron": "0 * * * *", "missed": "once"},
        skipped={"cron": "0 * * * *", "missed": "skip"},
    )
    cluster.clock.now = T0 + 1
    await cluster.scheduler(schedule).tick()
    await cluster.redis.flushall()
    cluster.clock.now = T0 + 2
    assert await cluster.scheduler(schedule, "b").tick() == []  # 10:00 is in the DB
    await cluster.redis.flushall()
    cluster.clock.now = T0 + 3.5 * HOUR
    with capture_logs() as logs:
        firings = await cluster.scheduler(schedule, "c").tick()
    assert {(f.job, f.outcome, f.due.hour) for f in firings} == {
        ("caught", FiringOutcome.FIRED, 13),
        ("skipped", FiringOutcome.MISSED, 13),
    }
    assert {e["source"] for e in logs if e["event"] == "schedule.cursor_started"} == {"database"}
    assert await cluster.keys("caught") == [key("caught", 10), key("caught", 13)]
    assert await cluster.keys("skipped") == [key("skipped", 10)]


async def test_a_scheduler_dying_mid_firing_is_taken_over_without_a_second_task(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scheduler that submits a firing's task and dies before recording it holds the
    firing until its claim expires; then another submits again, and the DB's key keeps
    it to the one task."""
    schedule = jobs(hourly={"cron": "0 * * * *"})
    doomed, survivor = cluster.scheduler(schedule, "doomed"), cluster.scheduler(schedule, "b")

    async def dies(*_args: object) -> None:
        raise RedisConnectionError("the process died here")  # the fault

    monkeypatch.setattr(doomed._state, "commit", dies)
    cluster.clock.now = T0 + 0.5
    with pytest.raises(RedisConnectionError):
        await doomed.tick()
    assert await survivor.tick() == []  # claimed by the dead one: not yet
    due_ms = int(T0 * 1000)
    assert await cluster.redis.exists(_schedule_state.claim_key("hourly", due_ms))
    await cluster.redis.delete(_schedule_state.claim_key("hourly", due_ms))  # it expires
    cluster.clock.now = T0 + 1.5
    with capture_logs() as logs:
        [firing] = await survivor.tick()
    assert firing.outcome is FiringOutcome.ALREADY
    assert [e["event"] for e in logs] == ["schedule.already_submitted"]
    assert await cluster.keys("hourly") == [key("hourly", 10)]


async def test_an_unknown_kind_is_logged_and_skipped(cluster: Cluster) -> None:
    """A job whose kind is not registered is announced at start and each firing is
    logged and skipped; the scheduler carries on with its other jobs."""
    schedule = jobs(
        ghost={"cron": "0 * * * *", "kind": "nope.missing"},
        hourly={"cron": "0 * * * *"},
    )
    scheduler = cluster.scheduler(schedule)
    cluster.clock.now = T0 + 0.5
    with capture_logs() as logs:
        scheduler.announce()
        firings = await scheduler.tick()
    assert {(f.job, f.outcome) for f in firings} == {
        ("ghost", FiringOutcome.UNKNOWN_KIND),
        ("hourly", FiringOutcome.FIRED),
    }
    unknown = [e for e in logs if e["event"] == "schedule.unknown_kind"]
    assert [(e["log_level"], e["job"], e["kind"]) for e in unknown] == [
        ("warning", "ghost", "nope.missing"),
        ("error", "ghost", "nope.missing"),
    ]
    assert await scheduler.tick() == []  # the skipped firing is dealt with
    assert await cluster.keys("ghost") == []


# --- real processes ------------------------------------------------------------------------
def _start_scheduler(supervisor: Supervisor, name: str) -> Child:
    child = supervisor.herald(name, "scheduler")
    supervisor.wait_ready(child, supervisor.health_check("scheduler", child))
    return child


def _events(log: Path, event: str) -> list[dict[str, Any]]:
    entries = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == event:
                entries.append(entry)
    return entries


async def test_two_scheduler_processes_fire_each_time_exactly_once(
    tmp_path: Path, settings: Settings, cluster: Cluster
) -> None:
    """Two `herald scheduler` processes on one Redis and DB with an every-second job:
    over several firings each produced exactly one task, submitted by one of them,
    and no second went by without its firing."""
    schedule_file = tmp_path / "schedule.toml"
    schedule_file.write_text('[jobs.tick]\ncron = "* * * * * *"\nkind = "diag.noop"\n')
    env = stack_env(
        tmp_path, settings.redis_url, settings.database_url, HERALD_SCHEDULE_FILE=str(schedule_file)
    )
    supervisor = Supervisor(
        Settings.from_env(env), {**os.environ, **env}, log_dir=tmp_path / "logs"
    )
    try:
        _start_scheduler(supervisor, "scheduler-1")
        _start_scheduler(supervisor, "scheduler-2")
        both_running = datetime.now(UTC)

        since = f"schedule:tick:{both_running:%Y-%m-%dT%H:%M:%S}Z"

        async def fired_while_both_ran() -> bool:
            return sum(key > since for key in await cluster.keys("tick")) >= 6

        await eventually(fired_while_both_ran, timeout=30, what="six firings with both running")
        check = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "herald", "scheduler", "--check", env={**os.environ, **env}
        )
        assert await check.wait() == 0, "scheduler --check did not see them"
    finally:
        supervisor.stop_all()
    logs = [tmp_path / "logs" / f"scheduler-{n}.log" for n in (1, 2)]
    fired = [entry for log in logs for entry in _events(log, "schedule.fired")]
    dues = Counter(entry["due"] for entry in fired)
    assert set(dues.values()) == {1}, "a firing was submitted twice"
    assert not any(_events(log, "schedule.already_submitted") for log in logs)
    keys = await cluster.keys("tick")
    assert sorted(keys) == sorted(
        f"schedule:tick:{datetime.fromisoformat(due).astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z"
        for due in dues
    )
    seconds = sorted(datetime.fromisoformat(due).timestamp() for due in dues)
    assert seconds == [seconds[0] + n for n in range(len(seconds))], "a second went unfired"
    for log in logs:  # both stopped cleanly on SIGTERM
        assert _events(log, "scheduler.stopped") and "Traceback" not in log.read_text()
    print(f"firings per process: {[len(_events(log, 'schedule.fired')) for log in logs]}")

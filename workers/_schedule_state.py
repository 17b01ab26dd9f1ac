"""The scheduler's book-keeping: per-job cursors and per-firing claims in Redis, and
the database's record of fired jobs (their tasks' idempotency keys) behind them.

Redis keys (in one hash slot, so each script may touch all it needs on a cluster):

- ``herald:{schedule}:state`` hash: ``{job}:handled`` (ms of the latest firing dealt
  with: run, skipped or missed), ``{job}:fired`` (ms of the latest run) and
  ``{job}:task`` (its task id);
- ``herald:{schedule}:claim:{job}:{ms}`` string: the scheduler submitting that
  firing, expiring after :data:`CLAIM_SECONDS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum

from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald import names
from herald.models import Task

__all__ = [
    "CLAIM_SECONDS",
    "STATE_KEY",
    "Claim",
    "ClaimStatus",
    "LastRun",
    "ScheduleState",
    "claim_key",
    "firing_key",
    "last_fired_in_db",
]

# Long enough for a submit (one DB transaction); short enough that a scheduler dying
# mid-submit delays the firing by seconds, well within the grace of a minute.
CLAIM_SECONDS = 10.0
STATE_KEY = names.SCHEDULE_STATE_KEY
claim_key = names.schedule_claim_key
_KEY_PREFIX = "schedule:"


def firing_key(job: str, due: datetime) -> str:
    """The idempotency key of a firing's task: one instant, one key, whatever the zone
    (UTC, so both passes of a repeated hour differ and a changed HERALD_TIMEZONE
    names the same instant the same way)."""
    return f"{_KEY_PREFIX}{job}:{due.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def _ms(when: datetime | float) -> int:
    return round((when.timestamp() if isinstance(when, datetime) else when) * 1000)


# KEYS: state, claim. ARGV: job, due ms, claim ms, owner.
# Returns {0, handled} when the cursor is at or past the firing, {1, ''} when this
# scheduler claimed it, {2, ''} when another holds the claim.
_CLAIM = """
local handled = redis.call('HGET', KEYS[1], ARGV[1] .. ':handled')
if handled and tonumber(handled) >= tonumber(ARGV[2]) then return {0, handled} end
if redis.call('SET', KEYS[2], ARGV[4], 'NX', 'PX', ARGV[3]) then return {1, ''} end
return {2, ''}
"""

# KEYS: state, claim. ARGV: job, due ms, task id ('' if the firing did not run), owner.
# Cursors only move forward, so a slow scheduler cannot move one back.
_COMMIT = """
local handled = redis.call('HGET', KEYS[1], ARGV[1] .. ':handled')
if not handled or tonumber(handled) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1] .. ':handled', ARGV[2])
end
if ARGV[3] ~= '' then
  local fired = redis.call('HGET', KEYS[1], ARGV[1] .. ':fired')
  if not fired or tonumber(fired) < tonumber(ARGV[2]) then
    redis.call('HSET', KEYS[1], ARGV[1] .. ':fired', ARGV[2], ARGV[1] .. ':task', ARGV[3])
  end
end
if redis.call('GET', KEYS[2]) == ARGV[4] then redis.call('DEL', KEYS[2]) end
return 1
"""

# KEYS: state. ARGV: job, handled ms, fired ms ('' if none), task id.
# The first scheduler to start a cursor wins; returns the cursor in force.
_START = """
redis.call('HSETNX', KEYS[1], ARGV[1] .. ':handled', ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HSETNX', KEYS[1], ARGV[1] .. ':fired', ARGV[3])
  redis.call('HSETNX', KEYS[1], ARGV[1] .. ':task', ARGV[4])
end
return redis.call('HGET', KEYS[1], ARGV[1] .. ':handled')
"""

# KEYS: claim. ARGV: owner.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class ClaimStatus(IntEnum):
    HANDLED = 0  # the cursor is at or past the firing: nothing to do
    CLAIMED = 1  # this scheduler submits it
    BUSY = 2  # another scheduler is submitting it


@dataclass(frozen=True)
class Claim:
    status: ClaimStatus
    handled: float = 0.0  # the cursor (UNIX seconds), for HANDLED


@dataclass(frozen=True)
class LastRun:
    """A job's latest firing that submitted a task."""

    due: datetime
    task_id: int | None


class ScheduleState:
    """The cursors and claims, each change one script."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._claim = redis.register_script(_CLAIM)
        self._commit = redis.register_script(_COMMIT)
        self._start = redis.register_script(_START)
        self._release = redis.register_script(_RELEASE)

    async def handled(self, job: str) -> float | None:
        raw = await self.redis.hget(STATE_KEY, f"{job}:handled")
        return None if raw is None else int(raw) / 1000

    async def start_cursor(self, job: str, handled: float, last: LastRun | None) -> float:
        """Set a missing cursor (another scheduler's, set first, wins); the one in force."""
        fired = "" if last is None else str(_ms(last.due))
        task = "" if last is None or last.task_id is None else str(last.task_id)
        raw = await self._start(keys=[STATE_KEY], args=[job, _ms(handled), fired, task])
        return int(raw) / 1000

    async def claim(self, job: str, due: datetime, owner: str) -> Claim:
        due_ms = _ms(due)
        status, handled = await self._claim(
            keys=[STATE_KEY, claim_key(job, due_ms)],
            args=[job, due_ms, _ms(CLAIM_SECONDS), owner],
        )
        return Claim(ClaimStatus(int(status)), int(handled) / 1000 if handled else 0.0)

    async def commit(self, job: str, due: datetime, task_id: int | None, owner: str) -> None:
        due_ms = _ms(due)
        await self._commit(
            keys=[STATE_KEY, claim_key(job, due_ms)],
            args=[job, due_ms, "" if task_id is None else str(task_id), owner],
        )

    async def release(self, job: str, due: datetime, owner: str) -> None:
        await self._release(keys=[claim_key(job, _ms(due))], args=[owner])

    async def last_runs(self, jobs: list[str]) -> dict[str, LastRun]:
        """Each job's latest run as Redis records it (jobs never run are left out)."""
        if not jobs:
            return {}
        fields = [f"{job}:{what}" for job in jobs for what in ("fired", "task")]
        values = await self.redis.hmget(STATE_KEY, fields)
        runs = {}
        for index, job in enumerate(jobs):
            fired, task = values[2 * index], values[2 * index + 1]
            if fired is not None:
                runs[job] = LastRun(
                    datetime.fromtimestamp(int(fired) / 1000, UTC),
                    int(task) if task else None,
                )
        return runs


async def last_fired_in_db(sessions: async_sessionmaker[AsyncSession], job: str) -> LastRun | None:
    """The job's latest task by its idempotency key, whatever Redis remembers.

    Walks the tasks newest first (the primary key's index) until one of the job's:
    a recently fired job is found at once.
    """
    prefix = f"{_KEY_PREFIX}{job}:"
    async with sessions() as db:
        row = (
            await db.execute(
                select(Task.id, Task.idempotency_key)
                # An exact prefix (SQLite's LIKE ignores case; job names do not).
                .where(func.substr(Task.idempotency_key, 1, len(prefix)) == prefix)
                .order_by(Task.id.desc())
                .limit(1)
            )
        ).first()
    if row is None or row.idempotency_key is None:
        return None
    try:
        due = datetime.fromisoformat(row.idempotency_key[len(prefix) :])
    except ValueError:
        return None  # a key someone made by hand in the scheduler's namespace
    return LastRun(due, row.id)

"""Operating on tasks from outside a worker (CLI, web API): submit, cancel, retry, list.

The DB row is written first and the Redis job second, so a crash between the two
leaves a row the reconciler re-enqueues, never a job without a row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald import names
from herald.db import Transactions
from herald.events import EventPublisher
from herald.models import TASK_TERMINAL, Task, TaskEvent, TaskStatus, utcnow
from workers._sql import json_rows
from workers.context import task_state
from workers.kinds import UnknownKind, kind_named
from workers.queue import MAX_PRIORITY, MIN_PRIORITY, CancelOutcome, Job, RedisQueue, job_for

__all__ = [
    "Submitted",
    "TaskControlError",
    "TaskRequest",
    "cancel_task",
    "enqueue_recorded",
    "list_tasks",
    "record_tasks",
    "retry_task",
    "submit_tasks",
]

_KEY_LIMIT = 200
_PARAMS_LIMIT = 64 * 1024


class TaskControlError(ValueError):
    """A request about tasks that cannot be honoured; the message is for a person."""


@dataclass(frozen=True)
class TaskRequest:
    """One task to submit. ``at`` (UNIX time) delays it; ``key`` makes it idempotent."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    at: float | None = None
    key: str | None = None
    owner_id: int | None = None
    immediate: bool = False
    queue: str | None = None  # overrides the kind's default queue


@dataclass(frozen=True)
class Submitted:
    id: int
    created: bool  # False: the idempotency key named an earlier task, returned instead


def _row_for(request: TaskRequest) -> dict[str, Any]:
    spec = kind_named(request.kind)  # UnknownKind is a LookupError with the known names
    if not MIN_PRIORITY <= request.priority <= MAX_PRIORITY:
        raise TaskControlError(f"priority must be from {MIN_PRIORITY} to {MAX_PRIORITY}")
    if request.key is not None and not 0 < len(request.key) <= _KEY_LIMIT:
        raise TaskControlError(f"an idempotency key is 1–{_KEY_LIMIT} characters")
    if not isinstance(request.params, dict):
        raise TaskControlError("params must be a JSON object")
    if len(json.dumps(request.params)) > _PARAMS_LIMIT:
        raise TaskControlError(f"params must be at most {_PARAMS_LIMIT // 1024} KiB of JSON")
    return {
        "kind": spec.name,
        "queue": request.queue or spec.queue,
        "priority": request.priority,
        "immediate": request.immediate,
        "params": request.params,
        "max_attempts": spec.max_attempts,
        "idempotency_key": request.key,
        "owner_id": request.owner_id,
        "detail": None
        if request.at is None
        else f"scheduled for {datetime.fromtimestamp(request.at).astimezone().isoformat()}",
    }


async def submit_tasks(
    transactions: Transactions,
    queue: RedisQueue,
    requests: Sequence[TaskRequest],
) -> list[Submitted]:
    """Record and enqueue tasks, in order; one transaction and one Redis round trip.

    A request whose idempotency key names an existing task returns that task
    (``created=False``) and changes nothing, even when two submits race.
    """
    for attempt in (1, 2):
        try:
            result, jobs = await transactions.run(lambda conn: record_tasks(conn, requests))
            break
        except IntegrityError:
            # A concurrent submit with the same key won the race: looking the keys up
            # again finds its task, which is the answer. Any other conflict is raised.
            if not any(request.key for request in requests) or attempt == 2:
                raise
    await enqueue_recorded(queue, jobs)
    return result


RecordedJobs = dict[float | None, list[Job]]


def record_tasks(
    conn: Connection, requests: Sequence[TaskRequest]
) -> tuple[list[Submitted], RecordedJobs]:
    """Insert the tasks' rows in ``conn``'s transaction; the answers, and the jobs to
    hand :func:`enqueue_recorded` once it has committed. A caller that records tasks
    with its own change commits both or neither; if it dies before enqueueing, the
    reconciler enqueues the rows it finds queued."""
    now = utcnow()
    rows = [_row_for(request) for request in requests]
    keys = [r.key for r in requests if r.key is not None]
    existing, new_ids = _record(conn, rows, keys, now)
    result: list[Submitted] = []
    jobs: RecordedJobs = {}
    for request, row in zip(requests, rows, strict=True):
        if row["idempotency_key"] in existing:
            result.append(Submitted(existing[row["idempotency_key"]], created=False))
            continue
        task_id = next(new_ids)
        result.append(Submitted(task_id, created=True))
        jobs.setdefault(request.at, []).append(job_for(SimpleNamespace(id=task_id, **row)))
    return result, jobs


async def enqueue_recorded(queue: RedisQueue, jobs: RecordedJobs) -> None:
    """Enqueue the jobs of committed :func:`record_tasks` rows (each at its time)."""
    for at, batch in jobs.items():
        await queue.enqueue(*batch, at=at)


def _record(
    conn: Connection, rows: list[dict[str, Any]], keys: list[str], now: datetime
) -> tuple[dict[str | None, int], Iterator[int]]:
    """Tasks already holding one of ``keys``, and the ids of the rows inserted for the rest."""
    existing: dict[str | None, int] = {}
    if keys:
        found = conn.execute(
            select(Task.idempotency_key, Task.id).where(Task.idempotency_key.in_(keys))
        )
        existing = {key: task_id for key, task_id in found}
    fresh = [row for row in rows if row["idempotency_key"] not in existing]
    return existing, iter(_insert(conn, fresh, now))


_INSERT_FIELDS = {
    "kind": "text",
    "queue": "text",
    "priority": "integer",
    "immediate": "boolean",
    "params": "json",
    "max_attempts": "integer",
    "idempotency_key": "text",
    "owner_id": "integer",
    "detail": "text",
}


def _insert(conn: Connection, rows: list[dict[str, Any]], now: datetime) -> list[int]:
    """Insert the rows in one statement; their ids, in the rows' order.

    The SELECT feeding the INSERT is ordered by the rows' index, so the database
    hands out ids in that order (the property SQLAlchemy's own ordered bulk insert
    relies on); sorting the returned ids restores the pairing.
    """
    if not rows:
        return []
    columns = ", ".join(_INSERT_FIELDS)
    source = json_rows(conn.dialect.name, _INSERT_FIELDS)
    picked = ", ".join(f"j.{name}" for name in _INSERT_FIELDS)
    ids = conn.scalars(
        text(
            f"INSERT INTO tasks ({columns}, status, progress, attempts, created_at, queued_at) "
            f"SELECT {picked}, '{TaskStatus.QUEUED.value}', 0, 0, :now, :now "
            f"FROM {source} ORDER BY j.n RETURNING id"
        ).bindparams(bindparam("now", type_=Task.__table__.c.created_at.type)),
        {"batch": json.dumps([{k: row[k] for k in _INSERT_FIELDS} for row in rows]), "now": now},
    )
    return sorted(ids)


async def cancel_task(
    sessions: async_sessionmaker[AsyncSession],
    queue: RedisQueue,
    publisher: EventPublisher,
    task_id: int,
) -> TaskStatus:
    """Cancel a task: a waiting one is removed at once (``cancelled``); a running one
    is told to stop, on whichever worker runs it, and ends ``cancelled`` there
    (``running`` is returned). :class:`TaskControlError` if it has finished."""
    async with sessions() as db:
        task = await db.get(Task, task_id)
    if task is None:
        raise LookupError(f"no task {task_id}")
    if task.status in TASK_TERMINAL:
        raise TaskControlError(f"task {task_id} has already ended ({task.status})")
    if task.submission_id is not None:
        raise TaskControlError(
            "submission steps end with their submission; they are not cancelled one by one"
        )
    found = await queue.cancel(str(task_id), task.queue)
    if found == CancelOutcome.SIGNALLED:
        return TaskStatus.RUNNING
    # Waiting (now removed from Redis), or lost by Redis: end it in the DB. A worker
    # that claimed it meanwhile finds it finished and only completes its job.
    async with sessions.begin() as db:
        result = await db.execute(
            update(Task)
            .where(Task.id == task_id, Task.status.not_in(TASK_TERMINAL))
            .values(status=TaskStatus.CANCELLED, finished_at=utcnow(), detail="cancelled")
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise TaskControlError(f"task {task_id} ended while being cancelled")
        db.add(TaskEvent(task_id=task_id, status=TaskStatus.CANCELLED, attempt=task.attempts))
    task.status, task.detail = TaskStatus.CANCELLED, "cancelled"
    await _announce(publisher, task)
    return TaskStatus.CANCELLED


async def retry_task(
    sessions: async_sessionmaker[AsyncSession],
    queue: RedisQueue,
    publisher: EventPublisher,
    task_id: int,
) -> None:
    """Put a failed or cancelled task back on its queue with a fresh set of attempts."""
    async with sessions.begin() as db:
        task = await db.get(Task, task_id, with_for_update=True)
        if task is None:
            raise LookupError(f"no task {task_id}")
        if task.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            raise TaskControlError(
                f"only failed or cancelled tasks are retried; {task_id} is {task.status}"
            )
        task.status, task.attempts, task.progress = TaskStatus.QUEUED, 0, 0
        task.finished_at, task.started_at, task.run_id = None, None, None
        task.queued_at, task.detail = utcnow(), "retried by an operator"
        db.add(TaskEvent(task_id=task_id, status=TaskStatus.QUEUED, detail="retried"))
        hooks = kind_named(task.kind).hooks
        await db.run_sync(lambda session: hooks.on_retried(session.connection(), task_id))
    await queue.redis.zrem(names.DEAD_LETTER_KEY, str(task_id))
    await queue.enqueue(job_for(task))
    await _announce(publisher, task)


async def _announce(publisher: EventPublisher, task: Task) -> None:
    """An operator's change of a task, as a worker's changes are told: on admin.tasks,
    and on the owner's user.{id} (their My tasks page) unless the kind keeps quiet."""
    state = task_state(task)
    await publisher.publish(names.ADMIN_TASKS, names.EventType.TASKS_CHANGED, {"tasks": [state]})
    if task.owner_id is None:
        return
    try:
        notify = kind_named(task.kind).notify_owner
    except UnknownKind:  # a kind no longer deployed: its owner still sees the change
        notify = True
    if notify:
        await publisher.publish(names.user_topic(task.owner_id), names.EventType.TASK_STATE, state)


async def list_tasks(
    sessions: async_sessionmaker[AsyncSession],
    *,
    status: str | None = None,
    kind: str | None = None,
    queue: str | None = None,
    owner_id: int | None = None,
    limit: int = 50,
) -> list[Task]:
    """Newest first, filtered."""
    query = select(Task).order_by(Task.id.desc()).limit(max(1, min(limit, 1000)))
    if status:
        query = query.where(Task.status == TaskStatus(status))
    if kind:
        query = query.where(Task.kind == kind)
    if queue:
        query = query.where(Task.queue == queue)
    if owner_id is not None:
        query = query.where(Task.owner_id == owner_id)
    async with sessions() as db:
        return list((await db.scalars(query)).all())


async def failures_since(
    sessions: async_sessionmaker[AsyncSession], since: datetime
) -> dict[str, int]:
    """Tasks failed for good per queue since ``since``."""
    async with sessions() as db:
        rows = await db.execute(
            select(Task.queue, func.count())
            .where(Task.status == TaskStatus.FAILED, Task.finished_at >= since)
            .group_by(Task.queue)
        )
        return {name: count for name, count in rows}

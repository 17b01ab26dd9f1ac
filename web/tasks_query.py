"""Reading tasks for the tasks API and pages: filters, keyset pages, one task's detail.

Pages are keyset pages on the task id, newest first (``before`` / ``after`` a
cursor id), never OFFSET: each common filter has an index that ends in the id
(migration 0009), so a page costs the same at row 100,000 as at row 100. Nothing
counts the whole table: a page says whether there is more, not how much.

Admins see every task; everyone else sees their own, and a task they may not see
is answered as one that does not exist.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, Final
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, SQLColumnExpression, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from herald import names
from herald.events import iso
from herald.models import TASK_TERMINAL, Task, TaskEvent, TaskStatus, User
from herald.names import MAX_ROW_ID
from herald.settings import Settings
from web.errors import BadRequest, NotFound
from workers.context import task_state
from workers.kinds import KINDS, TaskKind, UnknownKind, kind_named
from workers.outputs import output_info

__all__ = [
    "DEFAULT_LIMIT",
    "FILTER_KEYS",
    "MAX_IDS",
    "MAX_LIMIT",
    "TaskFilters",
    "TaskPage",
    "can_cancel",
    "can_retry",
    "duration_text",
    "known_kinds",
    "parse_filters",
    "parse_ids",
    "pretty_json",
    "task_detail",
    "task_page",
    "task_row",
    "tasks_by_id",
    "visible_task",
    "watch_topic",
]

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 200
# Rows a page may ask to have refreshed at once (``?ids=``): more than a page shows.
MAX_IDS: Final = 200
ERROR_SUMMARY: Final = 200
MAX_TIMELINE: Final = 500
# A time range holding at most this many tasks is read off created_at (see _access).
WIDE_RANGE: Final = 5000
_CANCELLABLE: Final = frozenset(TaskStatus) - TASK_TERMINAL
_RETRYABLE: Final = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED})


@dataclass(frozen=True)
class TaskFilters:
    """What a list is narrowed to; every field optional. ``owner`` is as typed (a
    username or an id), ``owner_id`` what it named (-1: nobody of that name)."""

    status: TaskStatus | None = None
    kind: str | None = None
    queue: str | None = None
    owner: str | None = None
    owner_id: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    mine: bool = False
    steps: bool = True  # include the steps of submissions' pipelines
    raw: Mapping[str, str] = field(default_factory=dict)  # as given, for links and forms

    @property
    def query(self) -> str:
        """The filters as a query string (no cursor): a link to the same list."""
        return urlencode([(key, value) for key, value in self.raw.items() if value])

    @property
    def any(self) -> bool:
        return any(value for key, value in self.raw.items() if key not in ("mine", "steps"))


@dataclass(frozen=True)
class TaskPage:
    rows: list[dict[str, Any]]
    next: int | None  # ``before`` cursor of the older page, if there is one
    prev: int | None  # ``after`` cursor of the newer page, if there is one


FILTER_KEYS: Final = ("status", "kind", "queue", "owner", "from", "to", "mine", "steps")


def _when(raw: str, zone: str, *, end: bool) -> datetime:
    """An ISO time or date; a naive one is in ``zone`` (HERALD_TIMEZONE). A bare date
    as ``to`` means the end of that day."""
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            moment = datetime.combine(day, time.max if end else time.min)
        else:
            moment = datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{raw!r} is not a date or an ISO 8601 time.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment


def _flag(raw: str, name: str) -> bool:
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise BadRequest(f"{name} must be 1 or 0.")


async def parse_filters(
    db: AsyncSession, query: Mapping[str, str], settings: Settings
) -> TaskFilters:
    """Filters from a query string; :class:`BadRequest` with a message for a bad value."""
    raw = {key: query.get(key, "").strip()[:200] for key in FILTER_KEYS}
    status = None
    if raw["status"]:
        try:
            status = TaskStatus(raw["status"])
        except ValueError:
            known = ", ".join(s.value for s in TaskStatus)
            raise BadRequest(f"Unknown status {raw['status']!r} (one of: {known}).") from None
    created_from = _when(raw["from"], settings.timezone, end=False) if raw["from"] else None
    created_to = _when(raw["to"], settings.timezone, end=True) if raw["to"] else None
    owner_id = None
    if raw["owner"]:
        owner = raw["owner"]
        if owner.isascii() and owner.isdigit():
            owner_id = int(owner) if 0 < int(owner) <= MAX_ROW_ID else -1
        else:
            found = await db.scalar(select(User.id).where(User.username == owner))
            owner_id = found if found is not None else -1
    return TaskFilters(
        status=status,
        kind=raw["kind"] or None,
        queue=raw["queue"] or None,
        owner=raw["owner"] or None,
        owner_id=owner_id,
        created_from=created_from,
        created_to=created_to,
        mine=_flag(raw["mine"], "mine"),
        steps=_flag(raw["steps"] or "1", "steps"),
        raw=raw,
    )


def parse_ids(raw: str) -> list[int]:
    """Ids from ``1,2,3`` (at most MAX_IDS); anything that is not an id is left out."""
    ids = []
    for part in raw.split(",")[:MAX_IDS]:
        part = part.strip()
        if part.isascii() and part.isdigit() and 0 < int(part) <= MAX_ROW_ID:
            ids.append(int(part))
    return ids


def _conditions(
    viewer: User, filters: TaskFilters, created: SQLColumnExpression[datetime] | None = None
) -> list[ColumnElement[bool]]:
    column: SQLColumnExpression[datetime] = Task.created_at if created is None else created
    conditions: list[ColumnElement[bool]] = []
    if not viewer.is_admin or filters.mine:
        conditions.append(Task.owner_id == viewer.id)
    if filters.owner_id is not None:
        conditions.append(Task.owner_id == filters.owner_id)
    if filters.status is not None:
        conditions.append(Task.status == filters.status)
    if filters.kind:
        conditions.append(Task.kind == filters.kind)
    if filters.queue:
        conditions.append(Task.queue == filters.queue)
    if filters.created_from is not None:
        conditions.append(column >= filters.created_from)
    if filters.created_to is not None:
        conditions.append(column <= filters.created_to)
    if not filters.steps:
        conditions.append(Task.submission_id.is_(None))
    return conditions


async def _rows(
    db: AsyncSession, settings: Settings, tasks: Sequence[Task]
) -> list[dict[str, Any]]:
    """The tasks as rows, with their owners' usernames (one lookup for the page: a join
    would let a planner read the tasks in another order than the index's)."""
    owner_ids = {task.owner_id for task in tasks if task.owner_id is not None}
    names: dict[int, str] = {}
    if owner_ids:
        found = await db.execute(select(User.id, User.username).where(User.id.in_(owner_ids)))
        names = {row.id: row.username for row in found}
    return [
        task_row(task, names.get(task.owner_id) if task.owner_id else None, settings)
        for task in tasks
    ]


@dataclass(frozen=True)
class _Access:
    """How a page is read: what a time range compares, and what rows are ordered by."""

    created: SQLColumnExpression[datetime]
    order: SQLColumnExpression[int]


_BY_ID: Final = _Access(Task.created_at, Task.id)


async def _access(db: AsyncSession, filters: TaskFilters) -> _Access:
    """In id order, off the index of a filter, unless there is a time range. Where in
    the id order a range's tasks lie, neither planner knows (SQLite has no statistics;
    PostgreSQL takes the matches to be spread evenly, and walks back from the newest
    task towards a day that may be weeks old), so the range decides, counted up to
    WIDE_RANGE off the created_at index: a range holding that few is read off the
    index and sorted (ordered by ``id + 0``, which no index offers); a wider one is
    read in id order (compared through ``+created_at``, which keeps SQLite off the
    created_at index), where its tasks are dense enough to fill a page quickly."""
    low, high = filters.created_from, filters.created_to
    if low is None and high is None:
        return _BY_ID
    in_range = [Task.created_at >= low] if low is not None else []
    if high is not None:
        in_range.append(Task.created_at <= high)
    # Ordered, so it is read off the index and stops at WIDE_RANGE + 1 on both backends.
    probe = select(Task.id).where(*in_range).order_by(Task.created_at).limit(WIDE_RANGE + 1)
    held = await db.scalar(select(func.count()).select_from(probe.subquery()))
    if (held or 0) <= WIDE_RANGE:
        return _Access(Task.created_at, Task.id + 0)
    if db.get_bind().dialect.name == "sqlite":
        return _Access(literal_column("+tasks.created_at", type_=Task.created_at.type), Task.id)
    return _BY_ID


async def _exists(
    db: AsyncSession, conditions: Sequence[ColumnElement[bool]], access: _Access
) -> bool:
    # In the page's order: off an index, never a scan of the heap hoping to meet a match.
    query = select(Task.id).where(*conditions).order_by(access.order).limit(1)
    return await db.scalar(query) is not None


async def task_page(
    db: AsyncSession,
    settings: Settings,
    viewer: User,
    filters: TaskFilters,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = DEFAULT_LIMIT,
) -> TaskPage:
    """One page of the tasks ``viewer`` may see, newest first: the ``limit`` just
    older than ``before``, or just newer than ``after``, or the newest."""
    limit = max(1, min(limit, MAX_LIMIT))
    access = await _access(db, filters)
    conditions = _conditions(viewer, filters, access.created)
    query = select(Task).where(*conditions)
    if after is not None:
        query = query.where(Task.id > after).order_by(access.order.asc())
    else:
        if before is not None:
            query = query.where(Task.id < before)
        query = query.order_by(access.order.desc())
    found = list((await db.scalars(query.limit(limit + 1))).all())
    more = len(found) > limit  # in the direction read
    found = found[:limit]
    if after is not None:
        found.reverse()
    rows = await _rows(db, settings, found)
    older = newer = False
    if found:
        newest, oldest = found[0].id, found[-1].id
        older = (
            more if after is None else await _exists(db, [*conditions, Task.id < oldest], access)
        )
        if after is not None:
            newer = more
        elif before is not None:
            newer = await _exists(db, [*conditions, Task.id > newest], access)
    return TaskPage(
        rows=rows,
        next=rows[-1]["id"] if older else None,
        prev=rows[0]["id"] if newer else None,
    )


async def tasks_by_id(
    db: AsyncSession, settings: Settings, viewer: User, ids: Sequence[int]
) -> list[dict[str, Any]]:
    """These tasks (those ``viewer`` may see), newest first: a page refreshing its rows."""
    if not ids:
        return []
    conditions = [Task.id.in_(ids), *_conditions(viewer, TaskFilters())]
    found = await db.scalars(select(Task).where(*conditions).order_by(Task.id.desc()))
    return await _rows(db, settings, list(found.all()))


def kind_label(name: str) -> str:
    try:
        return kind_named(name).label or name
    except UnknownKind:
        return name


def known_kinds() -> list[TaskKind]:
    """Every registered kind, by name (for the kind filter; never a scan of the table)."""
    with contextlib.suppress(UnknownKind):
        kind_named("")  # loads the built-in kinds; no kind has an empty name
    return sorted(KINDS.values(), key=lambda kind: kind.name)


def _error_summary(error: str | None) -> str | None:
    """The last line of a traceback (``RuntimeError: …``), or the reason as recorded."""
    if not error:
        return None
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return lines[-1][:ERROR_SUMMARY] if lines else None


def duration_text(seconds: float | None) -> str:
    """``0.4 s``, ``12 s``, ``3 min 4 s``, ``2 h 5 min`` (herald-tasks.js says the same)."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def _duration(task: Task) -> float | None:
    if task.started_at is None or task.finished_at is None:
        return None
    return round((task.finished_at - task.started_at).total_seconds(), 3)


def can_cancel(task: Task) -> bool:
    """Whether the state allows a cancel (who may is the caller's business)."""
    return task.status in _CANCELLABLE and task.submission_id is None


def can_retry(task: Task) -> bool:
    return task.status in _RETRYABLE


def task_row(task: Task, owner_username: str | None, settings: Settings) -> dict[str, Any]:
    """A task as a list shows it: its wire state and what people read beside it."""
    return {
        **task_state(task),
        "kind_label": kind_label(task.kind),
        "priority": task.priority,
        "immediate": task.immediate,
        "owner_username": owner_username,
        "created_at": iso(task.created_at),
        "queued_at": iso(task.queued_at),
        "duration": _duration(task),
        "error": _error_summary(task.error),
        "output": output_info(settings, task),
        "url": f"/tasks/{task.id}",
    }


def visible_task(viewer: User, task: Task | None) -> Task:
    """``task`` if ``viewer`` may see it; :class:`NotFound` otherwise (not disclosed)."""
    if task is None or not (viewer.is_admin or task.owner_id == viewer.id):
        raise NotFound("No such task.")
    return task


def watch_topic(viewer: User) -> str:
    """The topic a page of ``viewer`` follows for task changes."""
    return names.ADMIN_TASKS if viewer.is_admin else names.user_topic(viewer.id)


def pretty_json(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


async def task_detail(
    db: AsyncSession, settings: Settings, viewer: User, task_id: int
) -> tuple[Task, dict[str, Any]]:
    """One task with its parameters, result, full error (the traceback of the failed
    attempt), its audit trail and its output; :class:`NotFound` if not visible."""
    task = visible_task(
        viewer,
        await db.scalar(select(Task).options(selectinload(Task.events)).where(Task.id == task_id)),
    )
    username = None
    if task.owner_id is not None:
        username = await db.scalar(select(User.username).where(User.id == task.owner_id))
    events: list[TaskEvent] = list(task.events)[-MAX_TIMELINE:]
    detail = {
        **task_row(task, username, settings),
        "params": task.params,
        "result": task.result,
        "traceback": task.error,
        "actions": {
            "cancel": can_cancel(task),
            "retry": can_retry(task) and viewer.is_admin,
        },
        "submission_url": (
            f"/submissions/{task.submission_id}" if task.submission_id is not None else None
        ),
        "events": [
            {
                "at": iso(event.at),
                "status": str(event.status),
                "attempt": event.attempt,
                "detail": event.detail,
            }
            for event in events
        ],
    }
    return task, detail

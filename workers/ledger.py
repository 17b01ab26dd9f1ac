"""The engine's DB writes, batched: one transaction starts a claimed batch of runs, one
settles every run that ended since the last settle.

Each run is fenced by its ``run_id`` (the lease's random token): the start stamps
it on the row, and every later write of the run is conditional on it and on the
row not being finished. A run whose lease was lost (or whose job Redis forgot
and the reconciler re-queued) therefore writes nothing beside the new run's.
A batch travels as one JSON parameter (:mod:`workers._sql`) and each write is
one set-based statement: ``UPDATE … FROM`` the batch, ``RETURNING`` what applied.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, Connection, Integer, Table, bindparam, column, select, text

from herald.models import TASK_TERMINAL, Task, TaskStatus
from workers._sql import json_rows
from workers.context import TaskRun
from workers.kinds import KindHooks, Outcome, TaskKind
from workers.queue import Job, Lease

__all__ = ["Settle", "Started", "settle_runs", "start_runs"]

TASKS = cast(Table, Task.__table__)
_FINISHED_SQL = ", ".join(f"'{status.value}'" for status in sorted(TASK_TERMINAL))
_NOW = bindparam("now", type_=TASKS.c.started_at.type)


@dataclass
class Settle:
    """How a run ended: ``status`` DONE, FAILED, CANCELLED, or QUEUED for a retry."""

    run: TaskRun
    status: TaskStatus
    outcome: Outcome | None = None
    detail: str | None = None
    error: str | None = None  # the traceback kept for inspection
    delay: float = 0.0  # a retry's backoff
    follow_ups: list[Job] = field(default_factory=list)  # queued by the run's hooks
    applied: bool = False  # set by settle_runs: the row took this run's end


@dataclass
class Started:
    """What the start of a claimed batch found."""

    runs: list[TaskRun] = field(default_factory=list)
    # Claimed jobs whose task is already finished (a crash after the DB commit),
    # or has no row: their jobs only need completing.
    finished: list[tuple[Lease, TaskKind, dict[str, Any]]] = field(default_factory=list)
    orphans: list[Lease] = field(default_factory=list)


def _group_by_hooks(runs: Sequence[TaskRun]) -> dict[KindHooks, list[TaskRun]]:
    groups: dict[KindHooks, list[TaskRun]] = defaultdict(list)
    for run in runs:
        groups[run.spec.hooks].append(run)
    return groups


def _record_events(conn: Connection, rows: list[dict[str, Any]], now: datetime) -> None:
    """Audit rows ``{"i": task id, "s": status, "a": attempt, "d": detail}``, one statement."""
    source = json_rows(
        conn.dialect.name, {"i": "integer", "s": "text", "a": "integer", "d": "text"}
    )
    conn.execute(
        text(
            "INSERT INTO task_events (task_id, at, status, attempt, detail) "
            f"SELECT j.i, :now, j.s, j.a, j.d FROM {source}"
        ).bindparams(_NOW),
        {"batch": json.dumps(rows), "now": now},
    )


def start_runs(
    conn: Connection, leases: Sequence[tuple[Lease, TaskKind]], now: datetime
) -> Started:
    """Mark a claimed batch running, each with its own fence; record the audit rows."""
    batch = [{"i": int(lease.id), "r": lease.token, "a": lease.attempts} for lease, _ in leases]
    source = json_rows(conn.dialect.name, {"i": "integer", "r": "text", "a": "integer"})
    returned = conn.execute(
        text(
            f"UPDATE tasks SET status = '{TaskStatus.RUNNING.value}', run_id = j.r, "
            "attempts = j.a, started_at = :now, progress = 0 "
            f"FROM {source} WHERE tasks.id = j.i AND tasks.status NOT IN ({_FINISHED_SQL}) "
            "RETURNING tasks.id, tasks.params, tasks.owner_id, tasks.submission_id, "
            "tasks.step_index"
        )
        .bindparams(_NOW)
        .columns(
            column("id", Integer),
            column("params", JSON),
            column("owner_id", Integer),
            column("submission_id", Integer),
            column("step_index", Integer),
        ),
        {"batch": json.dumps(batch), "now": now},
    )
    rows = {row.id: row for row in returned}
    started = Started()
    unstarted = []
    for lease, spec in leases:
        row = rows.get(int(lease.id))
        if row is None:
            unstarted.append((lease, spec))
            continue
        started.runs.append(
            TaskRun(
                lease=lease,
                spec=spec,
                id=row.id,
                params=row.params or {},
                owner_id=row.owner_id,
                submission_id=row.submission_id,
                step_index=row.step_index,
                started_at=now,
            )
        )
    if unstarted:
        _sort_unstarted(conn, unstarted, started)
    if started.runs:
        _record_events(
            conn,
            [
                {"i": run.id, "s": TaskStatus.RUNNING.value, "a": run.attempts, "d": None}
                for run in started.runs
            ],
            now,
        )
        for hooks, runs in _group_by_hooks(started.runs).items():
            hooks.on_started(conn, runs)
    return started


def _sort_unstarted(
    conn: Connection, unstarted: list[tuple[Lease, TaskKind]], started: Started
) -> None:
    """Claimed jobs the start did not take: finished tasks, or no row at all."""
    found = {
        row.id: dict(row._mapping)
        for row in conn.execute(
            select(
                TASKS.c.id,
                TASKS.c.status,
                TASKS.c.params,
                TASKS.c.owner_id,
                TASKS.c.submission_id,
                TASKS.c.step_index,
            ).where(TASKS.c.id.in_([int(lease.id) for lease, _ in unstarted]))
        )
    }
    for lease, spec in unstarted:
        row = found.get(int(lease.id))
        if row is None:
            started.orphans.append(lease)
        else:
            started.finished.append((lease, spec, row))


def settle_runs(
    conn: Connection, settles: Sequence[Settle], now: datetime
) -> dict[int, tuple[Any, str | None]]:
    """Write how each run ended, fenced; sets ``Settle.applied`` on those the rows took.

    Returns ``(status, run_id)`` of every settled task the write did not take
    (absent: no row), so the caller can tell a superseded run (leave its job
    alone) from a task finished by someone else (complete its job) and from a
    settle of its own that committed before a Redis failure (finish the job).
    """
    batch = [
        {
            "i": item.run.id,
            "r": item.run.run_id,
            "s": item.status.value,
            "d": item.detail,
            "e": item.error,
            "res": item.outcome.result if item.outcome else None,
            # The output file's name (workers.outputs keeps it in the task's own folder).
            "o": item.outcome.output.name if item.outcome and item.outcome.output else None,
        }
        for item in settles
    ]
    source = json_rows(
        conn.dialect.name,
        {
            "i": "integer",
            "r": "text",
            "s": "text",
            "d": "text",
            "e": "text",
            "res": "json",
            "o": "text",
        },
    )
    done, queued = TaskStatus.DONE.value, TaskStatus.QUEUED.value
    applied_ids = set(
        conn.scalars(
            text(
                "UPDATE tasks SET status = j.s, detail = j.d, "
                "error = COALESCE(j.e, tasks.error), "
                f"result = CASE WHEN j.s = '{done}' THEN j.res ELSE tasks.result END, "
                f"output_path = CASE WHEN j.s = '{done}' THEN j.o ELSE tasks.output_path END, "
                f"progress = CASE WHEN j.s = '{done}' THEN 100 ELSE tasks.progress END, "
                f"finished_at = CASE WHEN j.s = '{queued}' THEN tasks.finished_at ELSE :now END "
                f"FROM {source} WHERE tasks.id = j.i AND tasks.run_id = j.r "
                f"AND tasks.status NOT IN ({_FINISHED_SQL}) RETURNING tasks.id"
            ).bindparams(_NOW),
            {"batch": json.dumps(batch), "now": now},
        )
    )
    applied = []
    for item in settles:
        item.applied = item.run.id in applied_ids
        if item.applied:
            applied.append(item)
    others: dict[int, tuple[Any, str | None]] = {}
    missed = [item.run.id for item in settles if not item.applied]
    if missed:
        rows = conn.execute(
            select(TASKS.c.id, TASKS.c.status, TASKS.c.run_id).where(TASKS.c.id.in_(missed))
        )
        others = {row.id: (row.status, row.run_id) for row in rows}
    if applied:
        _record_events(
            conn,
            [
                {
                    "i": item.run.id,
                    "s": item.status.value,
                    "a": item.run.attempts,
                    "d": item.detail if item.status != TaskStatus.DONE else None,
                }
                for item in applied
            ],
            now,
        )
    # Hooks may lock their parent rows (a submission): in one order everywhere, so two
    # batches settling steps of the same submissions cannot deadlock.
    for item in sorted(applied, key=lambda item: (item.run.submission_id or 0, item.run.id)):
        hooks = item.run.spec.hooks
        if item.status == TaskStatus.DONE:
            item.follow_ups = list(hooks.on_done(conn, item.run, item.outcome or Outcome()))
        elif item.status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            item.follow_ups = list(hooks.on_ended(conn, item.run, item.detail or str(item.status)))
    return others

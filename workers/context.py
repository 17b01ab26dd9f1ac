"""What a running task is and sees: its run record, and the context handed to its handler
(parameters, a coalesced progress reporter, a cancel flag, stable side-effect keys)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from redis.asyncio import Redis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald import names
from herald.events import EventPublisher, iso
from herald.models import Task, TaskStatus
from herald.settings import Settings
from workers.kinds import TaskKind
from workers.pipeline import StepLike
from workers.queue import Lease, RedisQueue

__all__ = ["PROGRESS_INTERVAL", "Services", "TaskContext", "TaskLike", "TaskRun", "task_state"]

# At most this often per task does a progress report touch the DB and the wire;
# the final state is always sent (by the engine, when the run ends).
PROGRESS_INTERVAL = 0.2


class TaskLike(StepLike, Protocol):
    """What :func:`task_state` reads: a DB row or a live run."""

    @property
    def id(self) -> int: ...

    @property
    def kind(self) -> str: ...

    @property
    def queue(self) -> str: ...

    @property
    def attempts(self) -> int: ...

    @property
    def max_attempts(self) -> int: ...

    @property
    def owner_id(self) -> int | None: ...

    @property
    def submission_id(self) -> int | None: ...


def task_state(task: TaskLike) -> dict[str, Any]:
    """A task's state on the wire (admin.tasks, user.{id}); the API shows the same."""
    return {
        "id": task.id,
        "kind": task.kind,
        "queue": task.queue,
        "status": str(task.status),
        "progress": 100 if task.status == TaskStatus.DONE else task.progress,
        "detail": task.detail,
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "owner_id": task.owner_id,
        "submission_id": task.submission_id,
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
    }


@dataclass
class TaskRun:
    """One run of a task by this worker: its lease, and the row's state as this run sees it."""

    lease: Lease
    spec: TaskKind
    id: int
    params: dict[str, Any]
    owner_id: int | None
    submission_id: int | None
    step_index: int | None
    started_at: datetime
    status: TaskStatus = TaskStatus.RUNNING
    progress: int = 0
    detail: str | None = None
    finished_at: datetime | None = None
    cancel_requested: bool = False
    lease_lost: bool = False

    @property
    def kind(self) -> str:
        return self.spec.name

    @property
    def queue(self) -> str:
        return self.lease.queue

    @property
    def run_id(self) -> str:
        """The DB fence of this run: the lease's random token."""
        return self.lease.token

    @property
    def attempts(self) -> int:
        return self.lease.attempts

    @property
    def max_attempts(self) -> int:
        return self.lease.max_attempts


@dataclass(frozen=True)
class Services:
    """What a worker shares with its handlers and kind hooks."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    queue: RedisQueue
    publisher: EventPublisher
    redis: Redis  # for handlers: pipelines what they send at the same moment


@dataclass
class TaskContext:
    """Handed to a handler: read ``params``, report with :meth:`progress`, and check
    :attr:`cancelled` in long loops (a cancel also interrupts the handler's next await)."""

    run: TaskRun
    services: Services
    _last_report: float = field(default=0.0)

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self.services.sessions

    @property
    def publisher(self) -> EventPublisher:
        return self.services.publisher

    @property
    def redis(self) -> Redis:
        return self.services.redis

    @property
    def params(self) -> dict[str, Any]:
        return self.run.params

    @property
    def attempt(self) -> int:
        return self.run.attempts

    @property
    def cancelled(self) -> bool:
        return self.run.cancel_requested

    def idempotency_key(self, step: str = "run") -> str:
        """Stable per (task, step) across re-runs: pass it to external services so a
        re-run after a crash repeats no side effect."""
        return f"herald:task:{self.run.id}:{step}"

    async def progress(self, percent: float, detail: str | None = None) -> None:
        """Record progress (0–100); calls closer together than PROGRESS_INTERVAL are dropped."""
        now = time.monotonic()
        if now - self._last_report < PROGRESS_INTERVAL:
            return
        self._last_report = now
        self.run.progress = max(0, min(99, int(percent)))
        if detail is not None:
            self.run.detail = detail
        async with self.sessions.begin() as db:
            # Only this run's progress counts (see the engine's DB fencing).
            await db.execute(
                update(Task)
                .where(Task.id == self.run.id, Task.run_id == self.run.run_id)
                .values(progress=self.run.progress, detail=self.run.detail)
            )
        await self.emit_progress()

    async def emit_progress(self) -> None:
        """Tell the watchers of this task (admins, its owner) its new progress."""
        state = task_state(self.run)
        await self.publisher.publish(
            names.ADMIN_TASKS, names.EventType.TASKS_CHANGED, {"tasks": [state]}
        )
        if self.run.owner_id is not None and self.run.spec.notify_owner:
            await self.publisher.publish(
                names.user_topic(self.run.owner_id), names.EventType.TASK_STATE, state
            )

"""Runs one claimed job: the DB state machine around a step handler.

Order matters for crash safety. The DB commit that ends a step also queues the
next step's row; the next job is enqueued in Redis before this job's lease is
completed. A crash anywhere re-runs at most this step, which then finds its
task row already finished and only makes sure the next job is queued.
"""

from __future__ import annotations

import asyncio
import secrets
import traceback
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from herald.events import EventPublisher
from herald.logs import get_logger
from herald.models import (
    TASK_TERMINAL,
    Submission,
    SubmissionStatus,
    Task,
    TaskEvent,
    TaskStatus,
    utcnow,
)
from herald.names import EventType
from herald.settings import Settings
from workers.context import StepContext
from workers.pipeline import SUBMISSION_STEPS
from workers.queue import Lease, RedisQueue, job_for
from workers.steps import HANDLERS, StepFailed, StepOutcome

__all__ = ["JobRunner"]

log = get_logger(__name__)


class Superseded(Exception):
    """Another run of the same task has started since this one: it must write nothing."""


async def _fenced_update(db: AsyncSession, task: Task, **values: Any) -> None:
    """Update the task row only if this run is still the task's current run.

    Redis leases fence Redis; this fences the DB. Without it, a run whose lease
    was lost (or whose job Redis forgot and the reconciler re-queued) could
    commit its result beside the new run's.
    """
    result = await db.execute(
        update(Task)
        .where(
            Task.id == task.id,
            Task.run_id.is_not_distinct_from(task.run_id),
            Task.status.not_in(TASK_TERMINAL),
        )
        .values(**values)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise Superseded(task.id)


class JobRunner:
    """Turns a :class:`Lease` into a finished, retried or failed task."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        queue: RedisQueue,
        publisher: EventPublisher,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.queue = queue
        self.publisher = publisher

    async def run(self, lease: Lease) -> None:
        structlog.contextvars.bind_contextvars(task_id=lease.id, kind=lease.kind)
        async with self.sessions() as db:
            task = await db.scalar(
                select(Task).where(Task.id == int(lease.id)).options(selectinload(Task.submission))
            )
        if task is None:
            log.warning("job.orphaned", reason="no task row")
            await self.queue.complete(lease)
            return
        if task.status in TASK_TERMINAL:
            # Finished before a crash took the lease: only make sure the chain goes on.
            await self._enqueue_next(task)
            await self.queue.complete(lease)
            return
        if task.submission is None or task.step_index is None:
            await self._finish_failed(task, lease, "not a submission pipeline task")
            return
        structlog.contextvars.bind_contextvars(submission_id=task.submission_id)
        step = SUBMISSION_STEPS[task.step_index]
        ctx = StepContext(
            task=task,
            step=step,
            submission_id=task.submission.id,
            attempt=lease.attempts,
            settings=self.settings,
            sessions=self.sessions,
            publisher=self.publisher,
        )
        if lease.attempts > lease.max_attempts:
            # Every orphan recovery counts as an attempt, so a job that kills its
            # worker cannot loop forever.
            reason = f"gave up after {lease.max_attempts} attempts (its workers were lost)"
            await self._finish_failed(task, lease, reason, ctx=ctx)
            return
        if not await self._mark_running(task, lease):
            # Finished by another run between our read and now.
            await self.queue.complete(lease)
            return
        await ctx.emit(EventType.STEP_STARTED, SubmissionStatus.PROCESSING)
        try:
            try:
                outcome = await HANDLERS[step.name](ctx, task.submission)
            except StepFailed as exc:
                await self._finish_failed(task, lease, str(exc), ctx=ctx)
                return
            except (Superseded, asyncio.CancelledError):
                raise
            except Exception as exc:
                await self._retry_or_fail(task, lease, exc, ctx)
                return
            await self._finish_done(task, lease, outcome, ctx)
        except Superseded:
            # The job is another run's now: leave its lease and its row alone.
            log.warning("step.superseded", attempt=lease.attempts)

    async def _mark_running(self, task: Task, lease: Lease) -> bool:
        """Start a new run of the task; ``False`` if it has already finished."""
        now = utcnow()
        run_id = secrets.token_hex(8)
        async with self.sessions.begin() as db:
            result = await db.execute(
                update(Task)
                .where(Task.id == task.id, Task.status.not_in(TASK_TERMINAL))
                .values(
                    status=TaskStatus.RUNNING,
                    attempts=lease.attempts,
                    started_at=now,
                    progress=0,
                    run_id=run_id,
                )
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                return False
            if task.submission_id is not None:
                await db.execute(
                    update(Submission)
                    .where(
                        Submission.id == task.submission_id,
                        Submission.status == SubmissionStatus.RECEIVED,
                    )
                    .values(status=SubmissionStatus.PROCESSING)
                )
            db.add(TaskEvent(task_id=task.id, status=TaskStatus.RUNNING, attempt=lease.attempts))
        task.status, task.attempts, task.started_at = TaskStatus.RUNNING, lease.attempts, now
        task.progress, task.error, task.run_id = 0, None, run_id
        log.info("step.started", attempt=lease.attempts)
        return True

    async def _finish_done(
        self, task: Task, lease: Lease, outcome: StepOutcome, ctx: StepContext
    ) -> None:
        now = utcnow()
        last = task.step_index == len(SUBMISSION_STEPS) - 1
        if outcome.reject:
            sub_status = SubmissionStatus.REJECTED
        else:
            sub_status = SubmissionStatus.COMPLETE if last else SubmissionStatus.PROCESSING
        async with self.sessions.begin() as db:
            await _fenced_update(
                db,
                task,
                status=TaskStatus.DONE,
                progress=100,
                detail=outcome.detail,
                result=outcome.result,
                finished_at=now,
            )
            db.add(TaskEvent(task_id=task.id, status=TaskStatus.DONE, attempt=lease.attempts))
            submission_values: dict[str, Any] = {**outcome.submission_updates}
            if sub_status != SubmissionStatus.PROCESSING:
                submission_values["status"] = sub_status
            if submission_values:
                await db.execute(
                    update(Submission)
                    .where(Submission.id == task.submission_id)
                    .values(**submission_values)
                )
            later = TaskStatus.SKIPPED if outcome.reject else TaskStatus.QUEUED
            await self._advance_chain(db, task, later)
        task.status, task.progress, task.detail, task.finished_at = (
            TaskStatus.DONE,
            100,
            outcome.detail,
            now,
        )
        await self._enqueue_next(task)
        await self.queue.complete(lease)
        await ctx.emit(EventType.STEP_DONE, sub_status, outcome.reject)
        if sub_status != SubmissionStatus.PROCESSING:
            await ctx.emit(EventType.SUBMISSION_STATUS, sub_status, outcome.reject)
        log.info("step.done", detail=outcome.detail, submission_status=str(sub_status))

    async def _advance_chain(self, db: AsyncSession, task: Task, status: TaskStatus) -> None:
        """Queue the next step, or skip every later step of a rejected/failed submission."""
        assert task.step_index is not None
        now = utcnow()
        if status == TaskStatus.QUEUED:
            await db.execute(
                update(Task)
                .where(
                    Task.submission_id == task.submission_id,
                    Task.step_index == task.step_index + 1,
                    Task.status == TaskStatus.WAITING,
                )
                .values(status=TaskStatus.QUEUED, queued_at=now)
            )
        else:
            await db.execute(
                update(Task)
                .where(
                    Task.submission_id == task.submission_id,
                    Task.step_index > task.step_index,
                    Task.status == TaskStatus.WAITING,
                )
                .values(status=status, finished_at=now, detail="skipped: an earlier step ended it")
            )

    async def _enqueue_next(self, task: Task) -> None:
        if task.step_index is None:
            return
        async with self.sessions() as db:
            following = await db.scalar(
                select(Task).where(
                    Task.submission_id == task.submission_id,
                    Task.step_index == task.step_index + 1,
                    Task.status == TaskStatus.QUEUED,
                )
            )
        if following is not None:
            await self.queue.enqueue(job_for(following))

    async def _retry_or_fail(
        self, task: Task, lease: Lease, exc: BaseException, ctx: StepContext
    ) -> None:
        text = "".join(traceback.format_exception(exc))
        if lease.attempts >= lease.max_attempts:
            await self._finish_failed(task, lease, f"{type(exc).__name__}: {exc}", text, ctx)
            return
        delay = ctx.step.retry_delay(lease.attempts)
        log.warning(
            "step.retry", attempt=lease.attempts, delay=delay, error=repr(exc), exc_info=exc
        )
        detail = f"retrying in {delay:.0f}s after an error: {exc}"
        async with self.sessions.begin() as db:
            await _fenced_update(db, task, status=TaskStatus.QUEUED, error=text, detail=detail)
            db.add(
                TaskEvent(
                    task_id=task.id,
                    status=TaskStatus.QUEUED,
                    attempt=lease.attempts,
                    detail=repr(exc),
                )
            )
        task.status, task.detail = TaskStatus.QUEUED, detail
        await self.queue.release(lease, delay_seconds=delay)
        await ctx.emit(EventType.STEP_PROGRESS, SubmissionStatus.PROCESSING)

    async def _finish_failed(
        self,
        task: Task,
        lease: Lease,
        reason: str,
        trace: str | None = None,
        ctx: StepContext | None = None,
    ) -> None:
        now = utcnow()
        message = f"Processing failed: {reason}. Please upload the file again or contact staff."
        async with self.sessions.begin() as db:
            await _fenced_update(
                db,
                task,
                status=TaskStatus.FAILED,
                detail=reason,
                error=trace or reason,
                finished_at=now,
            )
            db.add(
                TaskEvent(
                    task_id=task.id, status=TaskStatus.FAILED, attempt=lease.attempts, detail=reason
                )
            )
            if task.submission_id is not None:
                await db.execute(
                    update(Submission)
                    .where(Submission.id == task.submission_id)
                    .values(status=SubmissionStatus.FAILED, status_detail=message)
                )
                await self._advance_chain(db, task, TaskStatus.SKIPPED)
        task.status, task.detail, task.finished_at = TaskStatus.FAILED, reason, now
        await self.queue.complete(lease)
        if ctx is not None:
            await ctx.emit(EventType.STEP_FAILED, SubmissionStatus.FAILED, message)
            await ctx.emit(EventType.SUBMISSION_STATUS, SubmissionStatus.FAILED, message)
        log.error("step.failed", reason=reason)

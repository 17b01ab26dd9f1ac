"""The engine: starts claimed batches, runs each task's handler, and settles endings
in batches (one DB transaction, then one Redis script per queue).

Order matters for crash safety: a run's end is committed to the DB before its
job leaves Redis, and whatever follows it (the pipeline's next step) is queued
before that. A crash in between re-runs at most the claim, which then finds the
task finished and only completes the job (see :mod:`workers.ledger`).

Settling batches itself: while one settle transaction runs, endings gather for
the next; an idle worker settles each ending at once.
"""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import Callable, Sequence

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald import names
from herald.db import Transactions
from herald.events import EventPublisher
from herald.logs import get_logger
from herald.metrics import RunEnd, RunOutcome, record_run_ends
from herald.models import TASK_TERMINAL, TaskStatus, utcnow
from herald.settings import Settings
from workers._waiting import backoff_delay, sleep_unless, wait_either
from workers.alerts import AlertSender, FailedTask
from workers.context import Services, TaskContext, TaskRun, task_state
from workers.kinds import TaskFailed, TaskKind, UnknownKind, kind_named
from workers.ledger import Settle, Started, settle_runs, start_runs
from workers.outputs import attach_output
from workers.queue import Lease, RedisQueue

__all__ = ["Engine"]

log = get_logger(__name__)

MAX_SETTLE_BACKOFF = 5.0


class Engine:
    """Turns claimed leases into finished, retried, failed or cancelled tasks."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        queue: RedisQueue,
        publisher: EventPublisher,
        transactions: Transactions,
        handler_redis: Redis | None = None,
        on_let_go: Callable[[Lease], None] = lambda lease: None,
    ) -> None:
        self.services = Services(settings, sessions, queue, publisher, handler_redis or queue.redis)
        self.transactions = transactions
        self.sessions = sessions
        self.queue = queue
        self.redis: Redis = queue.redis
        self.publisher = publisher
        # Called for every lease this engine is done with (completed, released,
        # superseded), so the worker frees its slot and stops renewing it.
        self.on_let_go = on_let_go
        self._pending: list[Settle] = []
        self._wake = asyncio.Event()
        # One batch write at a time per process: SQLite allows one writer, and a
        # second would sleep in SQLite's busy handler (1, 2, 5, 10… ms) rather than
        # queue here; with PostgreSQL the batches just grow.
        self._writing = asyncio.Lock()
        # Failure alerts go out in the background: the settle path never waits for them.
        self.alerts = AlertSender(settings, sessions, publisher)

    # --- starting ---------------------------------------------------------
    async def start(self, leases: Sequence[Lease]) -> list[TaskRun]:
        """Record a claimed batch as running; returns the runs whose handlers may start.

        Jobs of unknown kinds fail; jobs whose task is already finished are only
        completed; a job past its attempts (every orphan recovery counts) fails
        without running, so a job that kills its worker cannot loop forever.
        """
        known: list[tuple[Lease, TaskKind]] = []
        for lease in leases:
            try:
                known.append((lease, kind_named(lease.kind)))
            except UnknownKind as exc:
                log.error("task.unknown_kind", task_id=lease.id, kind=lease.kind)
                known.append((lease, _unrunnable(lease, str(exc))))
        now = utcnow()
        async with self._writing:
            started = await self.transactions.run(lambda conn: start_runs(conn, known, now))
        await self._after_start(started)
        runnable = []
        for run in started.runs:
            if run.attempts > run.max_attempts:
                reason = f"gave up after {run.max_attempts} attempts (its workers were lost)"
                self._settle(_failed(run, reason, None))
            else:
                runnable.append(run)
        return runnable

    async def _after_start(self, started: Started) -> None:
        for lease in started.orphans:
            log.warning("job.orphaned", task_id=lease.id, reason="no task row")
        if started.orphans:
            await self.queue.complete(*started.orphans)
            for lease in started.orphans:
                self.on_let_go(lease)
        for lease, spec, row in started.finished:
            # Finished before a crash took the lease: make sure what follows is queued.
            run = TaskRun(
                lease=lease,
                spec=spec,
                id=row["id"],
                params=row["params"] or {},
                owner_id=row["owner_id"],
                submission_id=row["submission_id"],
                step_index=row["step_index"],
                started_at=utcnow(),
                status=row["status"],
            )
            await spec.hooks.after_recovered(run, self.services)
        if started.finished:
            await self.queue.complete(*(lease for lease, _, _ in started.finished))
            for lease, _, _ in started.finished:
                self.on_let_go(lease)
        if started.runs:
            await self.publisher.publish(
                names.ADMIN_TASKS,
                names.EventType.TASKS_CHANGED,
                {"tasks": [task_state(run) for run in started.runs]},
            )
        for run in started.runs:
            await run.spec.hooks.after_started(run, self.services)

    # --- running ------------------------------------------------------------
    async def run(self, run: TaskRun) -> None:
        """Run the handler and queue its ending for the next settle.

        A cancel request or a lost lease interrupts the handler (the worker
        cancels this coroutine); a shutdown's cancellation propagates so the
        worker can hand the job back.
        """
        structlog.contextvars.bind_contextvars(task_id=run.id, kind=run.kind, attempt=run.attempts)
        if run.submission_id is not None:
            structlog.contextvars.bind_contextvars(submission_id=run.submission_id)
        ctx = (run.spec.make_context or TaskContext)(run, self.services)
        try:
            outcome = await run.spec.handler(ctx)
            if outcome is not None and outcome.output is not None:
                # Checked and described now: a file outside the task's folder is a bug.
                outcome = attach_output(self.services.settings, run.id, outcome)
            if outcome is not None and outcome.result is not None:
                json.dumps(outcome.result)  # a result the DB cannot store is the handler's bug
        except TaskFailed as exc:
            self._settle(_failed(run, str(exc), None))
            return
        except asyncio.CancelledError:
            if not (run.cancel_requested or run.lease_lost):
                raise
            # Our own cancellation, for a reason recorded on the run: not a shutdown.
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            if run.lease_lost:
                log.warning("task.superseded", reason="lease lost to another worker")
                self.on_let_go(run.lease)
                return
            self._settle(Settle(run, TaskStatus.CANCELLED, detail="cancelled"))
            return
        except Exception as exc:
            self._settle(self._retry_or_fail(run, exc))
            return
        detail = outcome.detail if outcome else None
        self._settle(Settle(run, TaskStatus.DONE, outcome=outcome, detail=detail))

    def _retry_or_fail(self, run: TaskRun, exc: Exception) -> Settle:
        trace = "".join(traceback.format_exception(exc))
        if run.attempts >= run.max_attempts:
            return _failed(run, f"{type(exc).__name__}: {exc}", trace)
        delay = run.spec.retry_delay(run.attempts)
        log.warning("task.retry", delay=delay, error=repr(exc), exc_info=exc)
        return Settle(
            run,
            TaskStatus.QUEUED,
            detail=f"retrying in {delay:.0f}s after an error: {exc}",
            error=trace,
            delay=delay,
        )

    def _settle(self, item: Settle) -> None:
        self._pending.append(item)
        self._wake.set()

    # --- settling -------------------------------------------------------------
    async def settle_forever(self, stop: asyncio.Event) -> None:
        """Write pending endings in batches until ``stop`` is set and none is left."""
        failures = 0
        while True:
            if not self._pending:
                if stop.is_set():
                    await self.alerts.drain()
                    return
                await wait_either(self._wake, stop)
                self._wake.clear()
                continue
            batch, self._pending = self._pending, []
            try:
                await asyncio.shield(self._settle_batch(batch))
                failures = 0
            except (SQLAlchemyError, RedisError, OSError) as exc:
                # The runs keep their leases (heartbeats go on); try the batch again.
                self._pending = batch + self._pending
                failures += 1
                delay = backoff_delay(failures, MAX_SETTLE_BACKOFF)
                log.warning("settle.failed", error=str(exc), retry_in=delay, runs=len(batch))
                await sleep_unless(stop, delay)

    async def _settle_batch(self, batch: list[Settle]) -> None:
        now = utcnow()
        async with self._writing:
            others = await self.transactions.run(lambda conn: settle_runs(conn, batch, now))
        for item in batch:
            # A retried batch whose DB part committed before Redis failed: the row
            # already holds this run's end, so only the Redis part and events remain.
            if others.get(item.run.id) == (item.status, item.run.run_id):
                item.applied = True
        finished: list[Lease] = []
        failed: list[Settle] = []
        for item in batch:
            run = item.run
            if item.applied:
                run.status, run.finished_at = item.status, now
                run.detail = item.detail
                if item.status == TaskStatus.QUEUED:
                    await self.queue.release(run.lease, delay_seconds=item.delay)
                    continue
                if item.status == TaskStatus.FAILED:
                    failed.append(item)
                finished.append(run.lease)
            elif run.id not in others or others[run.id][0] in TASK_TERMINAL:
                # Finished by someone else (an operator's cancel): the job is done with.
                finished.append(run.lease)
        follow_ups = [job for item in batch if item.applied for job in item.follow_ups]
        if follow_ups:
            # Before the finished jobs leave Redis: a crash in between then re-runs
            # at most a claim, never strands the next step.
            await self.queue.enqueue(*follow_ups)
        if finished:
            await self.queue.complete(*finished)
        if failed:
            await self._dead_letter(failed, now.timestamp())
        await self._announce(batch)
        await self._count(batch)

    async def _dead_letter(self, failed: list[Settle], at: float) -> None:
        await self.redis.zadd(
            names.DEAD_LETTER_KEY, {str(item.run.id): int(at * 1000) for item in failed}
        )
        for item in failed:
            alert = {**task_state(item.run), "error": item.detail}
            await self.publisher.publish(names.ADMIN_TASKS, names.EventType.TASK_FAILED, alert)
        self.alerts.failed(
            [
                FailedTask(item.run.id, item.run.run_id, item.run.kind, item.run.queue, item.detail)
                for item in failed
            ]
        )

    async def _count(self, batch: list[Settle]) -> None:
        """Add the batch's runs to the cluster's metrics (one round trip); metrics
        are not worth retrying a settle for."""
        ends = [
            RunEnd(
                item.run.queue,
                item.run.kind,
                _OUTCOMES[item.status],
                (item.run.finished_at or item.run.started_at).timestamp()
                - item.run.started_at.timestamp(),
            )
            for item in batch
            if item.applied and item.status in _OUTCOMES
        ]
        try:
            await record_run_ends(self.redis, ends)
        except RedisError as exc:
            log.warning("metrics.not_recorded", runs=len(ends), error=str(exc))

    async def _announce(self, batch: list[Settle]) -> None:
        """Events, logs and hooks after a settle is committed and Redis updated."""
        applied = [item for item in batch if item.applied]
        if applied:
            await self.publisher.publish(
                names.ADMIN_TASKS,
                names.EventType.TASKS_CHANGED,
                {"tasks": [task_state(item.run) for item in applied]},
            )
        for item in batch:
            run = item.run
            self.on_let_go(run.lease)
            if not item.applied:
                log.warning("task.superseded", task_id=run.id, kind=run.kind)
                continue
            if run.owner_id is not None and run.spec.notify_owner:
                await self.publisher.publish(
                    names.user_topic(run.owner_id), names.EventType.TASK_STATE, task_state(run)
                )
            if item.status == TaskStatus.QUEUED:
                await run.spec.hooks.after_retry(run, self.services)
            else:
                await run.spec.hooks.after_settled(run, item.outcome, self.services)
            _log_end(item)


_OUTCOMES = {
    TaskStatus.DONE: RunOutcome.PROCESSED,
    TaskStatus.FAILED: RunOutcome.FAILED,
    TaskStatus.QUEUED: RunOutcome.RETRIED,
    TaskStatus.CANCELLED: RunOutcome.CANCELLED,
}


def _failed(run: TaskRun, reason: str, trace: str | None) -> Settle:
    return Settle(run, TaskStatus.FAILED, detail=reason, error=trace or reason)


def _unrunnable(lease: Lease, reason: str) -> TaskKind:
    """A stand-in kind for a job no registered kind can run: it fails at once, honestly."""

    async def refuse(_ctx: TaskContext) -> None:
        raise TaskFailed(reason)

    return TaskKind(lease.kind, lease.queue, refuse, max_attempts=1)


def _log_end(item: Settle) -> None:
    run = item.run
    seconds = (run.finished_at or run.started_at).timestamp() - run.started_at.timestamp()
    fields = {
        "task_id": run.id,
        "kind": run.kind,
        "attempt": run.attempts,
        "duration_ms": round(seconds * 1000, 1),
    }
    if run.submission_id is not None:
        fields["submission_id"] = run.submission_id
    if item.status == TaskStatus.FAILED:
        log.error("task.failed", reason=item.detail, **fields)
    elif item.status == TaskStatus.CANCELLED:
        log.info("task.cancelled", **fields)
    elif run.spec.quiet:
        log.debug("task.done", **fields)
    else:
        log.info("task.done", detail=item.detail, **fields)

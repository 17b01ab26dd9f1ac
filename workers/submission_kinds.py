"""The submission pipeline's steps as task kinds, and the hooks that keep each
submission (status, the chain of steps) in step with its tasks, in the same
transactions as the task rows."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, select, update

from herald.marking import announce_marking
from herald.models import (
    SUBMISSION_FINAL,
    Submission,
    SubmissionStatus,
    Task,
    TaskStatus,
    utcnow,
)
from herald.names import EventType
from workers.context import Services, TaskContext, TaskRun
from workers.kinds import KindHooks, Outcome, TaskKind, register
from workers.pipeline import (
    SUBMISSION_STEPS,
    PipelineStep,
    pipeline_finished,
    ready_steps,
    step_kind,
)
from workers.queue import Job, job_for
from workers.step_context import StepContext, StepFailed, StepOutcome, emit_step
from workers.step_handlers import HANDLERS

__all__ = ["SUBMISSION_HOOKS", "failure_message"]


def failure_message(reason: str) -> str:
    """What the student reads when a step fails for good."""
    return f"Processing failed: {reason}. Please upload the file again or contact staff."


def _pipeline_step(run: TaskRun) -> PipelineStep:
    assert run.step_index is not None
    return SUBMISSION_STEPS[run.step_index]


def _lock_submission(conn: Connection, submission_id: int | None) -> None:
    # Steps that run side by side settle in concurrent transactions, and each must
    # see the others' ends to know whether it unblocked the next step. Locking the
    # submission row serialises them: the later one sees the earlier one committed.
    # (SQLite serialises every writer already and ignores FOR UPDATE.)
    conn.execute(select(Submission.id).where(Submission.id == submission_id).with_for_update())


def _statuses(conn: Connection, submission_id: int | None) -> dict[int, TaskStatus]:
    rows = conn.execute(
        select(Task.step_index, Task.status).where(Task.submission_id == submission_id)
    )
    return {row.step_index: TaskStatus(row.status) for row in rows if row.step_index is not None}


def _advance(conn: Connection, run: TaskRun) -> list[Job]:
    """After a step settled: queue the steps it unblocked, or complete the submission."""
    statuses = _statuses(conn, run.submission_id)
    ready = ready_steps(statuses)
    if ready:
        queued = conn.execute(
            update(Task)
            .where(
                Task.submission_id == run.submission_id,
                Task.step_index.in_(ready),
                Task.status == TaskStatus.WAITING,
            )
            .values(status=TaskStatus.QUEUED, queued_at=utcnow())
            .returning(
                Task.id, Task.kind, Task.queue, Task.priority, Task.max_attempts, Task.immediate
            )
        )
        return [job_for(row) for row in queued]
    if pipeline_finished(statuses):
        conn.execute(
            update(Submission)
            .where(
                Submission.id == run.submission_id,
                Submission.status.not_in(SUBMISSION_FINAL),
            )
            .values(status=SubmissionStatus.COMPLETE)
        )
    return []


def _skip_waiting(conn: Connection, run: TaskRun) -> None:
    """Skip every step still waiting: the submission was rejected or failed."""
    conn.execute(
        update(Task)
        .where(Task.submission_id == run.submission_id, Task.status == TaskStatus.WAITING)
        .values(
            status=TaskStatus.SKIPPED,
            finished_at=utcnow(),
            detail="skipped: an earlier step ended it",
        )
    )


class SubmissionHooks(KindHooks):
    def on_started(self, conn: Connection, runs: Sequence[TaskRun]) -> None:
        conn.execute(
            update(Submission)
            .where(
                Submission.id.in_([run.submission_id for run in runs]),
                Submission.status == SubmissionStatus.RECEIVED,
            )
            .values(status=SubmissionStatus.PROCESSING)
        )

    async def after_started(self, run: TaskRun, services: Services) -> None:
        await emit_step(
            services.publisher, run, EventType.STEP_STARTED, SubmissionStatus.PROCESSING
        )

    def on_done(self, conn: Connection, run: TaskRun, outcome: Outcome) -> list[Job]:
        _lock_submission(conn, run.submission_id)
        values = dict(outcome.submission_updates) if isinstance(outcome, StepOutcome) else {}
        if isinstance(outcome, StepOutcome) and outcome.reject:
            values["status"] = SubmissionStatus.REJECTED
        if values:
            conn.execute(
                update(Submission).where(Submission.id == run.submission_id).values(**values)
            )
        if "status" in values:
            _skip_waiting(conn, run)
            return []
        return _advance(conn, run)

    def on_ended(self, conn: Connection, run: TaskRun, reason: str) -> list[Job]:
        _lock_submission(conn, run.submission_id)
        if not _pipeline_step(run).essential:
            # Reported on its own row; the rest of the pipeline does what it can.
            return _advance(conn, run)
        conn.execute(
            update(Submission)
            .where(Submission.id == run.submission_id)
            .values(status=SubmissionStatus.FAILED, status_detail=failure_message(reason))
        )
        _skip_waiting(conn, run)
        return []

    async def after_settled(
        self, run: TaskRun, outcome: Outcome | None, services: Services
    ) -> None:
        status = await self._submission_status(run, services)
        final = status in SUBMISSION_FINAL
        if run.status == TaskStatus.DONE:
            reject = outcome.reject if isinstance(outcome, StepOutcome) else None
            await emit_step(services.publisher, run, EventType.STEP_DONE, status, reject)
        else:
            detail = run.detail or str(run.status)
            if _pipeline_step(run).essential or status == SubmissionStatus.FAILED:
                detail = failure_message(detail)
            await emit_step(services.publisher, run, EventType.STEP_FAILED, status, detail)
        if final:
            async with services.sessions() as db:
                ended = (
                    await db.execute(
                        select(Submission.status_detail, Submission.assignment_id).where(
                            Submission.id == run.submission_id
                        )
                    )
                ).one()
            await emit_step(
                services.publisher, run, EventType.SUBMISSION_STATUS, status, ended.status_detail
            )
            await announce_marking(services.publisher, ended.assignment_id)

    async def after_recovered(self, run: TaskRun, services: Services) -> None:
        # Its events went out with its first settle; only make sure the jobs of the
        # steps it queued exist.
        await self._enqueue_queued(run, services)

    async def after_retry(self, run: TaskRun, services: Services) -> None:
        await emit_step(
            services.publisher, run, EventType.STEP_PROGRESS, SubmissionStatus.PROCESSING
        )

    def on_retried(self, conn: Connection, task_id: int) -> None:
        task = conn.execute(
            select(Task.submission_id, Task.step_index).where(Task.id == task_id)
        ).first()
        if task is None or task.step_index is None:
            return
        conn.execute(
            update(Submission)
            .where(Submission.id == task.submission_id)
            .values(status=SubmissionStatus.PROCESSING, status_detail=None)
        )
        conn.execute(
            update(Task)
            .where(
                Task.submission_id == task.submission_id,
                Task.step_index > task.step_index,
                Task.status == TaskStatus.SKIPPED,
            )
            .values(status=TaskStatus.WAITING, finished_at=None, detail=None)
        )

    async def _submission_status(self, run: TaskRun, services: Services) -> SubmissionStatus:
        async with services.sessions() as db:
            status = await db.scalar(
                select(Submission.status).where(Submission.id == run.submission_id)
            )
        return SubmissionStatus(status) if status is not None else SubmissionStatus.FAILED

    async def _enqueue_queued(self, run: TaskRun, services: Services) -> None:
        async with services.sessions() as db:
            queued = (
                await db.scalars(
                    select(Task).where(
                        Task.submission_id == run.submission_id,
                        Task.status == TaskStatus.QUEUED,
                    )
                )
            ).all()
        for task in queued:
            await services.queue.enqueue(job_for(task))


SUBMISSION_HOOKS = SubmissionHooks()


def _step_handler(step: PipelineStep):  # type: ignore[no-untyped-def]
    async def handle(ctx: TaskContext) -> Outcome:
        async with ctx.sessions() as db:
            submission = await db.get(Submission, ctx.run.submission_id)
        if submission is None:
            raise StepFailed("the submission no longer exists")
        assert isinstance(ctx, StepContext)
        # Looked up per call, so a test can swap a handler in for a fault.
        return await HANDLERS[step.name](ctx, submission)

    return handle


for _step in SUBMISSION_STEPS:
    register(
        TaskKind(
            step_kind(_step),
            _step.queue,
            _step_handler(_step),
            label=_step.label,
            max_attempts=_step.max_attempts,
            retry_base=_step.retry_base,
            hooks=SUBMISSION_HOOKS,
            notify_owner=False,
            make_context=StepContext,
        )
    )

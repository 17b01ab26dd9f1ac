"""The submission pipeline's steps as task kinds, and the hooks that keep each
submission (status, the chain of steps) in step with its tasks, in the same
transactions as the task rows."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, select, update

from herald.models import Submission, SubmissionStatus, Task, TaskStatus, utcnow
from herald.names import EventType
from workers.context import Services, TaskContext, TaskRun
from workers.kinds import KindHooks, Outcome, TaskKind, register
from workers.pipeline import SUBMISSION_STEPS, PipelineStep, step_kind
from workers.queue import Job, job_for
from workers.step_context import StepContext, StepFailed, StepOutcome, emit_step
from workers.steps import HANDLERS

__all__ = ["SUBMISSION_HOOKS", "failure_message"]


def failure_message(reason: str) -> str:
    """What the student reads when a step fails for good."""
    return f"Processing failed: {reason}. Please upload the file again or contact staff."


def _is_last(run: TaskRun) -> bool:
    return run.step_index == len(SUBMISSION_STEPS) - 1


def _status_after(run: TaskRun, outcome: Outcome | None) -> SubmissionStatus:
    if isinstance(outcome, StepOutcome) and outcome.reject:
        return SubmissionStatus.REJECTED
    return SubmissionStatus.COMPLETE if _is_last(run) else SubmissionStatus.PROCESSING


def _queue_next(conn: Connection, run: TaskRun) -> list[Job]:
    """Queue the step after ``run``'s; the job that runs it, if there is one."""
    assert run.step_index is not None
    queued = conn.execute(
        update(Task)
        .where(
            Task.submission_id == run.submission_id,
            Task.step_index == run.step_index + 1,
            Task.status == TaskStatus.WAITING,
        )
        .values(status=TaskStatus.QUEUED, queued_at=utcnow())
        .returning(Task.id, Task.kind, Task.queue, Task.priority, Task.max_attempts, Task.immediate)
    )
    return [job_for(row) for row in queued]


def _skip_rest(conn: Connection, run: TaskRun) -> None:
    """Skip every later step of a rejected or failed submission."""
    assert run.step_index is not None
    conn.execute(
        update(Task)
        .where(
            Task.submission_id == run.submission_id,
            Task.step_index > run.step_index,
            Task.status == TaskStatus.WAITING,
        )
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
        values = dict(outcome.submission_updates) if isinstance(outcome, StepOutcome) else {}
        status = _status_after(run, outcome)
        if status != SubmissionStatus.PROCESSING:
            values["status"] = status
        if values:
            conn.execute(
                update(Submission).where(Submission.id == run.submission_id).values(**values)
            )
        if status == SubmissionStatus.PROCESSING:
            return _queue_next(conn, run)
        _skip_rest(conn, run)
        return []

    def on_ended(self, conn: Connection, run: TaskRun, reason: str) -> None:
        conn.execute(
            update(Submission)
            .where(Submission.id == run.submission_id)
            .values(status=SubmissionStatus.FAILED, status_detail=failure_message(reason))
        )
        _skip_rest(conn, run)

    async def after_settled(
        self, run: TaskRun, outcome: Outcome | None, services: Services
    ) -> None:
        if outcome is None:
            # A recovered job whose task had finished: its events went out with its
            # first settle; only make sure the next step's job exists.
            if run.status == TaskStatus.DONE:
                await self._enqueue_next(run, services)
            return
        if run.status == TaskStatus.DONE:
            status = _status_after(run, outcome)
            reject = outcome.reject if isinstance(outcome, StepOutcome) else None
            await emit_step(services.publisher, run, EventType.STEP_DONE, status, reject)
            if status != SubmissionStatus.PROCESSING:
                await emit_step(
                    services.publisher, run, EventType.SUBMISSION_STATUS, status, reject
                )
            return
        message = failure_message(run.detail or str(run.status))
        for type_ in (EventType.STEP_FAILED, EventType.SUBMISSION_STATUS):
            await emit_step(services.publisher, run, type_, SubmissionStatus.FAILED, message)

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

    async def _enqueue_next(self, run: TaskRun, services: Services) -> None:
        async with services.sessions() as db:
            following = await db.scalar(
                select(Task).where(
                    Task.submission_id == run.submission_id,
                    Task.step_index == (run.step_index or 0) + 1,
                    Task.status == TaskStatus.QUEUED,
                )
            )
        if following is not None:
            await services.queue.enqueue(job_for(following))


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

"""The submission pipeline: which steps run, after which others, on which queue.

The steps form a graph: a step runs once every step it comes ``after`` has
settled (done, skipped, or failed for good if that step is not essential), so
steps with the same prerequisites run side by side on whatever workers are free.
Each step is its own task (a DB row and a queue job). Only the first step is
queued at upload; when a step settles, the worker queues every step it unblocked
in the same DB transaction that records the settle.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from herald.events import iso
from herald.models import (
    SUBMISSION_FINAL,
    Submission,
    SubmissionStatus,
    Task,
    TaskStatus,
    utcnow,
)

__all__ = [
    "STEP_INDEX",
    "SUBMISSION_STEPS",
    "PipelineStep",
    "StepLike",
    "check_graph",
    "overall_progress",
    "pipeline_finished",
    "plan_submission_tasks",
    "ready_steps",
    "settled",
    "step_kind",
    "step_progress",
    "step_state",
    "submission_task_rows",
]


@dataclass(frozen=True)
class PipelineStep:
    name: str
    queue: str
    label: str
    after: tuple[str, ...] = ()  # the steps that must settle first
    # A non-essential step that fails for good is reported and the pipeline goes on;
    # an essential one ends the submission as failed.
    essential: bool = True
    retry_base: float = 1.0  # seconds before the first retry; doubles each attempt
    max_attempts: int = 3


class StepLike(Protocol):
    """A pipeline task as the wire shows it: a DB row or a live run."""

    @property
    def step_index(self) -> int | None: ...

    @property
    def status(self) -> TaskStatus: ...

    @property
    def progress(self) -> int: ...

    @property
    def detail(self) -> str | None: ...

    @property
    def started_at(self) -> datetime | None: ...

    @property
    def finished_at(self) -> datetime | None: ...


# I/O-bound steps share the "io" queue; CPU-bound ones the "cpu" queue, so a
# deployment can size each pool for its nature. Listed in an order where every
# step comes after its prerequisites; that order is also how pages list them.
SUBMISSION_STEPS: tuple[PipelineStep, ...] = (
    PipelineStep("scan", "cpu", "Scanning for viruses"),
    PipelineStep("store", "io", "Storing the file", after=("scan",)),
    PipelineStep("record", "cpu", "Recording the submission", after=("store",)),
    # Side by side once recorded; none of them stops the student's submission.
    PipelineStep(
        "plagiarism",
        "cpu",
        "Checking similarity",
        after=("record",),
        essential=False,
        retry_base=5.0,
        max_attempts=5,
    ),
    PipelineStep(
        "admin_sync",
        "io",
        "Telling the admin system",
        after=("record",),
        essential=False,
        retry_base=2.0,
        max_attempts=8,
    ),
    PipelineStep("thumbnail", "cpu", "Making a preview", after=("record",), essential=False),
    PipelineStep(
        "notify",
        "io",
        "Sending the receipt",
        after=("plagiarism", "admin_sync", "thumbnail"),
        essential=False,
    ),
)
STEP_INDEX: dict[str, int] = {step.name: index for index, step in enumerate(SUBMISSION_STEPS)}

# A step's prerequisites are met when each has settled: done, skipped, or (when not
# essential) failed for good or cancelled.
_SETTLED = frozenset({TaskStatus.DONE, TaskStatus.SKIPPED})
_ENDED = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED})


def check_graph(steps: tuple[PipelineStep, ...]) -> None:
    """Raise ValueError unless every step comes after steps listed before it."""
    if steps and steps[0].after:
        raise ValueError("the first step must have no prerequisites")
    seen: set[str] = set()
    for step in steps:
        missing = [name for name in step.after if name not in seen]
        if missing:
            raise ValueError(f"step {step.name!r} comes after {missing}, listed later or unknown")
        seen.add(step.name)


check_graph(SUBMISSION_STEPS)


def settled(step: PipelineStep, status: TaskStatus) -> bool:
    """Whether a step in ``status`` lets the steps after it run."""
    return status in _SETTLED or (status in _ENDED and not step.essential)


def ready_steps(
    statuses: dict[int, TaskStatus], steps: tuple[PipelineStep, ...] = SUBMISSION_STEPS
) -> list[int]:
    """The waiting steps (by index) whose prerequisites have all settled."""
    index_of = {step.name: index for index, step in enumerate(steps)}

    def is_settled(name: str) -> bool:
        index = index_of[name]
        return settled(steps[index], statuses.get(index, TaskStatus.WAITING))

    return [
        index
        for index, step in enumerate(steps)
        if statuses.get(index) == TaskStatus.WAITING and all(map(is_settled, step.after))
    ]


def pipeline_finished(
    statuses: dict[int, TaskStatus], steps: tuple[PipelineStep, ...] = SUBMISSION_STEPS
) -> bool:
    """Whether every step has settled: the submission is complete."""
    return all(
        settled(step, statuses.get(index, TaskStatus.WAITING)) for index, step in enumerate(steps)
    )


def step_kind(step: PipelineStep) -> str:
    return f"submission.{step.name}"


def submission_task_rows(submission_id: int, student_id: int) -> list[dict[str, Any]]:
    """The pipeline's task rows for a new submission, as column values (first queued,
    rest waiting): what one multi-row INSERT writes."""
    now = utcnow()
    return [
        {
            "kind": step_kind(step),
            "queue": step.queue,
            "priority": 0,
            "immediate": False,
            "status": TaskStatus.QUEUED if index == 0 else TaskStatus.WAITING,
            "progress": 0,
            "params": {"submission_id": submission_id, "step": step.name},
            "attempts": 0,
            "owner_id": student_id,
            "submission_id": submission_id,
            "step_index": index,
            "created_at": now,
            "queued_at": now if index == 0 else None,
            "max_attempts": step.max_attempts,
        }
        for index, step in enumerate(SUBMISSION_STEPS)
    ]


def plan_submission_tasks(submission: Submission) -> list[Task]:
    """The pipeline's task rows for a new submission, as ORM objects (its id known)."""
    return [
        Task(**row, submission=submission)
        for row in submission_task_rows(submission.id, submission.student_id)
    ]


# The submission's state on the wire: the HTTP API and the events both use these,
# so a page that resyncs from the API sees exactly what the events told it.
_STEP_FINISHED = frozenset({TaskStatus.DONE, TaskStatus.SKIPPED})


def step_progress(task: StepLike) -> int:
    """0-100 for one step; a finished or skipped step counts in full."""
    if task.status in _STEP_FINISHED:
        return 100
    return max(0, min(100, task.progress or 0))


def overall_progress(status: SubmissionStatus, step_progresses: Iterable[int]) -> int:
    """0-100 over all pipeline steps (missing ones count 0); a finished submission is 100."""
    if status in SUBMISSION_FINAL:
        return 100
    return sum(step_progresses) // len(SUBMISSION_STEPS)


def step_state(task: StepLike) -> dict[str, Any]:
    """A pipeline task's absolute state, as events and the HTTP API show it."""
    step = SUBMISSION_STEPS[task.step_index or 0]
    return {
        "name": step.name,
        "label": step.label,
        "status": str(task.status),
        "progress": step_progress(task),
        "detail": task.detail,
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
    }

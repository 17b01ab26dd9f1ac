"""What a submission pipeline step sees beyond a plain task: its step, its submission's
topic, and what a step hands back (updates to the submission, or a rejection)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from herald.events import EventPublisher
from herald.models import SUBMISSION_FINAL, SubmissionStatus
from herald.names import EventType, submission_topic
from workers.context import TaskContext, TaskRun
from workers.kinds import Outcome, TaskFailed
from workers.pipeline import step_state as _step_state

__all__ = ["StepContext", "StepFailed", "StepOutcome", "emit_step", "submission_state"]


class StepFailed(TaskFailed):
    """A step that cannot succeed, however often it is retried."""


@dataclass(frozen=True)
class StepOutcome(Outcome):
    submission_updates: dict[str, Any] = field(default_factory=dict)
    reject: str | None = None  # the submission is refused with this reason


def submission_state(
    submission_id: int, status: SubmissionStatus, progress: int | None, detail: str | None
) -> dict[str, Any]:
    return {"id": submission_id, "status": str(status), "progress": progress, "detail": detail}


async def emit_step(
    publisher: EventPublisher,
    run: TaskRun,
    type_: EventType,
    status: SubmissionStatus,
    detail: str | None = None,
) -> None:
    """Publish a step's state with its submission's on ``submission.{id}``."""
    assert run.submission_id is not None
    # Steps run side by side, so one step's event cannot know the overall figure:
    # pages sum it from their step rows; only a final status fixes it at 100.
    progress = 100 if status in SUBMISSION_FINAL else None
    await publisher.publish(
        submission_topic(run.submission_id),
        type_,
        {
            "submission": submission_state(run.submission_id, status, progress, detail),
            "step": _step_state(run),
        },
    )


class StepContext(TaskContext):
    """A :class:`TaskContext` whose progress goes to the submission's topic."""

    async def emit_progress(self) -> None:
        await emit_step(
            self.publisher, self.run, EventType.STEP_PROGRESS, SubmissionStatus.PROCESSING
        )

"""Which steps a settled step unblocks, on a diamond like the real pipeline's
(one step, three side by side, one joining them), with essential and optional steps."""

from __future__ import annotations

import pytest

from herald.models import TaskStatus
from workers.pipeline import (
    SUBMISSION_STEPS,
    PipelineStep,
    check_graph,
    pipeline_finished,
    ready_steps,
)

W, Q, R, D, F, C, S = (
    TaskStatus.WAITING,
    TaskStatus.QUEUED,
    TaskStatus.RUNNING,
    TaskStatus.DONE,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
    TaskStatus.SKIPPED,
)

DIAMOND = (
    PipelineStep("record", "cpu", "Record"),
    PipelineStep("similarity", "cpu", "Similarity", after=("record",), essential=False),
    PipelineStep("sync", "io", "Sync", after=("record",), essential=False),
    PipelineStep("preview", "cpu", "Preview", after=("record",)),
    PipelineStep("notify", "io", "Notify", after=("similarity", "sync", "preview")),
)


def _statuses(*values: TaskStatus) -> dict[int, TaskStatus]:
    return dict(enumerate(values))


@pytest.mark.parametrize(
    ("statuses", "ready", "finished"),
    [
        ((R, W, W, W, W), [], False),
        ((D, W, W, W, W), [1, 2, 3], False),  # the fan-out: three side by side
        ((D, D, R, D, W), [], False),  # the join waits for the last one
        ((D, D, D, D, W), [4], False),
        ((D, F, C, D, W), [4], False),  # optional steps failing or cancelled: go on
        ((D, D, D, F, W), [], False),  # an essential one failing: the join never runs
        ((D, D, Q, D, W), [], False),  # queued is not settled
        ((D, D, D, D, D), [], True),
        ((D, F, S, D, D), [], True),
        ((D, D, D, F, S), [], False),
    ],
)
def test_ready_and_finished(
    statuses: tuple[TaskStatus, ...], ready: list[int], finished: bool
) -> None:
    assert ready_steps(_statuses(*statuses), DIAMOND) == ready
    assert pipeline_finished(_statuses(*statuses), DIAMOND) is finished


def test_only_waiting_steps_are_ever_ready() -> None:
    """A step already queued (by the other branch's settle) is not queued twice."""
    assert ready_steps(_statuses(D, D, D, D, Q), DIAMOND) == []


def test_graph_order_is_checked() -> None:
    check_graph(DIAMOND)
    check_graph(SUBMISSION_STEPS)
    with pytest.raises(ValueError, match="listed later or unknown"):
        check_graph((DIAMOND[0], DIAMOND[4], *DIAMOND[1:4]))
    with pytest.raises(ValueError, match="first step"):
        check_graph((DIAMOND[1],))

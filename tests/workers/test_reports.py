"""The report kinds on a real worker and each database: the grades CSV, the similarity
overview as CSV and as PDF (read back with PDFium), and the queue statistics; each
recorded on its task as a download, with formulas defused."""

from __future__ import annotations

from datetime import timedelta

import pypdfium2 as pdfium
from sqlalchemy import update

from herald.models import Task, TaskStatus, utcnow
from tests.workers.outputs_support import (  # noqa: F401 - the fixture
    Classroom,
    classroom_fixture,
    column,
    output_path,
    read_csv,
)
from workers.catalog import GRADES_REPORT, QUEUE_STATS_REPORT, SIMILARITY_REPORT
from workers.outputs import output_info
from workers.reports import percentile


async def test_grades_report_lists_every_submission_with_its_grade(classroom: Classroom) -> None:
    """One row per submission by student, with status, grade and release time; the task
    records the file as its output."""
    task = await classroom.run_one(GRADES_REPORT, {"assignment_id": classroom.assignment_id})
    rows = read_csv(output_path(classroom.settings, task))
    subs = classroom.submissions
    # Bob's display name starts with "=": written as text, never as a formula.
    assert column(rows, "student") == [
        '\'=HYPERLINK("http://evil.test","Bob")',
        '\'=HYPERLINK("http://evil.test","Bob")',
        "Alice Student",
        "Alice Student",
    ]
    by_id = {int(row["submission id"]): row for row in rows}
    assert set(by_id) == set(subs.values())
    alice = by_id[subs["alice"]]
    assert (alice["username"], alice["file"], alice["status"], alice["grade"]) == (
        "alice",
        "essay.txt",
        "complete",
        "B",
    )
    assert alice["released at (UTC)"] != "" and alice["submitted at (UTC)"] != ""
    assert by_id[subs["alice-2"]]["grade"] == "A-"
    assert by_id[subs["alice-2"]]["released at (UTC)"] == ""
    assert by_id[subs["bob-rejected"]]["status"] == "rejected"
    info = output_info(classroom.settings, task)
    assert info is not None
    assert info["filename"].endswith("-grades.csv") and info["filename"].startswith("DEMO101-")
    assert info["content_type"] == "text/csv; charset=utf-8"
    assert info["size"] == output_path(classroom.settings, task).stat().st_size
    assert info["available"] is True and info["purged_at"] is None
    assert info["url"] == f"/api/tasks/{task.id}/output"
    assert task.detail == "4 submissions, 2 graded"


async def test_similarity_overview_as_csv_uses_the_recorded_checks(classroom: Classroom) -> None:
    """Highest score first, closest match named, unchecked and failed checks said so."""
    task = await classroom.run_one(
        SIMILARITY_REPORT, {"assignment_id": classroom.assignment_id, "format": "csv"}
    )
    rows = read_csv(output_path(classroom.settings, task))
    subs = classroom.submissions
    assert [int(r["submission id"]) for r in rows[:2]] == [subs["bob"], subs["alice"]]
    bob = rows[0]
    assert bob["similarity %"] == "62.5"
    assert bob["closest submission"] == f"#{subs['alice-2']}"
    assert bob["closest student"] == "alice"
    assert bob["closest %"] == "62.5"
    assert bob["other matches"] == f"#{subs['alice']} alice 12.5%"
    assert bob["compared with"] == "2" and bob["engine"] == "built-in"
    by_id = {int(r["submission id"]): r for r in rows}
    assert by_id[subs["alice-2"]]["check"] == "failed"
    assert by_id[subs["alice-2"]]["similarity %"] == ""
    assert by_id[subs["bob-rejected"]]["check"] == "not checked"
    assert task.detail == "4 submissions, 2 checked, highest 62%"


async def test_similarity_overview_as_pdf_reads_back(classroom: Classroom) -> None:
    """A real PDF: PDFium opens it and its text holds the students and scores."""
    task = await classroom.run_one(
        SIMILARITY_REPORT, {"assignment_id": classroom.assignment_id, "format": "pdf"}
    )
    path = output_path(classroom.settings, task)
    assert path.suffix == ".pdf"
    info = output_info(classroom.settings, task)
    assert info is not None and info["content_type"] == "application/pdf"
    document = pdfium.PdfDocument(path)
    try:
        text = "\n".join(page.get_textpage().get_text_range() for page in document)
        title = document.get_metadata_dict()["Title"]
    finally:
        document.close()
    assert title == "Similarity overview: Essay 1: Background tasks in practice"
    lines = text.splitlines()
    bob_line = next(line for line in lines if f" {classroom.submissions['bob']} " in line)
    assert "62.5%" in bob_line and f"#{classroom.submissions['alice-2']}" in bob_line
    assert any("Alice Student (alice)" in line and "failed" in line for line in lines)
    assert "page 1 of 1" in text


async def test_queue_stats_count_by_status_with_run_time_percentiles(
    classroom: Classroom,
) -> None:
    """Per queue and kind: counts by status, and p50/p95 of the finished runs' times."""
    now = utcnow()
    ids = [await classroom.submit("diag.noop", {}, owner=None) for _ in range(4)]
    await classroom.run(*ids)
    async with classroom.sessions.begin() as db:
        # Known run times: 1, 2, 3 and 10 seconds.
        for task_id, seconds in zip(ids, (1, 2, 3, 10), strict=True):
            await db.execute(
                update(Task)
                .where(Task.id == task_id)
                .values(started_at=now, finished_at=now + timedelta(seconds=seconds))
            )
        # Outside the period: not counted.
        await db.execute(
            update(Task)
            .where(Task.kind == "submission.plagiarism")
            .values(created_at=now - timedelta(days=30))
        )
    task = await classroom.run_one(QUEUE_STATS_REPORT, {"days": 7})
    rows = {(r["queue"], r["kind"]): r for r in read_csv(output_path(classroom.settings, task))}
    noop = rows[("diag", "diag.noop")]
    assert (noop["total"], noop["done"], noop["failed"]) == ("4", "4", "0")
    assert (noop["run p50 (s)"], noop["run p95 (s)"]) == ("2.0", "10.0")
    assert ("cpu", "submission.plagiarism") not in rows
    # The report's own task is running while it counts.
    assert rows[("io", QUEUE_STATS_REPORT)]["running"] == "1"


def test_percentile_is_nearest_rank() -> None:
    """Nearest rank: p50 of 1..4 is 2, p95 is 4; nothing for no values."""
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.95) == 4.0
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([], 0.5) is None


async def test_a_report_on_a_missing_assignment_fails_with_a_reason(classroom: Classroom) -> None:
    """A report about an assignment that no longer exists fails for good, saying why."""
    (task,) = await classroom.run(await classroom.submit(GRADES_REPORT, {"assignment_id": 999_999}))
    assert task.status == TaskStatus.FAILED
    assert task.detail == "there is no assignment 999999"
    assert task.output_path is None and output_info(classroom.settings, task) is None

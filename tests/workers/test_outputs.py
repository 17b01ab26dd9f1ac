"""Task outputs: where they are written, what the engine records, and the retention
purge on a real worker and each database: old outputs deleted and marked (the task
then says so), fresh ones kept, leftovers swept, a second run changing nothing."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy import update

from herald.models import Task, TaskStatus, utcnow
from herald.settings import Settings
from tests.workers.outputs_support import (  # noqa: F401 - the fixture
    Classroom,
    classroom_fixture,
    output_path,
)
from workers.catalog import GRADES_REPORT, IMPORTS_FOLDER, PURGE_OUTPUTS
from workers.context import TaskContext
from workers.kinds import Outcome
from workers.outputs import (
    attach_output,
    new_output_path,
    output_dir,
    output_info,
    safe_filename,
)


def _context(settings: Settings, task_id: int) -> TaskContext:
    run = SimpleNamespace(id=task_id)
    return TaskContext(run=cast(Any, run), services=cast(Any, SimpleNamespace(settings=settings)))


def test_new_output_path_is_a_safe_name_in_the_tasks_own_folder(settings: Settings) -> None:
    """Folders, dots and odd characters cannot move an output out of its task's folder."""
    ctx = _context(settings, 42)
    path = new_output_path(ctx, "../../Ünïcode report (final).csv")
    assert path == settings.var_dir / "outputs" / "42" / "Unicode-report-final-.csv"
    assert path.parent.is_dir()
    assert safe_filename("...") == "output"
    assert safe_filename(".bashrc") == "bashrc"
    assert len(safe_filename("a" * 300 + ".csv")) == 100
    assert safe_filename("a" * 300 + ".csv").endswith(".csv")


def test_an_output_outside_the_tasks_folder_is_refused(settings: Settings, tmp_path: Path) -> None:
    """The engine records only a file in the task's own folder, and describes it."""
    elsewhere = tmp_path / "secret.txt"
    elsewhere.write_text("no")
    with pytest.raises(ValueError, match="not in its outputs folder"):
        attach_output(settings, 7, Outcome(output=elsewhere))
    with pytest.raises(FileNotFoundError):
        attach_output(settings, 7, Outcome(output=new_output_path(_context(settings, 7), "x.csv")))
    made = new_output_path(_context(settings, 7), "report.pdf")
    made.write_bytes(b"%PDF-1.4\n")
    outcome = attach_output(settings, 7, Outcome(detail="d", result={"n": 1}, output=made))
    assert outcome.result == {
        "n": 1,
        "output": {"filename": "report.pdf", "size": 9, "content_type": "application/pdf"},
    }


def _age(path: Path, days: float) -> None:
    then = time.time() - days * 86400
    os.utime(path, (then, then))


async def test_purge_deletes_old_outputs_marks_them_and_keeps_fresh_ones(
    classroom: Classroom,
) -> None:
    """An output past the retention period is deleted and its task marked purged
    (output_info says when, after how many days); a fresh one stays downloadable;
    leftover folders and old uploads are swept; a second purge changes nothing."""
    settings = classroom.settings
    params = {"assignment_id": classroom.assignment_id}
    old_id = await classroom.submit(GRADES_REPORT, params)
    fresh_id = await classroom.submit(GRADES_REPORT, params)
    await classroom.run(old_id, fresh_id)
    finished_long_ago = utcnow() - timedelta(days=settings.output_retention_days + 1)
    async with classroom.sessions.begin() as db:
        await db.execute(
            update(Task).where(Task.id == old_id).values(finished_at=finished_long_ago)
        )
    old_file = output_path(settings, await classroom.task(old_id))
    # A failed run's leftover, a folder with no task, and two uploads, one old.
    failed_id = await classroom.submit("diag.sleep", {"seconds": 0, "fail": True}, owner=None)
    async with classroom.sessions.begin() as db:
        await db.execute(
            update(Task)
            .where(Task.id == failed_id)
            .values(status=TaskStatus.FAILED, finished_at=finished_long_ago)
        )
    leftovers = [output_dir(settings, failed_id), output_dir(settings, 999_999)]
    imports = settings.var_dir / IMPORTS_FOLDER
    imports.mkdir(parents=True)
    old_upload, new_upload = imports / f"{'a' * 32}.csv", imports / f"{'b' * 32}.csv"
    for folder in leftovers:
        folder.mkdir(parents=True)
        (folder / "half.csv").write_text("x")
    old_upload.write_text("username\n")
    new_upload.write_text("username\n")
    for path in (*leftovers, old_upload):
        _age(path, settings.output_retention_days + 1)

    purge = await classroom.run_one(PURGE_OUTPUTS, {}, owner=None)
    assert purge.result == {"purged": 1, "swept": 3, "retention_days": 14}
    assert purge.detail == "Deleted 1 output older than 14 days"
    assert not old_file.exists() and not old_file.parent.exists()
    old = await classroom.task(old_id)
    assert old.output_path is None
    info = output_info(settings, old)
    assert info is not None
    assert info["available"] is False
    assert info["purged_at"] is not None and info["retention_days"] == 14
    assert info["filename"].endswith("-grades.csv")
    fresh = await classroom.task(fresh_id)
    fresh_info = output_info(settings, fresh)
    assert fresh_info is not None and fresh_info["available"] is True
    assert fresh_info["purged_at"] is None
    assert output_path(settings, fresh).is_file()
    assert not any(folder.exists() for folder in leftovers)
    assert not old_upload.exists() and new_upload.exists()

    again = await classroom.run_one(PURGE_OUTPUTS, {}, owner=None)
    assert again.result == {"purged": 0, "swept": 0, "retention_days": 14}
    assert output_info(settings, await classroom.task(old_id)) == info
    assert output_path(settings, await classroom.task(fresh_id)).is_file()


async def test_a_task_without_an_output_has_no_output_info(classroom: Classroom) -> None:
    """Tasks that made no file (a diagnostic, a failed report) have no output to show."""
    (task,) = await classroom.run(await classroom.submit("diag.noop", {}, owner=None))
    assert task.status == TaskStatus.DONE
    assert task.output_path is None and output_info(classroom.settings, task) is None

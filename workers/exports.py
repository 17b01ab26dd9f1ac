"""``export.submissions`` ``{"assignment_id"}`` (course staff): an assignment's
submitted files in one zip, written to disk file by file.

Layout::

    manifest.csv                      one row per submission, included or not
    alice/                            a folder per student, named by username
        12-essay.pdf                  "{submission id}-{original file name}"
    bob/
        13-notes.txt

Names are made safe for every unzip tool (no folders from the original name, no
``..``, no control characters). Only processed submissions (status ``complete``:
scanned and stored) are included; the manifest lists the others with the reason
(still processing, rejected by the virus scan, failed). Files that are already
compressed (PDF, Word, images) are stored, text is deflated.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import unicodedata
import zipfile
from pathlib import Path
from typing import Final

from sqlalchemy import select

from herald.models import Submission, SubmissionStatus, User
from workers._assignment import find_assignment
from workers.catalog import CATALOG, EXPORT_SUBMISSIONS
from workers.completion import COMPLETION_HOOKS
from workers.context import TaskContext
from workers.csvfiles import ENCODING, Cell, safe_cell
from workers.kinds import Outcome, TaskKind, register
from workers.outputs import new_output_path, writing
from workers.step_context import StepFailed
from workers.steps import current_path

__all__ = ["MANIFEST_HEADER", "export_submissions", "safe_component"]

MANIFEST_HEADER: Final = (
    "submission id",
    "student",
    "username",
    "path in zip",
    "original file name",
    "size (bytes)",
    "sha256",
    "content type",
    "submitted at (UTC)",
    "status",
    "grade",
    "released at (UTC)",
    "note",
)
_TEXT_TYPES: Final = ("text/plain", "text/markdown")
_UNSAFE: Final = re.compile(r'[\\/:*?"<>|]+')
MAX_COMPONENT: Final = 120
_WHY_LEFT_OUT: Final = {
    SubmissionStatus.RECEIVED: "not included: not processed yet",
    SubmissionStatus.PROCESSING: "not included: still being processed",
    SubmissionStatus.REJECTED: "not included: rejected by the virus scan",
    SubmissionStatus.FAILED: "not included: processing failed",
}


def safe_component(name: str, fallback: str = "file") -> str:
    """One path component of a zip entry: no separators or characters Windows refuses,
    no control characters, no leading dots or spaces, at most 120 characters."""
    cleaned = unicodedata.normalize("NFC", name)
    cleaned = "".join(ch for ch in cleaned if unicodedata.category(ch)[0] != "C")
    cleaned = _UNSAFE.sub("_", cleaned).strip().lstrip(". ").rstrip(". ")
    if len(cleaned) > MAX_COMPONENT:
        stem, dot, suffix = cleaned.rpartition(".")
        if dot and stem and len(suffix) <= 16:
            cleaned = stem[: MAX_COMPONENT - len(suffix) - 1].rstrip() + "." + suffix
        else:
            cleaned = cleaned[:MAX_COMPONENT]
    return cleaned or fallback


def _basename(filename: str) -> str:
    """The last part of a file name that still carries a client's folders."""
    return filename.replace("\\", "/").rsplit("/", 1)[-1]


def _folders(students: dict[int, str]) -> dict[int, str]:
    """A distinct folder name per student id (usernames made safe may collide)."""
    folders: dict[int, str] = {}
    taken: set[str] = set()
    for student_id, username in sorted(students.items()):
        folder = safe_component(username, fallback=f"student-{student_id}")
        if folder.casefold() in taken:
            folder = f"{folder}-{student_id}"
        taken.add(folder.casefold())
        folders[student_id] = folder
    return folders


def _manifest(rows: list[list[Cell]]) -> bytes:
    buffer = io.StringIO(newline="")
    out = csv.writer(buffer)
    out.writerow(MANIFEST_HEADER)
    for row in rows:
        out.writerow([safe_cell(cell) for cell in row])
    return buffer.getvalue().encode(ENCODING)


async def export_submissions(ctx: TaskContext) -> Outcome:
    """Zip the assignment's processed files, a folder per student, with a manifest."""
    assignment = await find_assignment(ctx)
    await ctx.progress(2, "listing the submissions")
    async with ctx.sessions() as db:
        found = (
            await db.execute(
                select(Submission, User.display_name, User.username)
                .join(User, User.id == Submission.student_id)
                .where(Submission.assignment_id == assignment.id)
                .order_by(User.username, Submission.created_at, Submission.id)
            )
        ).all()
    folders = _folders({s.student_id: username for s, _, username in found})
    path = new_output_path(ctx, f"{assignment.course}-{assignment.title}-submissions.zip")
    rows: list[list[Cell]] = []
    included = 0
    with writing(path) as handle, zipfile.ZipFile(handle, "w", allowZip64=True) as archive:
        for done, (submission, name, username) in enumerate(found, 1):
            if ctx.cancelled:
                raise asyncio.CancelledError
            entry, note = "", _WHY_LEFT_OUT.get(submission.status, "")
            if submission.status == SubmissionStatus.COMPLETE:
                try:
                    source: Path | None = current_path(submission)
                except StepFailed:
                    source, note = None, "not included: the file is missing from the store"
                if source is not None:
                    entry = (
                        f"{folders[submission.student_id]}/"
                        f"{submission.id}-{safe_component(_basename(submission.filename))}"
                    )
                    method = (
                        zipfile.ZIP_DEFLATED
                        if submission.content_type in _TEXT_TYPES
                        else zipfile.ZIP_STORED
                    )
                    await asyncio.to_thread(archive.write, source, entry, method)
                    included += 1
            rows.append(
                [
                    submission.id,
                    name,
                    username,
                    entry,
                    submission.filename,
                    submission.size,
                    submission.sha256,
                    submission.content_type,
                    submission.created_at,
                    str(submission.status),
                    submission.grade,
                    submission.grade_released_at,
                    note,
                ]
            )
            await ctx.progress(95 * done / len(found), f"{done} of {len(found)} files")
        archive.writestr("manifest.csv", _manifest(rows), zipfile.ZIP_DEFLATED)
    left_out = len(found) - included
    detail = f"{included} file{'s' if included != 1 else ''}"
    if left_out:
        detail += f", {left_out} not included (see the manifest)"
    return Outcome(
        detail=detail,
        result={"submissions": len(found), "included": included},
        output=path,
    )


register(
    TaskKind(
        EXPORT_SUBMISSIONS,
        "io",
        export_submissions,
        label=CATALOG[EXPORT_SUBMISSIONS].label,
        max_attempts=3,
        hooks=COMPLETION_HOOKS,
    )
)

"""The submissions export on a real worker and each database: a zip with a folder per
student, safe names, the processed files byte for byte, and a manifest that also
lists what was left out and why."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile

from tests.workers.outputs_support import (  # noqa: F401 - the fixture
    Classroom,
    classroom_fixture,
    output_path,
)
from workers.catalog import EXPORT_SUBMISSIONS
from workers.exports import safe_component
from workers.outputs import output_info


async def test_the_zip_has_a_folder_per_student_and_a_manifest(classroom: Classroom) -> None:
    """Each processed file under its student's folder, intact; the rejected one only in
    the manifest, with the reason; a name with folders in it loses them."""
    task = await classroom.run_one(EXPORT_SUBMISSIONS, {"assignment_id": classroom.assignment_id})
    subs = classroom.submissions
    path = output_path(classroom.settings, task)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        names = sorted(archive.namelist())
        assert names == sorted(
            [
                "manifest.csv",
                f"alice/{subs['alice']}-essay.txt",
                f"alice/{subs['alice-2']}-essay final.txt",
                f"bob/{subs['bob']}-bob.txt",
            ]
        )
        assert archive.read(f"alice/{subs['alice-2']}-essay final.txt") == b"Alice's final essay\n"
        manifest = list(
            csv.DictReader(io.StringIO(archive.read("manifest.csv").decode("utf-8-sig")))
        )
        contents = {name: archive.read(name) for name in names if name != "manifest.csv"}
    rows = {int(row["submission id"]): row for row in manifest}
    assert set(rows) == set(subs.values())
    rejected = rows[subs["bob-rejected"]]
    assert rejected["path in zip"] == ""
    assert rejected["note"] == "not included: rejected by the virus scan"
    bob = rows[subs["bob"]]
    assert bob["student"].startswith("'=")  # a formula in a name stays text
    assert (bob["path in zip"], bob["original file name"]) == (
        f"bob/{subs['bob']}-bob.txt",
        "bob.txt",
    )
    for row in manifest:
        if row["path in zip"]:
            assert hashlib.sha256(contents[row["path in zip"]]).hexdigest() == row["sha256"]
    assert rows[subs["alice"]]["grade"] == "B"
    info = output_info(classroom.settings, task)
    assert info is not None and info["content_type"] == "application/zip"
    assert info["filename"] == "DEMO101-Essay-1-Background-tasks-in-practice-submissions.zip"
    assert task.detail == "3 files, 1 not included (see the manifest)"


def test_safe_component_keeps_names_readable_but_harmless() -> None:
    """No separators, drive letters, control characters or leading dots survive."""
    assert safe_component("essay final.pdf") == "essay final.pdf"
    assert safe_component("../../etc/passwd") == "_.._etc_passwd"
    assert safe_component("C:\\evil\\x.txt") == "C_evil_x.txt"
    assert safe_component(".hidden") == "hidden"
    assert safe_component("a\u202etxt.exe") == "atxt.exe"
    assert safe_component("") == "file"
    assert len(safe_component("x" * 300 + ".pdf")) == 120
    assert safe_component("x" * 300 + ".pdf").endswith(".pdf")

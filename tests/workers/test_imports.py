"""The bulk user import on a real worker and each database: every row checked, the good
ones imported, a report row per row (never a password), and the same file again
creating nothing new."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from herald.models import Course, Enrolment, Message, MessageKind, TaskStatus, User
from herald.passwords import verify_password
from tests.workers.outputs_support import (  # noqa: F401 - the fixture
    Classroom,
    classroom_fixture,
    output_path,
    read_csv,
)
from workers.catalog import IMPORT_USERS, IMPORTS_FOLDER

HEADER = "Username,Display Name,email,course_code,role,password\n"
ROWS = [
    "carol,Carol New,carol@example.ac.uk,DEMO101,student,",  # 2: created, no password
    "dave,Dave New,dave@example.ac.uk,demo101,MARKER,secretpass1",  # 3: created
    "carol,Carol New,carol@example.ac.uk,OTHER201,student,",  # 4: enrolled again
    "alice,Alice Renamed,,DEMO101,student,",  # 5: name changed
    "mark,Mark Marker,,DEMO101,marker,",  # 6: nothing to do
    ",No Name,,DEMO101,student,",  # 7: missing username
    "erin,Erin,not-an-email,DEMO101,student,",  # 8
    "frank,Frank,,NOPE999,student,",  # 9
    "gina,Gina,,DEMO101,professor,",  # 10
    "carol,Carol New,carol@example.ac.uk,DEMO101,student,",  # 11: duplicate of 2
    "bob,Bob,,DEMO101,marker,",  # 12: a role change is refused
    "hal,Hal,,DEMO101,student,short",  # 13
    "\"=cmd|' /C calc'!A0\",Evil,,DEMO101,student,",  # 14: a formula for a username
    "",  # 15: a blank line is no row
    "ivy,,,DEMO101,,",  # 16: two fields missing
]


def _upload(room: Classroom, text: str) -> str:
    folder = room.settings.var_dir / IMPORTS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.csv"
    (folder / name).write_bytes(text.encode("utf-8-sig"))
    return name


async def _import(room: Classroom, text: str) -> tuple[int, list[dict[str, str]], str]:
    upload = _upload(room, text)
    task = await room.run_one(IMPORT_USERS, {"upload": upload, "filename": "class.csv"})
    path = output_path(room.settings, task)
    return task.id, read_csv(path), path.read_text("utf-8-sig")


async def _counts(room: Classroom) -> tuple[int, int]:
    async with room.sessions() as db:
        users = await db.scalar(select(func.count()).select_from(User))
        enrolments = await db.scalar(select(func.count()).select_from(Enrolment))
    return int(users or 0), int(enrolments or 0)


async def _user(room: Classroom, username: str) -> User | None:
    async with room.sessions() as db:
        return await db.scalar(select(User).where(User.username == username))


async def test_good_rows_are_imported_and_each_bad_row_reported(classroom: Classroom) -> None:
    """The report has one row per data row with its result; bad rows say what is wrong;
    the good ones are in the database; no password reaches the report."""
    task_id, report, raw = await _import(classroom, HEADER + "\n".join(ROWS) + "\n")
    results = {int(row["row"]): (row["username"], row["result"], row["message"]) for row in report}
    assert sorted(results) == [*range(2, 15), 16]
    assert results[2] == (
        "carol",
        "created",
        "user created without a password; enrolled as student in DEMO101",
    )
    assert results[3] == ("dave", "created", "user created; enrolled as marker in DEMO101")
    assert results[4] == ("carol", "updated", "enrolled as student in OTHER201")
    assert results[5] == ("alice", "updated", "display name changed")
    assert results[6] == ("mark", "unchanged", "already marker in DEMO101")
    assert results[7] == ("", "error", "missing username")
    assert results[8] == ("erin", "error", "bad email 'not-an-email'")
    assert results[9] == ("frank", "error", "unknown course 'NOPE999'")
    assert results[10] == ("gina", "error", "bad role 'professor' (student, marker or admin)")
    assert results[11] == ("carol", "error", "duplicate of row 2")
    assert results[12][1:] == (
        "error",
        "already student in DEMO101; change roles with `herald user enrol`",
    )
    assert results[13] == ("hal", "error", "password must be 8–200 characters")
    # The username cell is defused for spreadsheets, and the row refused.
    assert results[14][0] == "'=cmd|' /C calc'!A0" and results[14][1] == "error"
    assert results[16] == ("ivy", "error", "missing display_name, role")
    assert "secretpass1" not in raw and "short" not in raw

    carol, dave, alice = [await _user(classroom, n) for n in ("carol", "dave", "alice")]
    assert carol is not None and dave is not None and alice is not None
    assert carol.email == "carol@example.ac.uk" and not verify_password(carol.password_hash, "")
    assert verify_password(dave.password_hash, "secretpass1")
    assert alice.display_name == "Alice Renamed"
    for refused in ("erin", "frank", "gina", "hal", "ivy"):
        assert await _user(classroom, refused) is None
    async with classroom.sessions() as db:
        carol_courses = await db.scalars(
            select(Course.code).join(Enrolment).where(Enrolment.user_id == carol.id)
        )
        assert sorted(carol_courses) == ["DEMO101", "OTHER201"]
        bob_role = await db.scalar(
            select(Enrolment.role).where(Enrolment.user_id == classroom.users["bob"].id)
        )
        assert bob_role == "student"
        inbox = await db.scalar(
            select(Message.text).where(
                Message.user_id == classroom.users["ada"].id,
                Message.kind == MessageKind.INBOX,
                Message.link == f"/tasks/{task_id}",
            )
        )
    assert inbox == (
        "Your user import of class.csv is ready (2 created, 2 updated, 1 unchanged, 9 errors)."
    )
    task = await classroom.task(task_id)
    assert task.result is not None and task.result["error"] == 9
    # Done: the upload (which may hold passwords) is gone.
    assert not any((classroom.settings.var_dir / IMPORTS_FOLDER).iterdir())


async def test_the_same_file_again_creates_nothing(classroom: Classroom) -> None:
    """A re-run finds every good row already there: no user, enrolment or password is
    added or changed, and every good row is reported unchanged."""
    text = HEADER + "\n".join(ROWS) + "\n"
    await _import(classroom, text)
    before = await _counts(classroom)
    dave = await _user(classroom, "dave")
    assert dave is not None
    _, report, _ = await _import(classroom, text)
    assert await _counts(classroom) == before
    again = await _user(classroom, "dave")
    assert again is not None and again.password_hash == dave.password_hash
    results = {int(row["row"]): row["result"] for row in report}
    assert [results[n] for n in (2, 3, 4, 5, 6)] == ["unchanged"] * 5
    assert sum(1 for r in results.values() if r == "error") == 9


async def test_a_password_is_set_only_where_there_was_none(classroom: Classroom) -> None:
    """An account imported without a password gets one from a later file; a usable
    password is never replaced."""
    header = "username,display_name,course_code,role,password\n"
    await _import(classroom, header + "carol,Carol,DEMO101,student,\n")
    _, report, _ = await _import(
        classroom,
        header
        + "carol,Carol,DEMO101,student,firstpass1\nalice,Alice Student,DEMO101,student,hijacked1\n",
    )
    assert [(r["username"], r["result"], r["message"]) for r in report] == [
        ("carol", "updated", "password set"),
        ("alice", "unchanged", "already student in DEMO101"),
    ]
    carol, alice = await _user(classroom, "carol"), await _user(classroom, "alice")
    assert carol is not None and verify_password(carol.password_hash, "firstpass1")
    assert alice is not None and verify_password(alice.password_hash, "demo")
    assert not verify_password(alice.password_hash, "hijacked1")


async def test_a_file_without_the_needed_columns_fails_and_keeps_the_upload(
    classroom: Classroom,
) -> None:
    """A header that lacks a required column fails the task for good with the reason; the
    upload stays for a retry (the purge deletes it later)."""
    upload = _upload(classroom, "username,name,course_code\nalice,Alice,DEMO101\n")
    (task,) = await classroom.run(await classroom.submit(IMPORT_USERS, {"upload": upload}))
    assert task.status == TaskStatus.FAILED
    assert task.detail is not None and "unknown column 'name'" in task.detail
    assert (classroom.settings.var_dir / IMPORTS_FOLDER / upload).exists()
    async with classroom.sessions() as db:
        failed = await db.scalar(
            select(Message.text).where(
                Message.user_id == classroom.users["ada"].id,
                Message.kind == MessageKind.INBOX,
                Message.link == f"/tasks/{task.id}",
            )
        )
    assert failed is not None and failed.startswith("Your user import failed: unknown column")

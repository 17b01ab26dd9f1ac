"""The /reports and /admin/import pages on the real app, Redis and each database: who
sees which forms, CSRF, permissions, and the flow from a form to the task's page
(303 to /tasks/{id}) with the task recorded, immediate or queued, and run."""

from __future__ import annotations

import io

from aiohttp import FormData
from sqlalchemy import select

from herald.models import Task, TaskStatus, User
from tests.support import eventually
from tests.web.conftest import Client, Demo, login, settings_of
from tests.workers.support import worker_running
from workers.catalog import GRADES_REPORT, IMPORT_USERS, IMPORTS_FOLDER, SIMILARITY_REPORT
from workers.outputs import output_file


async def _task(demo: Demo, task_id: int) -> Task:
    async with demo.sessions() as db:
        task = await db.get(Task, task_id)
    assert task is not None
    return task


def _task_id(location: str) -> int:
    assert location.startswith("/tasks/"), location
    return int(location.removeprefix("/tasks/"))


async def test_each_user_is_offered_what_they_may_run(client: Client, demo: Demo) -> None:
    """A marker gets the course reports for their assignment; a student gets none; an
    admin also gets the statistics, the purge and the import page."""
    assert (await client.get("/reports", allow_redirects=False)).status == 303
    await login(client, "mark")
    page = await (await client.get("/reports")).text()
    assert 'data-kind="reports.grades"' in page and 'data-kind="export.submissions"' in page
    assert f'<option value="{demo.assignment_id}"' in page
    assert "reports.queue_stats" not in page and "/admin/import" not in page
    assert page.count('value="immediate">Run now</button>') == 3
    await login(client, "alice")
    page = await (await client.get("/reports")).text()
    assert "There are no reports you can run" in page and "data-kind" not in page
    await login(client, "ada")
    page = await (await client.get("/reports")).text()
    assert 'data-kind="reports.queue_stats"' in page and 'data-kind="outputs.purge"' in page
    assert 'href="/admin/import"' in page and "import.users" not in page


async def test_run_now_records_an_immediate_task_that_runs(client: Client, demo: Demo) -> None:
    """ "Run now" answers 303 to the task's page; the task is recorded in immediate mode,
    owned by the marker, and a worker runs it to a downloadable CSV."""
    csrf = await login(client, "mark")
    response = await client.post(
        "/reports",
        data={
            "csrf_token": csrf,
            "kind": GRADES_REPORT,
            "assignment_id": str(demo.assignment_id),
            "mode": "immediate",
        },
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    task_id = _task_id(response.headers["Location"])
    task = await _task(demo, task_id)
    assert (task.kind, task.params, task.immediate, task.owner_id) == (
        GRADES_REPORT,
        {"assignment_id": demo.assignment_id},
        True,
        demo.users["mark"].id,
    )
    settings = settings_of(client)
    async with worker_running(settings):

        async def done() -> bool:
            return (await _task(demo, task_id)).status == TaskStatus.DONE

        await eventually(done, timeout=30, what="the report to run")
    path = output_file(settings, await _task(demo, task_id))
    assert path is not None and path.read_bytes().startswith(b"\xef\xbb\xbfstudent,username")


async def test_queue_records_a_queued_task_with_its_choices(client: Client, demo: Demo) -> None:
    """ "Queue" records a task that waits its turn, with the form's choices as params."""
    csrf = await login(client, "mark")
    response = await client.post(
        "/reports",
        data={
            "csrf_token": csrf,
            "kind": SIMILARITY_REPORT,
            "assignment_id": str(demo.assignment_id),
            "format": "pdf",
            "mode": "queued",
        },
        allow_redirects=False,
    )
    assert response.status == 303
    task = await _task(demo, _task_id(response.headers["Location"]))
    assert task.params == {"assignment_id": demo.assignment_id, "format": "pdf"}
    assert task.immediate is False and task.status == TaskStatus.QUEUED


async def test_refusals_show_the_reason_and_record_nothing(client: Client, demo: Demo) -> None:
    """A student or a forged form gets 403; bad params or an unknown kind 400 with the
    page saying why; nothing is recorded."""
    form = {"kind": GRADES_REPORT, "assignment_id": str(demo.assignment_id), "mode": "queued"}
    csrf = await login(client, "alice")
    refused = await client.post("/reports", data={"csrf_token": csrf, **form})
    assert refused.status == 403
    assert "Only the course&#39;s markers may run this" in await refused.text()
    csrf = await login(client, "mark")
    forged = await client.post("/reports", data={"csrf_token": "forged", **form})
    assert forged.status == 403
    assert (await client.post("/reports", data=form)).status == 403
    for bad, message in (
        ({"kind": "diag.sleep"}, "That cannot be run from this page."),
        ({"kind": IMPORT_USERS}, "That cannot be run from this page."),
        ({"assignment_id": "abc"}, "Assignment must be a whole number."),
        ({"mode": "later"}, "Choose “Run now” or “Queue”."),
    ):
        response = await client.post("/reports", data={"csrf_token": csrf, **form, **bad})
        assert response.status == 400, bad
        assert message in await response.text()
    async with demo.sessions() as db:
        assert (await db.scalars(select(Task))).all() == []


def _csv_form(csrf: str | None, data: bytes, filename: str = "class.csv", **extra: str) -> FormData:
    form = FormData()
    if csrf is not None:
        form.add_field("csrf_token", csrf)
    form.add_field("file", io.BytesIO(data), filename=filename, content_type="text/csv")
    for name, value in extra.items():
        form.add_field(name, value)
    return form


GOOD_CSV = (
    "username,display_name,email,course_code,role\n"
    "zoe,Zoë Imported,zoe@example.ac.uk,DEMO101,student\n"
    "yan,Yan,not-an-email,DEMO101,student\n"
).encode()


def _uploads(client: Client) -> list[str]:
    folder = settings_of(client).var_dir / IMPORTS_FOLDER
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def test_an_admin_uploads_a_csv_and_the_import_runs(client: Client, demo: Demo) -> None:
    """The file is stored under var/imports, an import.users task submitted for it
    (303 to its page), and a worker imports the good row."""
    assert (await client.get("/admin/import", allow_redirects=False)).status == 303
    await login(client, "mark")
    assert (await client.get("/admin/import")).status == 403
    csrf = await login(client, "ada")
    page = await client.get("/admin/import")
    assert page.status == 200 and 'enctype="multipart/form-data"' in await page.text()
    response = await client.post(
        "/admin/import", data=_csv_form(csrf, GOOD_CSV, mode="immediate"), allow_redirects=False
    )
    assert response.status == 303, await response.text()
    task_id = _task_id(response.headers["Location"])
    task = await _task(demo, task_id)
    [stored] = _uploads(client)
    assert task.params == {"upload": stored, "filename": "class.csv"}
    assert task.kind == IMPORT_USERS and task.immediate and task.owner_id == demo.users["ada"].id
    async with worker_running(settings_of(client)):

        async def done() -> bool:
            return (await _task(demo, task_id)).status == TaskStatus.DONE

        await eventually(done, timeout=30, what="the import to run")
    async with demo.sessions() as db:
        zoe = await db.scalar(select(User).where(User.username == "zoe"))
    assert zoe is not None and zoe.display_name == "Zoë Imported"
    assert (await _task(demo, task_id)).detail == "1 created, 0 updated, 0 unchanged, 1 error"
    assert _uploads(client) == []


async def test_unusable_uploads_are_refused_and_nothing_kept(client: Client, demo: Demo) -> None:
    """Empty, not text, a bad header, too large, a forged or missing token, or not an
    admin: refused with the reason, nothing stored and no task."""
    csrf = await login(client, "ada")
    cases = [
        (_csv_form(csrf, b""), 400, "The file is empty."),
        (_csv_form(csrf, b"\x89PNG\r\n\x1a\n\x00\x00", "class.csv"), 415, "not a CSV in UTF-8"),
        (_csv_form(csrf, b"\xff\xfeu\x00s\x00"), 415, "not a CSV in UTF-8"),
        (_csv_form(csrf, b"name\nx\n", "x.csv"), 400, "x.csv: unknown column"),
        (_csv_form(csrf, b"username,display_name,course_code,role\n"), 400, "no rows below"),
        (_csv_form(csrf, GOOD_CSV, "class.xlsx"), 415, "Upload the list as a .csv file."),
        (_csv_form(csrf, b"a" * (5 * 1024 * 1024 + 1)), 413, "larger than the 5 MB limit"),
        (_csv_form("forged", GOOD_CSV), 403, "did not come from this site"),
        (_csv_form(None, GOOD_CSV), 403, "did not come from this site"),
    ]
    for form, status, message in cases:
        response = await client.post("/admin/import", data=form)
        assert response.status == status, message
        assert message in await response.text()
    # The token must come before the file: a file first is refused before it is stored.
    late = FormData()
    late.add_field("file", io.BytesIO(GOOD_CSV), filename="class.csv", content_type="text/csv")
    late.add_field("csrf_token", csrf)
    assert (await client.post("/admin/import", data=late)).status == 403
    csrf = await login(client, "mark")
    assert (await client.post("/admin/import", data=_csv_form(csrf, GOOD_CSV))).status == 403
    assert _uploads(client) == []
    async with demo.sessions() as db:
        assert (await db.scalars(select(Task))).all() == []

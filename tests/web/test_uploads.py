"""Uploads: streamed, typed by content, limited to the assignment's types,
permission-checked, atomic (nothing half-stored), queued."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from aiohttp import FormData
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from herald import names
from herald.models import Assignment, Submission, TaskStatus
from tests.web.conftest import (
    Client,
    ClientFactory,
    Demo,
    assert_nothing_stored,
    docx_bytes,
    login,
    raw_multipart,
    settings_of,
    upload_form,
    uploads_left,
)
from web.uploads import ACCEPTED_TYPES, DOCX, sanitize_filename
from workers.pipeline import SUBMISSION_STEPS

ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4


async def _post(client: Client, demo: Demo, form, csrf: str, aid: int | None = None):  # type: ignore[no-untyped-def]
    return await client.post(
        f"/api/assignments/{aid or demo.assignment_id}/submissions",
        data=form,
        headers={"X-CSRF-Token": csrf},
    )


async def test_upload_happy_path(client: Client, demo: Demo, redis: Redis) -> None:
    """A text upload answers 202, stores the row and four tasks, and queues the first."""
    csrf = await login(client, "alice")
    response = await _post(client, demo, upload_form(b"# Essay\n\nHello", "essay.md"), csrf)
    assert response.status == 202, await response.text()
    body = await response.json()
    submission_id = body["id"]
    assert body == {
        "id": submission_id,
        "status": "received",
        "topic": f"submission.{submission_id}",
        "url": f"/submissions/{submission_id}",
    }
    async with demo.sessions() as db:
        submission = await db.scalar(
            select(Submission)
            .options(selectinload(Submission.tasks))
            .where(Submission.id == submission_id)
        )
    assert submission is not None
    assert submission.student_id == demo.users["alice"].id
    assert submission.filename == "essay.md"
    assert submission.content_type == "text/markdown"
    assert submission.size == len(b"# Essay\n\nHello")
    assert len(submission.sha256) == 64
    stored = Path(submission.upload_path)
    assert stored.read_bytes() == b"# Essay\n\nHello"
    assert stored.parent == settings_of(client).files_dir / "uploads"
    statuses = [task.status for task in submission.tasks]
    assert statuses == [TaskStatus.QUEUED] + [TaskStatus.WAITING] * (len(SUBMISSION_STEPS) - 1)
    first = submission.tasks[0]
    ready = await redis.zrange(names.queue_ready_key(first.queue), 0, -1)
    assert str(first.id).encode() in ready


@pytest.mark.parametrize(
    ("data", "filename", "content_type"),
    [
        (b"%PDF-1.7\n" + bytes(range(256)), "a.pdf", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), "a.png", "image/png"),
        (b"\xff\xd8\xff\xe0" + bytes(64), "a.jpg", "image/jpeg"),
        (docx_bytes(), "a.docx", DOCX),
        ("Grüße aus Köln\n".encode(), "notes.bin", "text/plain"),
    ],
)
async def test_type_is_sniffed_from_content(
    client: Client, demo: Demo, data: bytes, filename: str, content_type: str
) -> None:
    """Accepted types are recognised by their bytes, whatever the name says."""
    csrf = await login(client, "alice")
    response = await _post(client, demo, upload_form(data, filename), csrf)
    assert response.status == 202, await response.text()
    async with demo.sessions() as db:
        submission = await db.get(Submission, (await response.json())["id"])
    assert submission is not None
    assert submission.content_type == content_type


@pytest.mark.parametrize(
    "data",
    [
        ELF,
        b"PK\x03\x04" + bytes(100),  # a zip signature that is no docx
        b"hello\x00world",  # NUL bytes are not text
        b"\xc3\x28 invalid utf-8",
    ],
)
async def test_unsupported_type_is_415(client: Client, demo: Demo, data: bytes) -> None:
    """Binary junk is refused with 415 and nothing stays on disk."""
    csrf = await login(client, "alice")
    response = await _post(client, demo, upload_form(data, "essay.txt"), csrf)
    assert response.status == 415
    assert (await response.json())["error"] == "unsupported_type"
    assert uploads_left(settings_of(client)) == []


async def test_too_large_is_413(make_client: ClientFactory, demo: Demo) -> None:
    """A file over the limit is refused with 413, streamed or announced, leaving nothing."""
    client = await make_client(HERALD_MAX_UPLOAD_BYTES="1024")
    csrf = await login(client, "alice")
    # Over the limit but within the multipart slack: caught while streaming.
    response = await _post(client, demo, upload_form(b"a" * 2000), csrf)
    assert response.status == 413
    assert (await response.json())["error"] == "too_large"
    # Far over: refused on Content-Length before the body is read.
    response = await _post(client, demo, upload_form(b"a" * 200_000), csrf)
    assert response.status == 413
    assert uploads_left(settings_of(client)) == []
    # Exactly at the limit is fine.
    response = await _post(client, demo, upload_form(b"a" * 1024), csrf)
    assert response.status == 202


async def test_empty_and_missing_file_are_400(client: Client, demo: Demo) -> None:
    """An empty file answers 400 empty; a form without the file field 400 missing_file."""
    csrf = await login(client, "alice")
    response = await _post(client, demo, upload_form(b""), csrf)
    assert response.status == 400
    assert (await response.json())["error"] == "empty"
    form = FormData([("other", "x")], default_to_multipart=True)
    response = await _post(client, demo, form, csrf)
    assert response.status == 400
    assert (await response.json())["error"] == "missing_file"
    assert uploads_left(settings_of(client)) == []


@pytest.mark.parametrize("username", ["mark", "ada"])
async def test_staff_cannot_submit(client: Client, demo: Demo, username: str) -> None:
    """Markers and admins are not students of the course: 403."""
    csrf = await login(client, username)
    response = await _post(client, demo, upload_form(b"text"), csrf)
    assert response.status == 403
    assert (await response.json())["error"] == "forbidden"
    assert uploads_left(settings_of(client)) == []


async def test_other_course_student_cannot_submit(client: Client, demo: Demo) -> None:
    """A student of another course gets 403 for this course's assignment."""
    from herald.models import Course

    async with demo.sessions.begin() as db:
        other = Course(code="OTHER1", title="Elsewhere")
        assignment = Assignment(course=other, title="Other work", is_open=True)
        db.add_all([other, assignment])
    csrf = await login(client, "alice")
    response = await _post(client, demo, upload_form(b"text"), csrf, aid=assignment.id)
    assert response.status == 403


async def test_closed_assignment_is_403(client: Client, demo: Demo) -> None:
    """No submissions once the assignment is closed."""
    async with demo.sessions.begin() as db:
        assignment = await db.get(Assignment, demo.assignment_id)
        assert assignment is not None
        assignment.is_open = False
    csrf = await login(client, "alice")
    response = await _post(client, demo, upload_form(b"text"), csrf)
    assert response.status == 403


async def test_unknown_assignment_is_404(client: Client, demo: Demo) -> None:
    """Uploading to an assignment that does not exist answers 404."""
    csrf = await login(client, "alice")
    response = await _post(client, demo, upload_form(b"text"), csrf, aid=987654)
    assert response.status == 404
    assert uploads_left(settings_of(client)) == []


async def test_upload_without_csrf_is_403_and_stores_nothing(client: Client, demo: Demo) -> None:
    """A multipart upload with neither header nor form token is refused before storing."""
    await login(client, "alice")
    response = await client.post(
        f"/api/assignments/{demo.assignment_id}/submissions", data=upload_form(b"text")
    )
    assert response.status == 403
    assert (await response.json())["error"] == "csrf_failed"
    response = await client.post(
        f"/api/assignments/{demo.assignment_id}/submissions",
        data=upload_form(b"text", csrf="wrong"),
    )
    assert response.status == 403
    assert uploads_left(settings_of(client)) == []


async def test_upload_requires_login(client: Client, demo: Demo) -> None:
    """Signed out, the upload API answers 401."""
    response = await client.post(
        f"/api/assignments/{demo.assignment_id}/submissions", data=upload_form(b"text")
    )
    assert response.status == 401


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("essay.pdf", "essay.pdf"),
        ("C:\\Users\\me\\essay.pdf", "essay.pdf"),
        ("../../etc/passwd", "passwd"),
        ("\x00\x1bbad\u202eftp.exe", "badftp.exe"),
        ("...", "upload"),
        ("", "upload"),
        (None, "upload"),
        ("a" * 300 + ".docx", "a" * 145 + ".docx"),
    ],
)
def test_sanitize_filename(raw: str | None, expected: str) -> None:
    """Filenames lose directories and control characters and are capped in length."""
    assert sanitize_filename(raw) == expected


# A Windows executable: the MZ header and the DOS stub every PE file carries.
PE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + (
    b"\x00" * 48 + b"This program cannot be run in DOS mode.\r\r\n$" + bytes(range(256))
)
PDF_BYTES = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< >>\n%%EOF\n"


@pytest.mark.parametrize("binary", [PE, ELF], ids=["pe", "elf"])
async def test_binary_labelled_as_pdf_is_415(client: Client, demo: Demo, binary: bytes) -> None:
    """An executable named essay.pdf and sent as application/pdf is refused by its bytes."""
    csrf = await login(client, "alice")
    form = upload_form(binary, "essay.pdf", content_type="application/pdf")
    response = await _post(client, demo, form, csrf)
    assert response.status == 415
    body = await response.json()
    assert body["error"] == "unsupported_type"
    assert "PDF" in body["message"]
    await assert_nothing_stored(client, demo)


async def test_real_pdf_named_txt_is_stored_as_pdf(client: Client, demo: Demo) -> None:
    """A PDF named .txt and sent as text/plain is accepted as the PDF it is."""
    csrf = await login(client, "alice")
    form = upload_form(PDF_BYTES, "essay.txt", content_type="text/plain")
    response = await _post(client, demo, form, csrf)
    assert response.status == 202
    async with demo.sessions() as db:
        submission = await db.get(Submission, (await response.json())["id"])
    assert submission is not None
    assert submission.content_type == "application/pdf"
    assert submission.filename == "essay.txt"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\x.pdf", "x.pdf"),
        ("/etc/cron.d/evil", "evil"),
        ("essay\x00.pdf.exe", "essay.pdf.exe"),
        ("line\nbreak\r.txt", "linebreak.txt"),
        ("report\u202etxt.exe", "reporttxt.exe"),
        ("..", "upload"),
    ],
)
async def test_hostile_filenames_are_stored_sanitised(
    client: Client, demo: Demo, raw: str, expected: str
) -> None:
    """Traversal and control-character names are kept only as a clean display name; the
    file itself lands under a random name in the upload folder, whatever the name said."""
    csrf = await login(client, "alice")
    body, headers = raw_multipart(raw, b"essay text", encoded=True)
    response = await client.post(
        f"/api/assignments/{demo.assignment_id}/submissions",
        data=body,
        headers={"X-CSRF-Token": csrf, **headers},
    )
    assert response.status == 202, await response.text()
    async with demo.sessions() as db:
        submission = await db.get(Submission, (await response.json())["id"])
    assert submission is not None
    assert submission.filename == expected
    stored = Path(submission.upload_path)
    folder = settings_of(client).files_dir / "uploads"
    assert stored.parent == folder
    assert re.fullmatch(r"[0-9a-f]{32}\.upload", stored.name)
    assert uploads_left(settings_of(client)) == [stored]


async def test_each_rejection_leaves_nothing_behind(make_client: ClientFactory, demo: Demo) -> None:
    """Oversized, empty, mistyped, forged and misordered uploads all store no file and no row."""
    client = await make_client(HERALD_MAX_UPLOAD_BYTES="1000")
    csrf = await login(client, "alice")
    header = {"X-CSRF-Token": csrf}
    refusals = [
        (upload_form(b"a" * 1001), header, 413, "too_large"),
        (upload_form(b"a" * 50_000), header, 413, "too_large"),
        (upload_form(b""), header, 400, "empty"),
        (upload_form(ELF[:200], "essay.pdf"), header, 415, "unsupported_type"),
        (upload_form(b"text", csrf="forged"), {}, 403, "csrf_failed"),
    ]
    for form, headers, status, code in refusals:
        response = await client.post(
            f"/api/assignments/{demo.assignment_id}/submissions", data=form, headers=headers
        )
        assert response.status == status, code
        assert (await response.json())["error"] == code
        await assert_nothing_stored(client, demo)

    # The right token, but after the file: refused before the file is stored.
    form = FormData()
    form.add_field("file", io.BytesIO(b"text"), filename="essay.txt")
    form.add_field("csrf_token", csrf)
    response = await client.post(f"/api/assignments/{demo.assignment_id}/submissions", data=form)
    assert response.status == 403
    await assert_nothing_stored(client, demo)

    # A body cut off mid-file.
    body, headers = raw_multipart("essay.txt", b"text")
    response = await client.post(
        f"/api/assignments/{demo.assignment_id}/submissions",
        data=body[:-20],
        headers={"X-CSRF-Token": csrf, **headers},
    )
    assert response.status == 400
    await assert_nothing_stored(client, demo)


async def _restrict(demo: Demo, allowed: list[str] | None) -> None:
    async with demo.sessions.begin() as db:
        assignment = await db.get(Assignment, demo.assignment_id)
        assert assignment is not None
        assignment.allowed_types = allowed


async def test_assignment_types_narrow_what_is_accepted(client: Client, demo: Demo) -> None:
    """An assignment taking only PDF refuses text (415, naming PDF) and takes a PDF."""
    await _restrict(demo, ["application/pdf"])
    csrf = await login(client, "alice")
    response = await _post(client, demo, upload_form(b"plain essay", "essay.pdf"), csrf)
    assert response.status == 415
    body = await response.json()
    assert body == {
        "error": "unsupported_type",
        "message": "That kind of file is not accepted here: upload PDF.",
    }
    await assert_nothing_stored(client, demo)
    response = await _post(client, demo, upload_form(PDF_BYTES, "essay.pdf"), csrf)
    assert response.status == 202


async def test_assignment_types_list_every_accepted_type_in_the_refusal(
    client: Client, demo: Demo
) -> None:
    """The 415 names each accepted type; types the site cannot recognise are ignored."""
    await _restrict(demo, ["image/png", "application/pdf", "application/x-msdownload"])
    csrf = await login(client, "alice")
    response = await _post(client, demo, upload_form(docx_bytes(), "essay.docx"), csrf)
    assert response.status == 415
    assert (await response.json())["message"].endswith("upload PDF or PNG.")
    assignments = await (await client.get("/api/assignments")).json()
    assert assignments[0]["accepts"] == ["application/pdf", "image/png"]


async def test_markdown_counts_as_text_where_text_is_taken(client: Client, demo: Demo) -> None:
    """An assignment taking plain text takes a .md file as text/plain."""
    await _restrict(demo, ["text/plain"])
    csrf = await login(client, "alice")
    response = await _post(client, demo, upload_form(b"# Essay\n", "essay.md"), csrf)
    assert response.status == 202
    async with demo.sessions() as db:
        submission = await db.get(Submission, (await response.json())["id"])
    assert submission is not None
    assert submission.content_type == "text/plain"


async def test_default_assignment_takes_every_site_type(client: Client, demo: Demo) -> None:
    """Without a list the assignment takes the site-wide set, and the API says so."""
    await login(client, "alice")
    assignments = await (await client.get("/api/assignments")).json()
    assert assignments[0]["accepts"] == list(ACCEPTED_TYPES)


async def test_upload_form_shows_what_is_accepted(client: Client, demo: Demo) -> None:
    """The upload form names the accepted types and hints them to the file picker."""
    await login(client, "alice")
    html = await (await client.get(f"/assignments/{demo.assignment_id}")).text()
    assert "Accepted: PDF, Word (.docx), plain text, Markdown, PNG or JPEG." in html
    await _restrict(demo, ["application/pdf"])
    html = await (await client.get(f"/assignments/{demo.assignment_id}")).text()
    assert "Accepted: PDF." in html
    assert 'accept=".pdf"' in html

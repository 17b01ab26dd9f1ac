"""/admin/import: site admins upload a CSV of users and enrolments; it is checked for a
usable header here, stored under ``var/imports`` and imported by an ``import.users``
task (workers.imports), whose page shows the progress and the per-row report.

The upload is streamed to disk with a size limit, never held in memory; the form's
CSRF token must come before the file (the route is in web.auth's
MULTIPART_CSRF_ROUTES), and a refused upload leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import codecs
import uuid
from pathlib import Path
from typing import BinaryIO, Final

from aiohttp import BodyPartReader, web

from herald.logs import get_logger
from herald.models import User
from web.auth import CSRF_FIELD, check_csrf, require_user
from web.errors import (
    BadRequest,
    CsrfFailed,
    EmptyUpload,
    Forbidden,
    MissingFile,
    TooLarge,
    UnsupportedType,
    WebError,
)
from web.keys import CSRF_DEFERRED, DB, SETTINGS
from web.render import render
from web.reports import submit_user_task
from web.uploads import sanitize_filename
from workers.catalog import IMPORT_USERS, IMPORTS_FOLDER, CatalogError, check_request
from workers.imports import COLUMNS, MAX_ROWS, REQUIRED, HeaderError, parse

__all__ = ["IMPORT_LIMIT", "routes"]

routes = web.RouteTableDef()
log = get_logger(__name__)

IMPORT_LIMIT: Final = 5 * 1024 * 1024
CHUNK: Final = 64 * 1024
SMALL_FIELD: Final = 1024
MULTIPART_SLACK: Final = 16 * 1024
# What browsers call a CSV (Windows with Excel says vnd.ms-excel); the bytes decide too.
_CSV_TYPES: Final = frozenset(
    {
        "text/csv",
        "text/plain",
        "text/comma-separated-values",
        "application/csv",
        "application/vnd.ms-excel",
        "application/octet-stream",
        "",
    }
)
_CSV_SUFFIXES: Final = (".csv", ".txt")
NOT_TEXT: Final = (
    "The file is not a CSV in UTF-8: in your spreadsheet choose Save As → “CSV UTF-8”."
)


def _require_admin(user: User) -> None:
    if not user.is_admin:
        raise Forbidden("Only site admins may import users.")


async def _page(
    request: web.Request, *, status: int = 200, error: str | None = None
) -> web.Response:
    return await render(
        request,
        "import.html",
        status=status,
        error=error,
        columns=COLUMNS,
        required=REQUIRED,
        max_rows=MAX_ROWS,
        limit_mb=IMPORT_LIMIT // (1024 * 1024),
        retention_days=request.app[SETTINGS].output_retention_days,
    )


@routes.get("/admin/import")
async def import_page(request: web.Request) -> web.StreamResponse:
    """The upload form and the file format (site admins)."""
    user, _ = require_user(request)
    _require_admin(user)
    return await _page(request)


async def _small(part: BodyPartReader) -> str:
    data = b""
    while chunk := await part.read_chunk(SMALL_FIELD):
        data += chunk
        if len(data) > SMALL_FIELD:
            raise BadRequest("A form field is too long.")
    return data.decode("utf-8", "replace")


def _looks_like_csv(part: BodyPartReader, filename: str) -> bool:
    """A name ending .csv or .txt, or no extension and a CSV-ish declared type (the
    bytes must be UTF-8 text as well: checked while they are stored)."""
    suffix = Path(filename).suffix.lower()
    if suffix:
        return suffix in _CSV_SUFFIXES
    declared = (part.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    return declared in _CSV_TYPES


async def _store(part: BodyPartReader, folder: Path) -> Path:
    """Stream the file to ``folder`` under a random name; UTF-8 text, within the limit."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.csv"
    temp = folder / f".{name}.part"
    handle: BinaryIO = await asyncio.to_thread(temp.open, "xb")
    decoder = codecs.getincrementaldecoder("utf-8")()
    size = 0
    try:
        try:
            while chunk := await part.read_chunk(CHUNK):
                size += len(chunk)
                if size > IMPORT_LIMIT:
                    raise TooLarge(f"The file is larger than the {IMPORT_LIMIT // 2**20} MB limit.")
                if b"\x00" in chunk:
                    raise UnsupportedType(NOT_TEXT)
                decoder.decode(chunk)
                await asyncio.to_thread(handle.write, chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise UnsupportedType(NOT_TEXT) from None
        except ValueError:
            raise BadRequest("The upload is not a valid multipart form.") from None
        finally:
            await asyncio.to_thread(handle.close)
        if size == 0:
            raise EmptyUpload("The file is empty.")
        path = folder / name
        await asyncio.to_thread(temp.rename, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


async def _receive(request: web.Request) -> tuple[Path, str, str]:
    """The stored file, its original name, and the submit button's ``mode``."""
    if request.content_length is not None and request.content_length > (
        IMPORT_LIMIT + MULTIPART_SLACK
    ):
        raise TooLarge(f"The file is larger than the {IMPORT_LIMIT // 2**20} MB limit.")
    if request.content_type != "multipart/form-data":
        raise BadRequest("Send the file as multipart/form-data.")
    folder = request.app[SETTINGS].var_dir / IMPORTS_FOLDER
    stored: tuple[Path, str] | None = None
    mode = "queued"
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise BadRequest("Nested multipart forms are not accepted.")
            if part.name == CSRF_FIELD:
                check_csrf(request, await _small(part))
            elif part.name == "file" and stored is None:
                if request.get(CSRF_DEFERRED):
                    raise CsrfFailed()  # the token must come first: nothing is stored before it
                filename = sanitize_filename(part.filename)
                if not _looks_like_csv(part, filename):
                    raise UnsupportedType("Upload the list as a .csv file.")
                stored = (await _store(part, folder), filename)
            elif part.name == "mode":
                mode = await _small(part)
            else:
                await _small(part)
    except ValueError:
        if stored is not None:
            stored[0].unlink(missing_ok=True)
        raise BadRequest("The upload is not a valid multipart form.") from None
    except BaseException:
        if stored is not None:
            stored[0].unlink(missing_ok=True)
        raise
    if stored is None:
        raise MissingFile("Choose a CSV file to upload.")
    return stored[0], stored[1], mode


def _check_header(path: Path) -> int:
    """The number of data rows; HeaderError when the file cannot be imported at all."""
    return len(parse(path.read_bytes().decode("utf-8-sig")))


@routes.post("/admin/import", name="page-bulk-users")
async def import_submit(request: web.Request) -> web.StreamResponse:
    """Store the CSV, check its header, submit the import, go to the task's page."""
    user, _ = require_user(request)
    _require_admin(user)
    try:
        path, filename, mode = await _receive(request)
    except CsrfFailed:
        raise
    except WebError as exc:
        return await _page(request, status=exc.status, error=exc.message)
    try:
        rows = await asyncio.to_thread(_check_header, path)
        async with request.app[DB]() as db:
            params = await check_request(
                db,
                user,
                IMPORT_USERS,
                {"upload": path.name, "filename": filename},
                settings=request.app[SETTINGS],
            )
    except (HeaderError, CatalogError) as exc:
        path.unlink(missing_ok=True)
        return await _page(request, status=400, error=f"{filename}: {exc}")
    task_id = await submit_user_task(
        request, user, IMPORT_USERS, params, immediate=mode == "immediate"
    )
    log.info("import submitted", task_id=task_id, rows=rows)
    return web.Response(status=303, headers={"Location": f"/tasks/{task_id}"})

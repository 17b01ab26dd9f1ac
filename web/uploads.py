"""Receiving an uploaded file: streamed to disk, hashed, sized and typed by content.

The body is never held in memory whole: the multipart field ``file`` is read in
64 KiB chunks, hashed and checked for UTF-8 as it comes, and written to a temp
file under ``files_dir/uploads`` in batches of up to 256 KiB, each one trip to a
worker thread (a trip per chunk cost a turn of the busy event loop each, 16 per
megabyte, under a deadline burst). The type comes from the bytes, never from the name
or the client's Content-Type, and must be one the assignment takes. Any
rejection deletes the temp file, so nothing half-stored is left behind.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import unicodedata
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from aiohttp import BodyPartReader, web

from herald.settings import Settings
from web.auth import CSRF_FIELD, check_csrf
from web.errors import (
    BadRequest,
    CsrfFailed,
    EmptyUpload,
    MissingFile,
    TooLarge,
    UnsupportedType,
)
from web.keys import CSRF_DEFERRED

__all__ = [
    "ACCEPTED_TYPES",
    "StoredUpload",
    "accepted_types",
    "describe_types",
    "picker_hint",
    "receive_upload",
    "sanitize_filename",
    "sniff_content_type",
]

CHUNK_SIZE: Final = 64 * 1024
WRITE_BATCH: Final = 256 * 1024
# A multipart body is larger than its file by the boundaries, part headers and
# the CSRF field; allow that much before refusing on Content-Length alone.
MULTIPART_SLACK: Final = 16 * 1024
SMALL_FIELD_LIMIT: Final = 1024
MAX_FILENAME: Final = 150
FALLBACK_FILENAME: Final = "upload"

PDF: Final = "application/pdf"
PNG: Final = "image/png"
JPEG: Final = "image/jpeg"
DOCX: Final = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TEXT: Final = "text/plain"
MARKDOWN: Final = "text/markdown"

_MARKDOWN_SUFFIXES: Final = (".md", ".markdown")

# Every type the site recognises, in the order people are told about them;
# an assignment may narrow this set (Assignment.allowed_types), never widen it.
ACCEPTED_TYPES: Final = {
    PDF: "PDF",
    DOCX: "Word (.docx)",
    TEXT: "plain text",
    MARKDOWN: "Markdown",
    PNG: "PNG",
    JPEG: "JPEG",
}
# For the file picker's accept="" hint; the bytes decide all the same.
_PICKER_HINTS: Final = {
    PDF: ".pdf",
    DOCX: ".docx",
    TEXT: ".txt",
    MARKDOWN: ".md,.markdown",
    PNG: ".png",
    JPEG: ".jpg,.jpeg",
}


def accepted_types(allowed: list[str] | None) -> tuple[str, ...]:
    """The types an assignment takes: its list within the site-wide set, or that whole set."""
    if allowed is None:
        return tuple(ACCEPTED_TYPES)
    return tuple(t for t in ACCEPTED_TYPES if t in allowed)


def describe_types(types: tuple[str, ...]) -> str:
    """``"PDF, Word (.docx) or plain text"`` for people."""
    labels = [ACCEPTED_TYPES[t] for t in types]
    if len(labels) <= 1:
        return "".join(labels) or "nothing (no file type is allowed)"
    return ", ".join(labels[:-1]) + " or " + labels[-1]


def picker_hint(types: tuple[str, ...]) -> str:
    """The ``accept`` attribute for a file input offering ``types``."""
    return ",".join(_PICKER_HINTS[t] for t in types)


@dataclass(frozen=True)
class StoredUpload:
    """A received file waiting in ``files_dir/uploads`` for the pipeline."""

    path: Path
    filename: str
    size: int
    sha256: str
    content_type: str

    def discard(self) -> None:
        """Delete the temp file (the upload was refused after all)."""
        self.path.unlink(missing_ok=True)


def sanitize_filename(raw: str | None) -> str:
    """A display-safe base name: no directories, no control characters, bounded length."""
    name = unicodedata.normalize("NFC", raw or "")
    # Browsers on Windows may send the full client path with either separator.
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    # Category C covers control, format (e.g. right-to-left override, used to
    # disguise extensions), surrogate, private-use and unassigned characters.
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().lstrip(".").strip()
    if len(name) > MAX_FILENAME:
        stem, dot, suffix = name.rpartition(".")
        if dot and stem and 0 < len(suffix) <= 16:
            name = stem[: MAX_FILENAME - len(suffix) - 1].rstrip() + "." + suffix
        else:
            name = name[:MAX_FILENAME].rstrip()
    return name or FALLBACK_FILENAME


class _TextCheck:
    """Tracks, chunk by chunk, whether the bytes are UTF-8 text without NULs."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.ok = True

    def feed(self, chunk: bytes, *, final: bool = False) -> None:
        if not self.ok:
            return
        if b"\x00" in chunk:
            self.ok = False
            return
        try:
            self._decoder.decode(chunk, final=final)
        except UnicodeDecodeError:
            self.ok = False


def _is_docx(path: Path) -> bool:
    # A .docx is a zip whose central directory lists word/document.xml; any
    # other zip (or a corrupt one) is refused.
    try:
        with zipfile.ZipFile(path) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


async def sniff_content_type(path: Path, head: bytes, is_text: bool, filename: str) -> str | None:
    """The type of the stored bytes, one of :data:`ACCEPTED_TYPES`; ``None`` for anything else.

    Only the bytes decide, except that text named ``.md`` counts as Markdown.
    """
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"PK\x03\x04"):
        return DOCX if await asyncio.to_thread(_is_docx, path) else None
    if is_text:
        return MARKDOWN if filename.lower().endswith(_MARKDOWN_SUFFIXES) else TEXT
    return None


def _admit(content_type: str | None, allowed: tuple[str, ...]) -> str:
    if content_type == MARKDOWN and MARKDOWN not in allowed and TEXT in allowed:
        # Markdown is plain text; an assignment taking text takes it as such.
        return TEXT
    if content_type is None or content_type not in allowed:
        raise UnsupportedType(
            f"That kind of file is not accepted here: upload {describe_types(allowed)}."
        )
    return content_type


async def _read_small(part: BodyPartReader) -> str:
    data = b""
    while chunk := await part.read_chunk(SMALL_FIELD_LIMIT):
        data += chunk
        if len(data) > SMALL_FIELD_LIMIT:
            raise BadRequest("A form field is too long.")
    return data.decode("utf-8", "replace")


def _create(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("xb")


async def _store(
    part: BodyPartReader, folder: Path, limit: int, allowed: tuple[str, ...]
) -> StoredUpload:
    filename = sanitize_filename(part.filename)
    path = folder / f"{uuid.uuid4().hex}.upload"
    handle: BinaryIO = await asyncio.to_thread(_create, path)
    try:
        digest = hashlib.sha256()
        text = _TextCheck()
        size = 0
        head = b""
        pending = bytearray()
        try:
            while chunk := await part.read_chunk(CHUNK_SIZE):
                size += len(chunk)
                if size > limit:
                    # Stop reading at the limit: the rest is never looked at.
                    raise TooLarge()
                digest.update(chunk)
                text.feed(chunk)
                if len(head) < 16:
                    head += chunk[:16]
                pending += chunk
                if len(pending) >= WRITE_BATCH:
                    await asyncio.to_thread(handle.write, bytes(pending))
                    pending.clear()
            if pending:
                await asyncio.to_thread(handle.write, bytes(pending))
            if not part.at_eof():
                # The body ended before the part's boundary: aiohttp hands over
                # what came (with a piece of the boundary) as if it were the file.
                raise BadRequest("The upload was cut off; please send it again.")
        except ValueError:
            # aiohttp's multipart reader: a truncated or malformed body.
            raise BadRequest("The upload is not a valid multipart form.") from None
        finally:
            await asyncio.to_thread(handle.close)
        if size == 0:
            raise EmptyUpload()
        text.feed(b"", final=True)
        content_type = _admit(await sniff_content_type(path, head, text.ok, filename), allowed)
    except BaseException:
        # Refused, cancelled or broken: nothing half-stored stays on disk.
        path.unlink(missing_ok=True)
        raise
    return StoredUpload(path, filename, size, digest.hexdigest(), content_type)


async def receive_upload(
    request: web.Request,
    settings: Settings,
    *,
    allowed: tuple[str, ...] = tuple(ACCEPTED_TYPES),
    field: str = "file",
) -> StoredUpload:
    """Stream the multipart ``field`` to a temp file and check it.

    Raises :class:`TooLarge` (413), :class:`EmptyUpload` / :class:`MissingFile` /
    :class:`BadRequest` (400), :class:`UnsupportedType` (415) when its sniffed type
    is not one of ``allowed``, or :class:`CsrfFailed` when the form's ``csrf_token``
    field, which must come before the file, is wrong.
    """
    limit = settings.max_upload_bytes
    if request.content_length is not None and request.content_length > limit + MULTIPART_SLACK:
        raise TooLarge()
    if request.content_type != "multipart/form-data":
        raise BadRequest("Send the file as multipart/form-data.")
    try:
        reader = await request.multipart()
    except ValueError:
        raise BadRequest("The upload is not a valid multipart form.") from None
    while True:
        try:
            part = await reader.next()
        except ValueError:
            raise BadRequest("The upload is not a valid multipart form.") from None
        if part is None:
            raise MissingFile()
        if not isinstance(part, BodyPartReader):
            raise BadRequest("Nested multipart forms are not accepted.")
        if part.name == CSRF_FIELD:
            check_csrf(request, await _read_small(part))
        elif part.name == field:
            if request.get(CSRF_DEFERRED):
                # The token must precede the file; never store a file first.
                raise CsrfFailed()
            return await _store(part, settings.files_dir / "uploads", limit, allowed)
        else:
            await _read_small(part)

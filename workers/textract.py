"""Text extraction and counting for submissions (plain text, Markdown, PDF, DOCX)."""

from __future__ import annotations

import contextlib
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

__all__ = ["UNREADABLE", "TextStats", "extract_text", "text_stats"]

_WORD = re.compile(r"\w+(?:['’-]\w+)*", re.UNICODE)
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_PDF_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.DOTALL)
_PDF_TEXT = re.compile(rb"\(((?:\\.|[^\\)])*)\)\s*Tj|\[((?:[^\]])*)\]\s*TJ")
_PDF_STRING = re.compile(rb"\(((?:\\.|[^\\)])*)\)")
_W_NS = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
MAX_DOCX_XML = 50 * 1024 * 1024  # refuse zip bombs

# What extract_text raises on a damaged or hostile document (a sniffed type is a
# promise about the first bytes only): a step reports these as "could not read".
UNREADABLE: tuple[type[Exception], ...] = (
    ValueError,
    KeyError,
    OSError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    ElementTree.ParseError,
)


@dataclass(frozen=True)
class TextStats:
    words: int
    lines: int
    characters: int
    pages: int | None


def _pdf_text(data: bytes) -> tuple[str, int]:
    """Text shown by Tj/TJ operators in (possibly Flate-compressed) content streams.

    Enough to count the words of ordinary text PDFs; a full parser comes with
    the real pipeline.
    """
    pages = len(_PDF_PAGE.findall(data))
    parts: list[bytes] = []
    for match in _PDF_STREAM.finditer(data):
        stream = match.group(1)
        with contextlib.suppress(zlib.error):  # uncompressed streams are read as they are
            stream = zlib.decompress(stream)
        for text in _PDF_TEXT.finditer(stream):
            if text.group(1) is not None:
                parts.append(text.group(1))
            else:
                parts.extend(_PDF_STRING.findall(text.group(2)))
            parts.append(b" ")
    return b"".join(parts).decode("latin-1"), pages


def _docx_text(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("word/document.xml")
        if info.file_size > MAX_DOCX_XML:
            raise ValueError("word/document.xml is too large")
        root = ElementTree.fromstring(archive.read(info))  # noqa: S314 - stdlib parser expands no external entities
    paragraphs = []
    for paragraph in root.iter(f"{_W_NS}p"):
        paragraphs.append("".join(t.text or "" for t in paragraph.iter(f"{_W_NS}t")))
    return "\n".join(paragraphs)


def extract_text(path: Path, content_type: str) -> tuple[str, int | None]:
    """The file's text and page count (``None`` where pages mean nothing)."""
    if content_type in {"text/plain", "text/markdown"}:
        return path.read_text(encoding="utf-8", errors="replace"), None
    if content_type == "application/pdf":
        return _pdf_text(path.read_bytes())
    if content_type.endswith("wordprocessingml.document"):
        return _docx_text(path), None
    return "", None


def text_stats(text: str, pages: int | None) -> TextStats:
    return TextStats(
        words=len(_WORD.findall(text)),
        lines=text.count("\n") + (1 if text and not text.endswith("\n") else 0),
        characters=len(text),
        pages=pages,
    )

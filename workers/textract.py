"""Text extraction and counting for submissions (plain text, Markdown, PDF, DOCX)."""

from __future__ import annotations

import contextlib
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

__all__ = ["UNREADABLE", "TextStats", "extract_text", "text_stats"]

_WORD = re.compile(r"\w+(?:['’-]\w+)*", re.UNICODE)
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_PDF_STREAM_START = re.compile(rb"stream\r?\n")
# Neither pattern may scan past the next opening bracket: in a binary stream (an
# embedded font, an image) a '(' or '[' at every few bytes with the closing one far
# away made each start scan to it, quadratic in the stream, and sre holds the GIL
# for a whole search: 1 MB of font took ~100 ms, and a worker's concurrent
# extractions stalled its event loop past its lease (bench/deadline_spike.py).
_PDF_TEXT = re.compile(rb"\(((?:\\.|[^\\()])*)\)\s*Tj|\[([^\[\]]*)\]\s*TJ")
_PDF_STRING = re.compile(rb"\(((?:\\.|[^\\()])*)\)")
_TEXT_BYTES = bytes(range(0x20, 0x7F)) + b"\t\n\r\f"
_BINARY_SAMPLE = 8192
_BINARY_SHARE = 0.3
# Stream dictionaries that mark an embedded font or an image: never page text.
_PDF_NOT_TEXT = re.compile(rb"/Length[123]\b|/Subtype\s*/(?:Image|Type1C|CIDFontType0C|OpenType)")
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


def _pdf_streams(data: bytes) -> Iterator[bytes]:
    """Each stream's bytes, found with ``bytes.find`` (linear, in C), skipping the
    streams whose dictionary marks a font or an image."""
    position = 0
    while (match := _PDF_STREAM_START.search(data, position)) is not None:
        end = data.find(b"endstream", match.end())
        if end < 0:
            return
        position = end + len(b"endstream")
        dictionary = data[
            data.rfind(b"<<", max(0, match.start() - 1024), match.start()) : match.start()
        ]
        if _PDF_NOT_TEXT.search(dictionary):
            continue
        yield data[match.end() : end].removesuffix(b"\n").removesuffix(b"\r")


def _binary(stream: bytes) -> bool:
    """Whether a (decompressed) stream is binary data rather than a content stream.

    Content streams are ASCII operators; text regexes over a megabyte of binary cost
    tens of milliseconds of GIL for nothing (a font saved without its /Length1).
    """
    sample = stream[:_BINARY_SAMPLE]
    return len(sample.translate(None, _TEXT_BYTES)) > len(sample) * _BINARY_SHARE


def _pdf_text(data: bytes) -> tuple[str, int]:
    """Text shown by Tj/TJ operators in (possibly Flate-compressed) content streams.

    Enough to count the words of ordinary text PDFs; a full parser comes with
    the real pipeline.
    """
    pages = len(_PDF_PAGE.findall(data))
    parts: list[bytes] = []
    for stream in _pdf_streams(data):
        with contextlib.suppress(zlib.error):  # uncompressed streams are read as they are
            stream = zlib.decompress(stream)
        if _binary(stream):
            continue
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

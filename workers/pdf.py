"""A small PDF writer for text reports: a title, then lines of monospaced text on as
many A4 pages as they need, each page numbered.

Why by hand: a report of text lines needs about a hundred lines of PDF, while the
libraries that do it well (ReportLab, fpdf2) would be a new dependency for every
worker. The writer keeps to what every viewer reads: PDF 1.4, the standard Type 1
fonts (no embedding), WinAnsiEncoding, Flate-compressed content streams and an
exact cross-reference table.

The price is the character set: the standard fonts cover Western European text
(Windows-1252); any other character prints as ``?``. The CSV form of a report has
every character.
"""

from __future__ import annotations

import textwrap
import unicodedata
import zlib
from collections.abc import Sequence
from typing import Final

__all__ = ["LINES_PER_PAGE", "LINE_WIDTH", "pdf_text", "text_pdf"]

PAGE_WIDTH, PAGE_HEIGHT = 595, 842  # A4 in points
MARGIN: Final = 48
FONT_SIZE: Final = 9
LEADING: Final = 12
# Courier's every glyph is 0.6 em wide, so a line's width is known without metrics.
LINE_WIDTH: Final = int((PAGE_WIDTH - 2 * MARGIN) / (FONT_SIZE * 0.6))
TITLE_SIZE: Final = 14
_TOP: Final = PAGE_HEIGHT - MARGIN
LINES_PER_PAGE: Final = int((_TOP - TITLE_SIZE - 2 * LEADING - MARGIN) / LEADING)


def pdf_text(text: str) -> bytes:
    """``text`` as the bytes of a PDF literal string in WinAnsiEncoding, without the
    parentheses: control characters dropped, ``\\``, ``(`` and ``)`` escaped, anything
    outside Windows-1252 as ``?``."""
    printable = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    raw = unicodedata.normalize("NFC", printable).encode("cp1252", "replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _utf16(text: str) -> bytes:
    """A PDF text string any character can be in (document information)."""
    return b"<FEFF" + text.encode("utf-16-be").hex().upper().encode("ascii") + b">"


def _wrap(lines: Sequence[str]) -> list[str]:
    wrapped: list[str] = []
    for line in lines:
        if len(line) <= LINE_WIDTH:
            wrapped.append(line)
            continue
        wrapped += textwrap.wrap(
            line, LINE_WIDTH, subsequent_indent="    ", break_on_hyphens=False
        ) or [""]
    return wrapped


def _page_stream(title: str | None, lines: Sequence[str], footer: str) -> bytes:
    ops = [b"BT"]
    y = _TOP - TITLE_SIZE
    if title is not None:
        ops.append(b"/F2 %d Tf 1 0 0 1 %d %d Tm (%b) Tj" % (TITLE_SIZE, MARGIN, y, pdf_text(title)))
        y -= 2 * LEADING
    ops.append(b"/F1 %d Tf %d TL 1 0 0 1 %d %d Tm" % (FONT_SIZE, LEADING, MARGIN, y))
    ops += [b"(%b) Tj T*" % pdf_text(line) for line in lines]
    ops.append(b"/F3 8 Tf 1 0 0 1 %d %d Tm (%b) Tj" % (MARGIN, MARGIN // 2, pdf_text(footer)))
    ops.append(b"ET")
    return b"\n".join(ops)


def text_pdf(title: str, lines: Sequence[str]) -> bytes:
    """A PDF of ``title`` (on the first page) and ``lines`` in Courier, wrapped at
    :data:`LINE_WIDTH` characters, :data:`LINES_PER_PAGE` lines to a page."""
    body = _wrap(lines)
    pages = [body[i : i + LINES_PER_PAGE] for i in range(0, len(body), LINES_PER_PAGE)] or [[]]
    fonts = b"<< /F1 3 0 R /F2 4 0 R /F3 5 0 R >>"
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, once the page objects' numbers are known
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Title %b /Producer (Herald) >>" % _utf16(title),
    ]
    kids = []
    for number, page_lines in enumerate(pages, 1):
        footer = f"{title} - page {number} of {len(pages)}"
        content = zlib.compress(_page_stream(title if number == 1 else None, page_lines, footer))
        objects.append(
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n%b\nendstream"
            % (len(content), content)
        )
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Contents %d 0 R "
            b"/Resources << /Font %b >> >>" % (PAGE_WIDTH, PAGE_HEIGHT, len(objects), fonts)
        )
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%b] /Count %d >>" % (b" ".join(kids), len(kids))
    return _assemble(objects, info=6)


def _assemble(objects: list[bytes], *, info: int) -> bytes:
    """The file: header, objects numbered from 1 (the first the catalog), the
    cross-reference table of their byte offsets, and the trailer."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")  # binary comment: "this file is binary"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%b\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        info,
        xref,
    )
    return bytes(out)

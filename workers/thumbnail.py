"""Thumbnails of submissions: a PNG that fits a box, written atomically.

PDFs show their first page, images are scaled (EXIF orientation honoured),
text, Markdown and Word files show their opening lines on a white page.
Anything else, or input that cannot be read, raises :class:`ThumbnailError`,
which the caller records as "no preview".

Synchronous on purpose: the caller runs :func:`render_thumbnail` in a thread.
PDFium is not thread-safe (two renders in two threads may crash the process)
and cannot be interrupted, so PDFs are rendered in a child process
(``python -m workers.thumbnail``) with a wall-clock timeout and memory/CPU
limits: a hostile PDF costs one killed child, never the worker.
"""

from __future__ import annotations

import functools
import io
import re
import subprocess
import sys
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from PIL import Image, ImageDraw, ImageFont, ImageOps

from herald.durable import write_atomically
from workers.textract import extract_text

__all__ = [
    "DEFAULT_BOX",
    "MAX_IMAGE_PIXELS",
    "Thumbnail",
    "ThumbnailError",
    "render_thumbnail",
]

DEFAULT_BOX = (480, 640)
# A 48-megapixel phone photo (8000×6000) passes; PNG bombs with huge headers do not.
# Kept under Pillow's own MAX_IMAGE_PIXELS so its DecompressionBombWarning never fires.
MAX_IMAGE_PIXELS = 50_000_000
PDF_TIMEOUT = 30.0
PDF_MEMORY_BYTES = 1024 * 1024 * 1024
# A page far more elongated than any real paper size would render as a sliver.
PDF_MAX_ASPECT = 50.0
# Text thumbnails read only the head of the file and draw at most this many lines.
TEXT_HEAD_CHARS = 64 * 1024
TEXT_LINES = 30
TEXT_LINE_CHARS = 500

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
TEXT = "text/plain"
MARKDOWN = "text/markdown"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

# Exit status of the PDF child for "this PDF cannot be rendered" (reason on stderr),
# told apart from a crash or a kill.
_CHILD_REFUSED = 3


class ThumbnailError(Exception):
    """No thumbnail can be made of this file; the message says why, for a person."""


@dataclass(frozen=True)
class Thumbnail:
    """A PNG written at ``path``: its pixel size, bytes and what kind of source it shows."""

    path: Path
    width: int
    height: int
    size: int
    kind: str  # "pdf", "image", "text" or "docx"


def render_thumbnail(
    source: Path,
    content_type: str,
    target: Path,
    *,
    box: tuple[int, int] = DEFAULT_BOX,
    timeout: float = PDF_TIMEOUT,
) -> Thumbnail:
    """Render ``source`` as a PNG that fits ``box`` (width, height) and write it to ``target``.

    The write is atomic: ``target`` is either the complete new PNG or left as it was.
    ``timeout`` bounds the PDF renderer. Raises :class:`ThumbnailError`.
    """
    if box[0] < 16 or box[1] < 16:
        raise ValueError(f"thumbnail box {box} is too small")
    if content_type == PDF:
        kind, image = "pdf", _pdf(source, box, timeout)
    elif content_type in (PNG, JPEG):
        kind, image = "image", _image(source, box)
    elif content_type in (TEXT, MARKDOWN):
        kind, image = "text", _text_page(_read_head(source), box)
    elif content_type == DOCX:
        kind, image = "docx", _text_page(_docx_head(source), box)
    else:
        raise ThumbnailError(f"no preview for files of type {content_type}")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    data = buffer.getvalue()
    write_atomically(target, lambda out: out.write(data))
    return Thumbnail(target, image.width, image.height, len(data), kind)


# --- PDF: rendered in a child process ---------------------------------------------------


def _pdf(source: Path, box: tuple[int, int], timeout: float) -> Image.Image:
    command = [sys.executable, "-m", "workers.thumbnail", str(source), str(box[0]), str(box[1])]
    try:
        child = subprocess.run(
            command, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise ThumbnailError(f"the PDF took longer than {timeout:g} s to render") from None
    if child.returncode == _CHILD_REFUSED:
        reason = child.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ThumbnailError(reason[-1][:300] if reason else "the PDF cannot be rendered")
    if child.returncode != 0:
        # A signal (negative code: SIGXCPU, SIGKILL from the memory limit, SIGSEGV) or
        # an unexpected exception; either way the PDF is the likely culprit.
        raise ThumbnailError(f"the PDF renderer failed (exit status {child.returncode})")
    # Trust the child's output no further than any image: it must be a PNG inside the box.
    try:
        with Image.open(io.BytesIO(child.stdout), formats=("PNG",)) as image:
            if image.width > box[0] or image.height > box[1]:
                raise ThumbnailError("the PDF renderer returned an oversized image")
            image.load()
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise ThumbnailError(f"the PDF renderer returned no image ({exc})") from None


def _render_pdf_page(source: Path, box: tuple[int, int]) -> Image.Image:
    """The first page of ``source`` scaled to fit ``box`` (runs in the child only)."""
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(source)
    except pdfium.PdfiumError as exc:
        raise ThumbnailError(f"not a readable PDF ({exc})") from None
    try:
        if len(document) < 1:
            raise ThumbnailError("the PDF has no pages")
        page = document[0]
        width, height = page.get_size()
        if not (width > 0 and height > 0) or max(width / height, height / width) > PDF_MAX_ASPECT:
            raise ThumbnailError("the PDF's first page has an unusable size")
        scale = min(box[0] / width, box[1] / height)
        bitmap = page.render(scale=scale, fill_color=(255, 255, 255, 255), may_draw_forms=False)
        image = bitmap.to_pil().convert("RGB")
    except pdfium.PdfiumError as exc:
        raise ThumbnailError(f"the PDF's first page cannot be rendered ({exc})") from None
    finally:
        document.close()
    # Rounding may add a pixel; the box is a promise.
    image.thumbnail(box, Image.Resampling.LANCZOS)
    return image


def _limit_child() -> None:
    import resource

    cpu = int(PDF_TIMEOUT) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_AS, (PDF_MEMORY_BYTES, PDF_MEMORY_BYTES))


def _child_main(argv: list[str]) -> int:
    """``python -m workers.thumbnail SOURCE WIDTH HEIGHT``: PNG of page 1 on stdout."""
    source, width, height = Path(argv[0]), int(argv[1]), int(argv[2])
    # Limits are set here rather than in a preexec_fn, which is unsafe in a threaded parent.
    _limit_child()
    try:
        image = _render_pdf_page(source, (width, height))
    except ThumbnailError as exc:
        print(exc, file=sys.stderr)
        return _CHILD_REFUSED
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    sys.stdout.buffer.write(buffer.getvalue())
    sys.stdout.buffer.flush()
    return 0


# --- Images -----------------------------------------------------------------------------


def _image(source: Path, box: tuple[int, int]) -> Image.Image:
    try:
        with Image.open(source, formats=("PNG", "JPEG")) as opened:
            if opened.width * opened.height > MAX_IMAGE_PIXELS:
                raise ThumbnailError(
                    f"the image is too large to preview ({opened.width}×{opened.height} pixels)"
                )
            # JPEG only: decode at 1/2, 1/4 or 1/8 scale (still at least the box, either
            # way round, as EXIF may turn it), which is most of the speed on big photos.
            side = max(box)
            opened.draft("RGB", (side, side))
            image = ImageOps.exif_transpose(opened)
            image.thumbnail(box, Image.Resampling.LANCZOS)
            return _to_rgb(image)
    except Image.DecompressionBombError:
        raise ThumbnailError("the image is too large to preview") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # UnidentifiedImageError and "image file is truncated" are OSErrors.
        raise ThumbnailError(f"the image cannot be read ({exc})") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, or RGBA where the image has transparency: modes every viewer shows alike."""
    if image.mode in ("RGB", "RGBA"):
        return image
    if image.mode in ("LA", "PA") or "transparency" in image.info:
        return image.convert("RGBA")
    if image.mode.startswith("I"):
        # 16-bit greyscale PNG: Pillow's convert clips rather than scales to 8 bits.
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    return image.convert("RGB")


# --- Text, Markdown and Word: the opening lines on a page -------------------------------


def _read_head(source: Path) -> str:
    try:
        with source.open("rb") as handle:
            head = handle.read(TEXT_HEAD_CHARS * 4)  # UTF-8 needs at most 4 bytes a character
    except OSError as exc:
        raise ThumbnailError(f"the file cannot be read ({exc})") from None
    return head.decode("utf-8", errors="replace").removeprefix("\ufeff")[:TEXT_HEAD_CHARS]


def _docx_head(source: Path) -> str:
    try:
        text, _ = extract_text(source, DOCX)
    # Corrupt members surface as zlib.error (bad deflate data) or BadZipFile (bad CRC).
    except (
        zipfile.BadZipFile,
        zlib.error,
        KeyError,
        ValueError,
        OSError,
        ElementTree.ParseError,
    ) as exc:
        raise ThumbnailError(f"the Word document cannot be read ({exc})") from None
    return text[:TEXT_HEAD_CHARS]


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled Aileron with the BASIC layout: no system fonts, same pixels everywhere.
    return ImageFont.load_default(size=size)


_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _clean(line: str) -> str:
    line = _UNPRINTABLE.sub("", line.expandtabs(4))
    return "".join(ch for ch in line if unicodedata.category(ch) != "Cf")


def _wrap(line: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; words longer than a line are cut."""
    rows: list[str] = []
    current = ""
    for word in re.findall(r"\S+\s*", line) or [""]:
        candidate = current + word
        if font.getlength(candidate.rstrip()) <= width:
            current = candidate
            continue
        if current:
            rows.append(current.rstrip())
            current = ""
        while font.getlength(word.rstrip()) > width:
            cut = len(word) - 1
            while cut > 1 and font.getlength(word[:cut]) > width:
                cut -= 1
            rows.append(word[:cut])
            word = word[cut:]
        current = word
    rows.append(current.rstrip())
    return rows


def _text_page(text: str, box: tuple[int, int]) -> Image.Image:
    width, height = box
    size = max(8, round(width / 34))  # ~60 characters a line, like a printed page
    font = _font(size)
    margin = max(4, width // 16)
    line_height = round(size * 1.4)
    page = Image.new("RGB", box, "white")
    draw = ImageDraw.Draw(page)
    y = margin
    for raw in text.splitlines()[:TEXT_LINES]:
        for row in _wrap(_clean(raw[:TEXT_LINE_CHARS]), font, width - 2 * margin):
            if y + line_height > height - margin:
                return page
            if row:
                draw.text((margin, y), row, fill=(34, 34, 34), font=font)
            y += line_height
    return page


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))

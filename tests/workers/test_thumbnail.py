"""Thumbnails of real files made in the test: PDFs, PNG/JPEG, text, Markdown and Word."""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.documents import pdf_from_objects
from workers.thumbnail import (
    DEFAULT_BOX,
    DOCX,
    MAX_IMAGE_PIXELS,
    ThumbnailError,
    render_thumbnail,
)


def _open_png(path: Path) -> Image.Image:
    image = Image.open(path)
    assert image.format == "PNG"
    image.load()
    return image


def _fits(image: Image.Image, box: tuple[int, int] = DEFAULT_BOX) -> bool:
    return image.width <= box[0] and image.height <= box[1]


def _share(image: Image.Image, test) -> float:  # type: ignore[no-untyped-def]
    data = image.convert("RGB").tobytes()
    pixels = list(zip(data[0::3], data[1::3], data[2::3], strict=True))
    return sum(1 for pixel in pixels if test(pixel)) / len(pixels)


def _at(image: Image.Image, x: int, y: int) -> tuple[int, ...]:
    pixel = image.getpixel((x, y))
    assert isinstance(pixel, tuple)
    return pixel


def _red(pixel: tuple[int, ...]) -> bool:
    return pixel[0] > 200 and pixel[1] < 60 and pixel[2] < 60


def _blue(pixel: tuple[int, ...]) -> bool:
    return pixel[2] > 200 and pixel[0] < 60 and pixel[1] < 60


def _dark(pixel: tuple[int, ...]) -> bool:
    return max(pixel) < 128


def _text_pdf(content: bytes, *, media_box: str = "0 0 612 792", extra: str = "") -> bytes:
    """A minimal hand-written PDF: one page, Helvetica, the given content stream."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [{media_box}] /Contents 4 0 R "
            f"/Resources << /Font << /F1 5 0 R >> >> {extra}>>"
        ).encode(),
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return pdf_from_objects(objects)


HEADLINE = b"BT /F1 96 Tf 60 640 Td (Herald) Tj ET"


def _docx(paragraphs: list[str]) -> bytes:
    """A Word file as textract reads it: a zip with word/document.xml."""
    ns = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    body = "".join(f"<w:p><w:r><w:t>{text}</w:t></w:r></w:p>" for text in paragraphs)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        archive.writestr(
            "word/document.xml",
            f'<?xml version="1.0"?><w:document xmlns:w="{ns}"><w:body>{body}</w:body></w:document>',
        )
    return buffer.getvalue()


def _corrupt_docx() -> bytes:
    """A Word file whose document.xml has damaged deflate data; the zip directory is intact."""
    data = bytearray(_docx(["hello world"] * 200))
    start = data.index(b"word/document.xml") + len(b"word/document.xml")
    for index in range(start + 5, start + 40):
        data[index] ^= 0xFF
    return bytes(data)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width``×``height`` pixels and carries almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


# --- PDF ------------------------------------------------------------------------------


def test_pdf_thumbnail_shows_the_first_page(tmp_path: Path) -> None:
    """A PDF whose first page is red and second blue gives a red A4-shaped thumbnail."""
    source = tmp_path / "pages.pdf"
    red = Image.new("RGB", (595, 842), "red")
    red.save(source, "PDF", save_all=True, append_images=[Image.new("RGB", (595, 842), "blue")])

    thumb = render_thumbnail(source, "application/pdf", tmp_path / "thumb.png")

    image = _open_png(thumb.path)
    assert (thumb.width, thumb.height) == image.size
    assert thumb.kind == "pdf" and thumb.size == thumb.path.stat().st_size
    assert image.height == DEFAULT_BOX[1] and _fits(image)
    assert abs(image.width / image.height - 595 / 842) < 0.01
    assert _share(image, _red) > 0.95
    assert _share(image, _blue) == 0


def test_hand_written_text_pdf_draws_its_text_where_the_page_has_it(tmp_path: Path) -> None:
    """Text near the top of a page shows as dark pixels in the top of the thumbnail only."""
    source = tmp_path / "text.pdf"
    source.write_bytes(_text_pdf(HEADLINE))

    image = _open_png(render_thumbnail(source, "application/pdf", tmp_path / "t.png").path)

    assert _fits(image)
    assert abs(image.width / image.height - 612 / 792) < 0.01
    top = image.crop((0, 0, image.width, image.height // 4))
    rest = image.crop((0, image.height // 4, image.width, image.height))
    assert _share(top, _dark) > 0.02
    assert _share(rest, _dark) == 0


def test_rotated_pdf_page_gives_a_landscape_thumbnail(tmp_path: Path) -> None:
    """A portrait page with /Rotate 90 is shown as it is displayed: landscape, fitting the box."""
    source = tmp_path / "rotated.pdf"
    source.write_bytes(_text_pdf(HEADLINE, extra="/Rotate 90 "))

    image = _open_png(render_thumbnail(source, "application/pdf", tmp_path / "t.png").path)

    assert image.width == DEFAULT_BOX[0] and image.height < image.width
    assert abs(image.width / image.height - 792 / 612) < 0.01


def test_pdf_thumbnail_fits_a_custom_box(tmp_path: Path) -> None:
    """The box is honoured for a wide page: width-bound, aspect ratio kept."""
    source = tmp_path / "wide.pdf"
    source.write_bytes(_text_pdf(HEADLINE, media_box="0 0 1000 250"))

    image = _open_png(
        render_thumbnail(source, "application/pdf", tmp_path / "t.png", box=(200, 200)).path
    )

    assert image.size == (200, 50)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"%PDF-1.7\n" + os.urandom(4096), id="garbage"),
        pytest.param(b"not a pdf at all\n" * 100, id="not-pdf"),
        pytest.param(
            _text_pdf(HEADLINE).replace(b"/Count 1", b"/Count 0").replace(b"[3 0 R]", b"[]"),
            id="no-pages",
        ),
        pytest.param(_text_pdf(HEADLINE, media_box="0 0 1000 5"), id="sliver-page"),
    ],
)
def test_unreadable_pdf_is_a_thumbnail_error(tmp_path: Path, content: bytes) -> None:
    """Corrupt or empty PDFs give ThumbnailError and leave nothing behind."""
    source = tmp_path / "in" / "bad.pdf"
    source.parent.mkdir()
    source.write_bytes(content)
    out = tmp_path / "out"

    with pytest.raises(ThumbnailError):
        render_thumbnail(source, "application/pdf", out / "t.png")

    assert not out.exists() or list(out.iterdir()) == []


def test_pdf_renderer_that_overruns_its_timeout_is_stopped(tmp_path: Path) -> None:
    """A render that outlasts its timeout is a ThumbnailError, not a hung worker thread."""
    source = tmp_path / "text.pdf"
    source.write_bytes(_text_pdf(HEADLINE))

    # No renderer process starts, imports pdfium and renders in a millisecond.
    with pytest.raises(ThumbnailError, match="longer than"):
        render_thumbnail(source, "application/pdf", tmp_path / "t.png", timeout=0.001)

    assert not (tmp_path / "t.png").exists()


# --- Images ---------------------------------------------------------------------------


def test_png_is_scaled_into_the_box_keeping_its_aspect_ratio(tmp_path: Path) -> None:
    """A 2000×1000 PNG becomes 480×240 with its left red and right blue halves in place."""
    picture = Image.new("RGB", (2000, 1000), "blue")
    ImageDraw.Draw(picture).rectangle((0, 0, 999, 999), fill="red")
    source = tmp_path / "wide.png"
    picture.save(source)

    thumb = render_thumbnail(source, "image/png", tmp_path / "t.png")

    image = _open_png(thumb.path)
    assert image.size == (480, 240) and thumb.kind == "image"
    assert _red(_at(image, 100, 120))
    assert _blue(_at(image, 380, 120))


def test_small_image_is_not_enlarged(tmp_path: Path) -> None:
    """An image already inside the box keeps its size."""
    source = tmp_path / "small.png"
    Image.new("RGB", (120, 90), "red").save(source)

    image = _open_png(render_thumbnail(source, "image/png", tmp_path / "t.png").path)

    assert image.size == (120, 90)


def test_jpeg_exif_orientation_is_honoured(tmp_path: Path) -> None:
    """A landscape JPEG tagged "rotate 90° clockwise" comes out portrait, left half on top."""
    picture = Image.new("RGB", (600, 300), "blue")
    ImageDraw.Draw(picture).rectangle((0, 0, 299, 299), fill="red")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; rotate 90° clockwise to view
    source = tmp_path / "phone.jpg"
    picture.save(source, "JPEG", exif=exif.tobytes(), quality=95)

    image = _open_png(render_thumbnail(source, "image/jpeg", tmp_path / "t.png").path)

    assert image.size == (300, 600)
    assert _red(_at(image, 150, 150))
    assert _blue(_at(image, 150, 450))


@pytest.mark.parametrize(
    ("mode", "fmt", "expected"),
    [
        ("RGBA", "PNG", "RGBA"),
        ("LA", "PNG", "RGBA"),
        ("P", "PNG", "RGB"),
        ("L", "PNG", "RGB"),
        ("1", "PNG", "RGB"),
        ("I;16", "PNG", "RGB"),
        ("L", "JPEG", "RGB"),
        ("CMYK", "JPEG", "RGB"),
    ],
)
def test_images_become_rgb_or_rgba(tmp_path: Path, mode: str, fmt: str, expected: str) -> None:
    """Every PNG/JPEG pixel mode ends as RGB, or RGBA when it has an alpha channel."""
    source = tmp_path / f"in.{fmt.lower()}"
    picture = Image.new(mode, (900, 300))
    if mode == "I;16":
        picture = Image.frombytes("I;16", (900, 300), b"\xff\xff" * 900 * 300)
    picture.save(source, fmt)

    image = _open_png(render_thumbnail(source, f"image/{fmt.lower()}", tmp_path / "t.png").path)

    assert image.mode == expected and image.size == (480, 160)
    if mode == "I;16":  # 16-bit white is scaled to 8-bit white, not clipped
        assert _at(image, 10, 10) == (255, 255, 255)


def test_image_with_alpha_keeps_its_transparency(tmp_path: Path) -> None:
    """A transparent PNG stays transparent in its thumbnail."""
    source = tmp_path / "clear.png"
    Image.new("RGBA", (100, 100), (255, 0, 0, 0)).save(source)

    image = _open_png(render_thumbnail(source, "image/png", tmp_path / "t.png").path)

    assert _at(image, 50, 50)[3] == 0


def test_truncated_png_is_a_thumbnail_error(tmp_path: Path) -> None:
    """A PNG cut short gives ThumbnailError and leaves nothing behind."""
    buffer = io.BytesIO()
    Image.effect_noise((800, 800), 80).save(buffer, "PNG")
    source = tmp_path / "cut.png"
    source.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    out = tmp_path / "out"

    with pytest.raises(ThumbnailError, match="cannot be read"):
        render_thumbnail(source, "image/png", out / "t.png")

    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.timeout(5)
@pytest.mark.parametrize(
    "size",
    [
        pytest.param((8000, 8000), id="over-herald-cap"),
        pytest.param((100_000, 100_000), id="over-pillow-bomb-limit"),
        pytest.param((2**31 - 1, 2**31 - 1), id="absurd"),
    ],
)
def test_huge_dimension_png_is_refused_without_decoding(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    """A PNG header claiming more than MAX_IMAGE_PIXELS is refused at once (a few bytes read)."""
    assert size[0] * size[1] > MAX_IMAGE_PIXELS
    source = tmp_path / "bomb.png"
    source.write_bytes(_png_header(*size))

    with pytest.raises(ThumbnailError, match="too large"):
        render_thumbnail(source, "image/png", tmp_path / "t.png")

    assert not (tmp_path / "t.png").exists()


def test_bytes_that_are_not_the_claimed_image_type_are_refused(tmp_path: Path) -> None:
    """Text named as a PNG is a ThumbnailError, not whatever Pillow might guess."""
    source = tmp_path / "fake.png"
    source.write_text("hello\n")

    with pytest.raises(ThumbnailError):
        render_thumbnail(source, "image/png", tmp_path / "t.png")


# --- Text, Markdown, Word -------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "text/markdown"])
def test_text_thumbnail_draws_the_opening_lines(tmp_path: Path, content_type: str) -> None:
    """Text gives a white page of the box's size with dark text on it, different per text."""
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("# Essay\n\nThe quick brown fox jumps over the lazy dog.\n" * 5)
    second.write_text("Completely different words on a different number of lines.\n" * 12)

    a = render_thumbnail(first, content_type, tmp_path / "a.png")
    b = render_thumbnail(second, content_type, tmp_path / "b.png")

    image = _open_png(a.path)
    assert image.size == DEFAULT_BOX and a.kind == "text"
    assert _at(image, 0, 0) == (255, 255, 255)
    assert 0.005 < _share(image, _dark) < 0.3
    assert a.path.read_bytes() != b.path.read_bytes()


def test_text_thumbnail_is_deterministic(tmp_path: Path) -> None:
    """The same text gives the same PNG bytes (cacheable, and testable)."""
    source = tmp_path / "a.txt"
    source.write_text("Deterministic\tpixels\n" * 3)

    first = render_thumbnail(source, "text/plain", tmp_path / "1.png").path.read_bytes()
    second = render_thumbnail(source, "text/plain", tmp_path / "2.png").path.read_bytes()

    assert first == second


@pytest.mark.timeout(10)
def test_hostile_text_is_drawn_within_bounds(tmp_path: Path) -> None:
    """A 1 MB unbroken line with control bytes and invalid UTF-8 gives a few rows, quickly."""
    source = tmp_path / "hostile.txt"
    source.write_bytes(b"\x00\x1b[31m\xff\xfe" + b"x" * 1_000_000 + b"\nnever shown\n")

    image = _open_png(render_thumbnail(source, "text/plain", tmp_path / "t.png").path)

    assert image.size == DEFAULT_BOX
    # Only the first TEXT_LINE_CHARS of the line are drawn: the top is text, the rest blank.
    assert _share(image.crop((0, 0, DEFAULT_BOX[0], 100)), _dark) > 0.05
    assert _share(image.crop((0, 300, DEFAULT_BOX[0], DEFAULT_BOX[1])), _dark) == 0


@pytest.mark.timeout(10)
def test_many_lines_fill_the_page_and_stop(tmp_path: Path) -> None:
    """200,000 lines fill the page down to its bottom margin and no further."""
    source = tmp_path / "long.txt"
    source.write_bytes(b"line of text\n" * 200_000)

    image = _open_png(render_thumbnail(source, "text/plain", tmp_path / "t.png").path)

    assert image.size == DEFAULT_BOX
    assert (
        _share(image.crop((0, DEFAULT_BOX[1] - 100, DEFAULT_BOX[0], DEFAULT_BOX[1] - 40)), _dark)
        > 0
    )
    assert _share(image.crop((0, DEFAULT_BOX[1] - 20, DEFAULT_BOX[0], DEFAULT_BOX[1])), _dark) == 0


def test_long_lines_wrap_instead_of_running_off_the_page(tmp_path: Path) -> None:
    """Words beyond the line width continue on the next row, inside the right margin."""
    source = tmp_path / "para.txt"
    source.write_text("word " * 200)

    image = _open_png(render_thumbnail(source, "text/plain", tmp_path / "t.png").path)

    right_margin = image.crop((DEFAULT_BOX[0] - 20, 0, DEFAULT_BOX[0], DEFAULT_BOX[1]))
    assert _share(right_margin, _dark) == 0
    rows = [y for y in range(image.height) if _share(image.crop((0, y, image.width, y + 1)), _dark)]
    assert rows and rows[-1] - rows[0] > 100  # several rows, not one


def test_docx_thumbnail_shows_its_opening_text(tmp_path: Path) -> None:
    """A Word file renders its paragraphs like text; different documents differ."""
    first, second = tmp_path / "a.docx", tmp_path / "b.docx"
    first.write_bytes(_docx(["Essay on thumbnails", "First paragraph of the essay."]))
    second.write_bytes(_docx(["Another document entirely"] * 8))

    a = render_thumbnail(first, DOCX, tmp_path / "a.png")
    b = render_thumbnail(second, DOCX, tmp_path / "b.png")

    image = _open_png(a.path)
    assert a.kind == "docx" and image.size == DEFAULT_BOX
    assert _share(image, _dark) > 0.002
    assert a.path.read_bytes() != b.path.read_bytes()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"PK\x03\x04 not really a zip", id="bad-zip"),
        pytest.param(_docx([]).replace(b"word/document.xml", b"word/elsewhere.xml"), id="no-body"),
        pytest.param(_corrupt_docx(), id="bad-deflate"),
        pytest.param(_docx(["<unclosed"]), id="bad-xml"),
    ],
)
def test_unreadable_docx_is_a_thumbnail_error(tmp_path: Path, content: bytes) -> None:
    """A broken Word file gives ThumbnailError."""
    source = tmp_path / "bad.docx"
    source.write_bytes(content)

    with pytest.raises(ThumbnailError, match="Word document"):
        render_thumbnail(source, DOCX, tmp_path / "t.png")


def test_unsupported_type_is_a_thumbnail_error(tmp_path: Path) -> None:
    """A type with no renderer says so."""
    source = tmp_path / "a.zip"
    source.write_bytes(b"PK")

    with pytest.raises(ThumbnailError, match="no preview"):
        render_thumbnail(source, "application/zip", tmp_path / "t.png")


# --- Atomic write ---------------------------------------------------------------------


def test_failed_render_leaves_the_previous_thumbnail_intact(tmp_path: Path) -> None:
    """Re-rendering over an existing thumbnail and failing keeps the old one whole."""
    good = tmp_path / "good.png"
    Image.new("RGB", (300, 300), "red").save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:100])
    target = tmp_path / "out" / "t.png"
    render_thumbnail(good, "image/png", target)
    before = target.read_bytes()

    with pytest.raises(ThumbnailError):
        render_thumbnail(bad, "image/png", target)

    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["t.png"]


def test_write_failure_removes_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk error mid-write propagates (it is not "no preview") and leaves no partial file."""
    source = tmp_path / "in.png"
    Image.new("RGB", (50, 50), "red").save(source)
    out = tmp_path / "out"

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        render_thumbnail(source, "image/png", out / "t.png")

    assert list(out.iterdir()) == []

"""PDF text extraction: the words of content streams, nothing from fonts or binary."""

from __future__ import annotations

import os
import random
import zlib
from pathlib import Path

from tests.documents import make_pdf, pdf_from_objects
from workers.textract import extract_text, text_stats

TEXT = "The mitochondria is the cell's power plant, as discussed in the notes."


def _words(path: Path) -> list[str]:
    text, _pages = extract_text(path, "application/pdf")
    return text.split()


def test_text_beside_a_megabyte_of_binary(tmp_path: Path) -> None:
    """A 1 MB binary stream (as an embedded font) adds nothing and hides nothing."""
    path = tmp_path / "essay.pdf"
    path.write_bytes(make_pdf(TEXT, padding=os.urandom(1 << 20)))
    text, pages = extract_text(path, "application/pdf")
    assert text.split() == TEXT.split()
    assert text_stats(text, pages).pages == 1


def test_binary_full_of_brackets_is_not_read_as_text(tmp_path: Path) -> None:
    """Brackets and operator names inside binary data are not taken for text."""
    rng = random.Random(7)
    noise = b"(fake) Tj [(fake)] TJ".join(rng.randbytes(500) for _ in range(400))
    path = tmp_path / "noise.pdf"
    path.write_bytes(make_pdf("hello world", padding=noise))
    assert _words(path) == ["hello", "world"]


def test_font_and_image_streams_are_skipped(tmp_path: Path) -> None:
    """A stream whose dictionary marks a font or an image is never scanned, even when
    it happens to hold text operators."""
    content = zlib.compress(b"BT (kept words) Tj ET")
    decoy = b"BT (font words) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%b\nendstream" % (len(content), content),
        b"<< /Length %d /Length1 %d >>\nstream\n%b\nendstream" % (len(decoy), len(decoy), decoy),
        b"<< /Type /XObject /Subtype /Image /Length %d >>\nstream\n%b\nendstream"
        % (len(decoy), decoy),
    ]
    path = tmp_path / "fonts.pdf"
    path.write_bytes(pdf_from_objects(objects))
    assert _words(path) == ["kept", "words"]


def test_tj_arrays_and_escaped_parentheses(tmp_path: Path) -> None:
    content = rb"BT [(Kern) -250 (ing)] TJ (an \(escaped\) pair) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n%b\nendstream" % (len(content), content),
    ]
    path = tmp_path / "tj.pdf"
    path.write_bytes(pdf_from_objects(objects))
    assert _words(path) == ["Kerning", "an", "\\(escaped\\)", "pair"]

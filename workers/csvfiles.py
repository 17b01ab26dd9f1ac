"""CSV outputs people open in spreadsheets: UTF-8 with a byte-order mark (so Excel
reads the accents right), CRLF line ends (RFC 4180), and no cell a spreadsheet
would run as a formula.

A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
is written with a leading apostrophe (OWASP's advice against CSV injection): a
display name such as ``=HYPERLINK("http://evil", "click")`` reaches the marker's
spreadsheet as text. Numbers are written as numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from workers.outputs import writing

__all__ = ["ENCODING", "Cell", "safe_cell", "write_csv"]

ENCODING: Final = "utf-8-sig"
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")

Cell = str | int | float | datetime | None


def safe_cell(value: Cell) -> str | int | float:
    """A cell as written: ``None`` empty, times as ``YYYY-MM-DD HH:MM:SS`` in UTC,
    formulas defused."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime):
        # The form spreadsheets read as a date and time; headers say it is UTC.
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> int:
    """Write ``header`` and ``rows`` to ``path`` atomically; returns the row count.

    Blocking: call it through ``asyncio.to_thread``.
    """
    count = 0
    with writing(path) as handle:
        text = io.TextIOWrapper(handle, encoding=ENCODING, newline="")
        out = csv.writer(text)
        out.writerow([safe_cell(name) for name in header])
        for row in rows:
            out.writerow([safe_cell(cell) for cell in row])
            count += 1
        text.flush()
        # The wrapper must not close the handle: writing() fsyncs and renames it.
        text.detach()
    return count

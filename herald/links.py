"""The one rule for links that users' text may carry: paths on this site only."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["local_path"]

MAX_LENGTH = 2000


def local_path(raw: str | None) -> str | None:
    """``raw`` if it is a path on this site, else ``None``: no other scheme (``javascript:``),
    no other host (``//evil``, or ``/\\evil``, which browsers read the same way), and no
    control characters (browsers drop tabs and newlines: ``/`` tab ``/evil`` is ``//evil``)."""
    if not raw or len(raw) > MAX_LENGTH or not raw.startswith("/") or raw.startswith("//"):
        return None
    if "\\" in raw or any(ord(ch) < 0x20 for ch in raw):
        return None
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc:
        return None
    return raw

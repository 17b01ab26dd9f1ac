"""The built-in signature scanner: a limited stand-in for clamd on one machine.

It detects the EICAR anti-virus test signature anywhere in a file and any file
whose SHA-256 is on a deny list (one hex digest per line). It is named as the
limited scanner it is wherever its verdict is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["EICAR_SIGNATURE", "SCANNER_NAME", "ScanVerdict", "SignatureScanner", "load_deny_list"]

SCANNER_NAME = "built-in signature scanner (EICAR test signature + SHA-256 deny list)"

# The standard EICAR test string, split so that this source file is not itself
# flagged by real anti-virus software.
EICAR_SIGNATURE = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@dataclass(frozen=True)
class ScanVerdict:
    infected: bool
    reason: str


def load_deny_list(path: Path) -> frozenset[str]:
    """SHA-256 digests from a deny-list file; a missing file is an empty list."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return frozenset()
    return frozenset(
        line.strip().lower() for line in lines if line.strip() and not line.startswith("#")
    )


class SignatureScanner:
    """Feed chunks with :meth:`feed`, then ask :meth:`verdict` with the file's digest."""

    def __init__(self, deny_list: frozenset[str]) -> None:
        self._deny_list = deny_list
        self._tail = b""
        self._found = False

    def feed(self, chunk: bytes) -> None:
        if self._found:
            return
        # Keep the last len(signature)-1 bytes so a signature split across two
        # chunks is still found.
        window = self._tail + chunk
        if EICAR_SIGNATURE in window:
            self._found = True
        self._tail = window[-(len(EICAR_SIGNATURE) - 1) :]

    def verdict(self, sha256: str) -> ScanVerdict:
        if self._found:
            return ScanVerdict(True, "matched the EICAR anti-virus test signature")
        if sha256.lower() in self._deny_list:
            return ScanVerdict(True, "its SHA-256 is on the deny list")
        return ScanVerdict(False, f"no threat found by the {SCANNER_NAME}")

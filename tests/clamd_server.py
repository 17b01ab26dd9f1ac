"""A private, real clamd (Debian's ``clamav-daemon``) for tests, with a tiny local database.

Nothing is downloaded: the database is one body signature for the EICAR test
string, written into a temp DatabaseDirectory, so clamd starts in a few
milliseconds. ClamAV reports signatures from local databases with the suffix
``.UNOFFICIAL``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.support import free_port, wait_until
from workers.scanner import EICAR_SIGNATURE

__all__ = ["CLAMD", "EICAR_DETECTED_AS", "NOT_INSTALLED", "ClamdServer"]


def _find_clamd() -> str | None:
    found = shutil.which("clamd")
    if found:
        return found
    # Debian installs it in /usr/sbin, which is not on every user's PATH.
    return "/usr/sbin/clamd" if os.access("/usr/sbin/clamd", os.X_OK) else None


CLAMD = _find_clamd()
NOT_INSTALLED = "clamd tests skipped: Debian clamav-daemon is not installed (.ci/run installs it)"

SIGNATURE_NAME = "Eicar-Test-Signature"
# What clamd answers for it: a signature from a local database is "unofficial".
EICAR_DETECTED_AS = f"{SIGNATURE_NAME}.UNOFFICIAL"

# An .ndb body signature (name:target type 0 = any file:offset * = anywhere:hex) so
# EICAR is found inside a larger file too; an .hdb (MD5 of the whole file) line
# would catch only the bare 68-byte file.
NDB_LINE = f"{SIGNATURE_NAME}:0:*:{EICAR_SIGNATURE.hex()}\n"


def ping(port: int) -> bool:
    """True when a clamd on ``port`` answers PING with PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"zPING\0")
            return sock.recv(16) == b"PONG\0"
    except OSError:
        return False


class ClamdServer:
    """A clamd on a free loopback port with its database, config, log and pid in ``folder``."""

    def __init__(self, folder: Path, *, stream_max_length: str = "1M") -> None:
        if CLAMD is None:
            raise RuntimeError("clamd is not installed (.ci/run installs clamav-daemon)")
        self.folder = folder
        self.port = free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.log = folder / "clamd.log"
        self.started_in: float | None = None  # seconds from exec to the first PONG
        database = folder / "db"
        database.mkdir(parents=True, exist_ok=True)
        (database / "herald-test.ndb").write_text(NDB_LINE)
        self.conf = folder / "clamd.conf"
        self.conf.write_text(
            "\n".join(
                [
                    f"DatabaseDirectory {database}",
                    f"TCPSocket {self.port}",
                    "TCPAddr 127.0.0.1",
                    "Foreground yes",
                    f"LogFile {self.log}",
                    f"PidFile {folder / 'clamd.pid'}",
                    f"TemporaryDirectory {folder}",
                    f"StreamMaxLength {stream_max_length}",
                    # A test must not wait 10 minutes for a database self-check.
                    "SelfCheck 0",
                    "",
                ]
            )
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert CLAMD is not None
        began = time.monotonic()
        self._proc = subprocess.Popen(
            [CLAMD, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        proc = self._proc

        def ready() -> bool:
            if proc.poll() is not None:
                tail = self.log.read_text()[-2000:] if self.log.exists() else ""
                raise RuntimeError(f"clamd exited with {proc.returncode}:\n{tail}")
            return ping(self.port)

        wait_until(ready, timeout=30, what=f"clamd PONG on port {self.port}")
        self.started_in = time.monotonic() - began

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

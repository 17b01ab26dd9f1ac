"""``herald up`` as a person runs it: every process started, then stopped cleanly by
a signal, even when the signal arrives twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.conftest import stack_env
from tests.support import port_open, wait_until

START_TIMEOUT = 90.0


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_up_starts_everything_and_a_doubled_signal_stops_it_cleanly(
    tmp_path: Path, redis_server: str
) -> None:
    env = stack_env(tmp_path, redis_server, f"sqlite+aiosqlite:///{tmp_path / 'herald.db'}")
    web_port, router_port = int(env["HERALD_WEB_PORT"]), int(env["HERALD_ROUTER_PORT"])
    up = subprocess.Popen(
        [sys.executable, "-m", "herald", "up"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: _healthy(web_port), timeout=START_TIMEOUT, what="herald up's web")
        assert port_open(router_port)
        up.send_signal(signal.SIGTERM)
        up.send_signal(signal.SIGTERM)  # e.g. a wrapper forwarding what it was sent
        output, _ = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
    assert up.returncode == 0, output
    assert "Traceback" not in output
    assert '"up.stopped"' in output
    assert not port_open(web_port) and not port_open(router_port)

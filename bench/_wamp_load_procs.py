"""What the live-sessions benchmark reads about processes, from /proc (Linux):
resident memory, CPU time, open descriptors, and the Crossbar router worker's PID."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcSample", "children_of", "crossbar_worker", "sample"]

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcSample:
    pid: int
    rss_kb: int
    cpu_seconds: float  # user + system, since the process started
    fds: int


def sample(pid: int) -> ProcSample:
    """VmRSS, CPU time and open descriptors of ``pid`` now."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
            break
    # /proc/PID/stat: the command may hold spaces, so count fields after its ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return ProcSample(pid, rss_kb, cpu, fds)


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid``, from each process's parent field."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def crossbar_worker(controller_pid: int) -> int | None:
    """The router worker the Crossbar node controller started (``crossbar.worker.main
    ... --type router``), or ``None`` while it is not up yet."""
    for child in children_of(controller_pid):
        try:
            cmdline = _cmdline(child)
        except OSError:
            continue
        if "crossbar.worker" in cmdline and "router" in cmdline:
            return child
    return None

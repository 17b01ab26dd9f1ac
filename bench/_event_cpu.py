"""CPU time of processes (and their descendants) and of the whole machine, from /proc,
so bench/event_latency.py can say where the time of a run went."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuSnapshot", "cpu_usage", "snapshot"]

TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name sits in parentheses and may hold spaces: split after it.
    return raw[raw.rindex(")") + 2 :].split()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def _tree(pid: int, children: Mapping[int, list[int]]) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _process_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # utime and stime: fields 14 and 15 of /proc/PID/stat, i.e. 11 and 12 after the name.
    return (int(fields[11]) + int(fields[12])) / TICKS


def _machine_busy_and_total() -> tuple[float, float]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # without guest time, which is already in user
    return (total - idle) / TICKS, total / TICKS


@dataclass(frozen=True)
class CpuSnapshot:
    wall: float
    per_name: dict[str, float]
    machine_busy: float
    machine_total: float


def snapshot(pids: Mapping[str, int]) -> CpuSnapshot:
    """CPU seconds so far of each named process tree, and of the machine."""
    children = _children_map()
    per_name = {
        name: sum(_process_seconds(p) for p in _tree(pid, children)) for name, pid in pids.items()
    }
    busy, total = _machine_busy_and_total()
    return CpuSnapshot(time.monotonic(), per_name, busy, total)


def cpu_usage(before: CpuSnapshot, after: CpuSnapshot) -> tuple[dict[str, float], float]:
    """Per process tree, % of one core between two snapshots; and the machine's busy %
    of all its cores (what else ran shows as the difference)."""
    wall = after.wall - before.wall
    per = {
        name: 100 * (after.per_name.get(name, 0.0) - seconds) / wall
        for name, seconds in before.per_name.items()
    }
    spent = after.machine_total - before.machine_total
    busy = 100 * (after.machine_busy - before.machine_busy) / spent if spent > 0 else 0.0
    return per, busy

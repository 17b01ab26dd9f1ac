"""The load-client processes of bench/live_sessions.py (bench/_wamp_load.py), driven
over JSON lines: each holds its share of the sessions and reports event arrivals."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Client", "start_clients"]

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Client:
    """One load-client process: its latest progress, its join report, its replies."""

    proc: asyncio.subprocess.Process
    joined: dict[str, Any] | None = None
    last: dict[str, Any] = field(default_factory=dict)
    replies: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    async def read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            record = json.loads(line)
            if record["type"] in ("progress", "joined"):
                self.last = record
                if record["type"] == "joined":
                    self.joined = record
            else:
                await self.replies.put(record)

    async def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()
        return await self.replies.get()


async def start_clients(
    root: Path, specs: list[list[Any]], procs: int, rate: float, url: str, origin: str
) -> list[Client]:
    clients = []
    for index in range(procs):
        work = root / f"load-{index}.json"
        share = specs[index::procs]
        work.write_text(
            json.dumps({"url": url, "origin": origin, "rate": rate / procs, "sessions": share})
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench._wamp_load",
            str(work),
            cwd=REPO_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 26,  # one line carries every arrival time of a broadcast
        )
        clients.append(Client(proc))
    return clients

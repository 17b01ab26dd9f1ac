"""The adapter interface that ``bench/queue.py`` drives, and the list of adapters.

One module per system (``bench/systems/<name>.py``) holds a :class:`QueueSystem`
subclass; the job bodies its workers run live beside it in ``<name>_tasks.py``
(importable as ``bench.systems.<name>_tasks``). Every job body is one Redis command
on a key that the harness passes as the job's argument, so every system does the
same work and the harness can see it happen:

- an *incr* job runs ``INCR key`` (the harness polls that counter);
- a *stamp* job runs ``RPUSH key repr(time.time())`` (the harness ``BLPOP``\\ s it).

How the harness uses an adapter, per run of ``bench/queue.py``::

    system = SystemClass()
    system.prepare(ctx)                       # once
    for each workload:                        # W1 drain, W2 enqueue rate, W3 pickup latency
        FLUSHALL; system.reset()
        system.enqueue_incr(n, key) / system.enqueue_stamp(key)   # in the harness process
        spawn system.worker_commands(k)       # W1 and W3 only; cwd=ctx.workdir, env=
                                              # os.environ | worker_env(ctx) | system.worker_env()
        ... measure ...
        SIGTERM the workers' process groups, SIGKILL after 5 s
    system.close()                            # once, also after a failure
"""

from __future__ import annotations

import abc
import asyncio
import os
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["REDIS_URL_ENV", "SYSTEMS", "BenchContext", "QueueSystem", "worker_env"]

T = TypeVar("T")

#: Environment variable holding the private Redis URL, in the harness and in every
#: worker process; the ``*_tasks`` modules read it at import time.
REDIS_URL_ENV = "BENCH_REDIS_URL"

#: name -> "module:Class", imported only when selected, so a missing peer library
#: (or a missing Herald adapter) skips that system instead of failing the run.
SYSTEMS: dict[str, str] = {
    "herald": "bench.systems.herald:HeraldSystem",
    "streams": "bench.systems.streams:StreamsSystem",
    "dramatiq": "bench.systems.dramatiq:DramatiqSystem",
    "saq": "bench.systems.saq:SaqSystem",
    "celery": "bench.systems.celery:CelerySystem",
    "arq": "bench.systems.arq:ArqSystem",
    "rq": "bench.systems.rq:RqSystem",
}


@dataclass(frozen=True)
class BenchContext:
    """What an adapter may use; one per system, so ``workdir`` is its own."""

    redis_url: str  # redis://127.0.0.1:PORT/0, the harness's private redis-server
    workdir: Path  # empty private directory, removed at exit; the workers' cwd
    python: str  # sys.executable: run worker CLIs as [python, "-m", ...]
    repo_root: Path  # put on the workers' PYTHONPATH, so ``bench.systems.*`` imports


def worker_env(ctx: BenchContext) -> dict[str, str]:
    """Variables the harness adds to ``os.environ`` for every worker process."""
    path = os.environ.get("PYTHONPATH")
    return {
        REDIS_URL_ENV: ctx.redis_url,
        "PYTHONPATH": f"{ctx.repo_root}{os.pathsep}{path}" if path else str(ctx.repo_root),
    }


class QueueSystem(abc.ABC):
    """One job queue under test. Methods run in the harness process, synchronously."""

    #: Short name shown in the tables (the key in :data:`SYSTEMS`).
    name: str = ""
    #: One line on the settings used, printed under the tables.
    settings: str = ""
    #: ``--skip-slow`` leaves it out (it takes minutes at the default job count).
    slow: bool = False
    #: Seconds between an idle worker's polls, for systems that poll instead of
    #: blocking: W3 then spreads its samples over that cycle.
    poll_interval: float = 0.0

    _loop: asyncio.AbstractEventLoop | None = None

    @abc.abstractmethod
    def prepare(self, ctx: BenchContext) -> None:
        """Once, before any workload: connect clients, write config into ``ctx.workdir``."""

    def reset(self) -> None:  # noqa: B027 (optional hook: most systems need no reset)
        """Before each workload, right after the harness's FLUSHALL: drop client-side
        state and recreate anything Redis must hold before enqueueing (e.g. a group)."""

    @abc.abstractmethod
    def enqueue_incr(self, n: int, key: str) -> None:
        """Enqueue ``n`` jobs whose body is ``INCR key``; return when all are in Redis.

        Timed as W2 (jobs/s), so batch or pipeline only as far as the system's own
        enqueue API does.
        """

    @abc.abstractmethod
    def enqueue_stamp(self, key: str) -> None:
        """Enqueue one job whose body is ``RPUSH key repr(time.time())``."""

    @abc.abstractmethod
    def worker_commands(self, processes: int) -> list[list[str]]:
        """argv lists that together run ``processes`` worker processes.

        One argv per process, or one argv for a CLI that forks ``processes`` itself.
        Each is started in its own session (so the harness can signal its whole
        process group) with stdout/stderr to a log file in ``ctx.workdir``.
        """

    def worker_env(self) -> dict[str, str]:
        """Extra environment for the worker processes (after :func:`worker_env`)."""
        return {}

    def close(self) -> None:
        """Once, at the end (also after a failure): close clients."""
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on this adapter's own event loop, for asyncio-only clients.

        One loop for the adapter's lifetime, because asyncio Redis connections are
        bound to the loop that opened them.
        """
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

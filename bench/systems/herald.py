"""Herald's own queue, with every guarantee on: a DB row per task (SQLite by default,
the embedded default; ``BENCH_HERALD_DATABASE_URL`` for PostgreSQL), leases renewed
by heartbeats, fencing in Redis and in the DB, an audit row per state change, and
events on ``admin.tasks`` for every batch of state changes.

Jobs are ``diag.noop`` tasks: ``{"count_in": key}`` is the INCR body and
``{"stamp_in": key}`` the stamp body.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.systems import REDIS_URL_ENV, BenchContext, QueueSystem

# Tasks per submit_tasks call: Herald's submit API takes a batch (one transaction,
# one Redis round trip), as a bulk import or a release to a whole class does.
SUBMIT_BATCH = 500
CONCURRENCY = os.environ.get("BENCH_HERALD_CONCURRENCY", "200")


class HeraldSystem(QueueSystem):
    name = "herald"
    settings = (
        f"herald worker --queues diag --concurrency {CONCURRENCY} per process; "
        f"submit_tasks in batches of {SUBMIT_BATCH}; DB row + audit rows per task"
    )

    def prepare(self, ctx: BenchContext) -> None:
        from herald.db import Transactions, create_engine, session_factory
        from herald.migrate import upgrade
        from herald.redis_pool import connect
        from workers.queue import RedisQueue

        self.ctx = ctx
        self.database_url = os.environ.get(
            "BENCH_HERALD_DATABASE_URL", f"sqlite+aiosqlite:///{ctx.workdir / 'herald.db'}"
        )
        upgrade(self.database_url)
        self.engine = create_engine(self.database_url)
        self.sessions = session_factory(self.engine)
        self.transactions = Transactions(self.engine)
        self.redis = connect(ctx.redis_url)
        self.queue = RedisQueue(self.redis)
        # Herald's own environment when there is one (make setup's .venv), so its
        # workers run on the dependencies Herald is installed with.
        own = ctx.repo_root / ".venv" / "bin" / "python"
        self.python = str(own) if own.exists() else ctx.python

    def reset(self) -> None:
        """Empty the task tables: the DB is the truth, and a worker's reconciler would
        otherwise put the previous workload's pending tasks back on the queue."""
        from sqlalchemy import delete

        from herald.models import Task, TaskEvent

        async def empty() -> None:
            async with self.sessions.begin() as db:
                await db.execute(delete(TaskEvent))
                await db.execute(delete(Task))

        self.run(empty())

    def _submit(self, params: list[dict[str, Any]]) -> None:
        from workers.control import TaskRequest, submit_tasks

        async def submit() -> None:
            for start in range(0, len(params), SUBMIT_BATCH):
                chunk = params[start : start + SUBMIT_BATCH]
                await submit_tasks(
                    self.transactions, self.queue, [TaskRequest("diag.noop", p) for p in chunk]
                )

        self.run(submit())

    def enqueue_incr(self, n: int, key: str) -> None:
        self._submit([{"count_in": key}] * n)

    def enqueue_stamp(self, key: str) -> None:
        self._submit([{"stamp_in": key}])

    def worker_commands(self, processes: int) -> list[list[str]]:
        argv = [self.python, "-m", "herald", "worker", "--queues", "diag"]
        return [[*argv, "--concurrency", CONCURRENCY] for _ in range(processes)]

    def worker_env(self) -> dict[str, str]:
        return {
            "HERALD_DATABASE_URL": self.database_url,
            "HERALD_REDIS_URL": os.environ.get(REDIS_URL_ENV, self.ctx.redis_url),
            "HERALD_VAR_DIR": str(Path(self.ctx.workdir) / "var"),
            "HERALD_LOG_LEVEL": "warning",
            "HERALD_LOG_FORMAT": "json",
        }

    def close(self) -> None:
        async def shut() -> None:
            await self.redis.aclose()
            await self.engine.dispose()

        self.run(shut())
        self.transactions.close()
        super().close()

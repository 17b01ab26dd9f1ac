"""SIGKILL a worker process mid-job, again and again: nothing is lost, nothing is
done twice, and the dead worker's jobs are taken over. How fast is a benchmark's
question (`bench/queue.py` measures crash recovery), not this test's."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

from redis.asyncio import Redis
from sqlalchemy import select

from herald import names
from herald.db import create_engine, session_factory
from herald.health import instance_id
from herald.models import Submission
from herald.settings import Settings
from herald.supervisor import Supervisor
from tests.conftest import stack_env
from tests.support import eventually
from tests.workers.support import assert_all_complete_exactly_once, submit_file

SUBMISSIONS = 24
KILLS = 5


async def _jobs_held_by(redis: Redis, worker_id: str) -> list[str]:
    """Job ids whose latest claim is by ``worker_id`` and that still exist."""
    held = []
    async for key in redis.scan_iter(match=names.job_key("*"), count=500):
        if (await redis.hget(key, "worker") or b"").decode() == worker_id:
            held.append(key.decode().rsplit(":", 1)[1])
    return held


async def test_sigkilled_workers_lose_nothing_and_repeat_nothing(
    tmp_path: Path, redis_server: str, database_url: str, redis: Redis
) -> None:
    """Five SIGKILLs at random moments: every submission completes, each step is recorded
    done exactly once, and each dead worker's jobs are taken over by another worker."""
    env = stack_env(tmp_path, redis_server, database_url, HERALD_WORKER_CONCURRENCY="4")
    settings = Settings.from_env(env)
    rng = random.Random(20261123)
    ids = []
    for index in range(SUBMISSIONS):
        # ~3 MB each: long enough that kills land inside handlers.
        body = os.urandom(16) + (f"essay {index} " * 250_000).encode()
        ids.append(await submit_file(settings, body, f"essay-{index}.txt", "text/plain"))

    supervisor = Supervisor(settings, {**os.environ, **env}, log_dir=tmp_path / "logs")
    recoveries = []
    try:
        for _ in range(KILLS):
            worker = supervisor.start_service("worker")
            await asyncio.sleep(rng.uniform(0.2, 1.2))  # random point mid-run: the fault
            dead_id = instance_id(worker.proc.pid)
            held = await _jobs_held_by(redis, dead_id)
            worker.proc.kill()
            worker.proc.wait()
            killed_at = time.monotonic()
            supervisor.start_service("worker")
            if held:

                async def recovered(dead: str = dead_id) -> bool:
                    return not await _jobs_held_by(redis, dead)

                await eventually(recovered, timeout=30, what="the dead worker's jobs")
                recoveries.append(time.monotonic() - killed_at)

        await assert_all_complete_exactly_once(settings, SUBMISSIONS)
        engine = create_engine(settings)
        async with session_factory(engine)() as db:
            stored = {s.stored_path for s in (await db.scalars(select(Submission))).all()}
        await engine.dispose()
    finally:
        supervisor.stop_all()

    assert len(stored) == SUBMISSIONS and all(Path(p or "").exists() for p in stored)
    print(f"recovery after SIGKILL (s): {[round(r, 2) for r in recoveries]}")
    assert recoveries, "no kill landed while the worker held a job"
    assert await redis.zcard(names.queue_leases_key("io")) == 0
    assert await redis.zcard(names.queue_leases_key("cpu")) == 0

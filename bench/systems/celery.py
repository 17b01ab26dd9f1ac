"""Celery with the Redis broker (kombu's list-based transport)."""

from __future__ import annotations

from bench.systems import BenchContext, QueueSystem


class CelerySystem(QueueSystem):
    """k solo-pool workers: each process runs its tasks itself, one at a time.

    The solo pool rather than prefork: "k processes" then means k processes that run
    jobs, not k pool parents plus k children, and it is the faster of the two here.
    """

    name = "celery"
    settings = (
        "solo pool, k worker processes; acks_late, prefetch multiplier 4, no result backend; "
        "--without-mingle/gossip/heartbeat; apply_async() per job"
    )

    def prepare(self, ctx: BenchContext) -> None:
        from bench.systems import celery_tasks

        self.ctx = ctx
        self.tasks = celery_tasks

    def enqueue_incr(self, n: int, key: str) -> None:
        apply = self.tasks.incr.apply_async
        for _ in range(n):
            apply((key,))

    def enqueue_stamp(self, key: str) -> None:
        self.tasks.stamp.apply_async((key,))

    def worker_commands(self, processes: int) -> list[list[str]]:
        return [
            [
                *(self.ctx.python, "-m", "celery", "-A", "bench.systems.celery_tasks", "worker"),
                *("--pool", "solo", "--loglevel", "WARNING", "--hostname", f"w{i}@%h"),
                # Start-up is timed; mingle waits for replies from other nodes, and gossip
                # and heartbeats are cluster chatter no job needs.
                *("--without-mingle", "--without-gossip", "--without-heartbeat"),
            ]
            for i in range(processes)
        ]

    def close(self) -> None:
        self.tasks.app.close()
        super().close()

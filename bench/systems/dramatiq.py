"""Dramatiq with its Redis broker (a list per queue plus a Lua-managed ack set)."""

from __future__ import annotations

from bench.systems import BenchContext, QueueSystem


class DramatiqSystem(QueueSystem):
    """``dramatiq --processes k --threads 8``, prefetch 256, no retries."""

    name = "dramatiq"
    settings = "--processes k --threads 8, queue prefetch 256, max_retries 0; send() per job"

    def prepare(self, ctx: BenchContext) -> None:
        from bench.systems import dramatiq_tasks

        self.ctx = ctx
        self.tasks = dramatiq_tasks

    def enqueue_incr(self, n: int, key: str) -> None:
        send = self.tasks.incr.send
        for _ in range(n):
            send(key)

    def enqueue_stamp(self, key: str) -> None:
        self.tasks.stamp.send(key)

    def worker_commands(self, processes: int) -> list[list[str]]:
        # Dramatiq forks its own worker processes: one command for all k.
        return [
            [
                *(self.ctx.python, "-m", "dramatiq", "bench.systems.dramatiq_tasks"),
                *("--processes", str(processes), "--threads", "8"),
            ]
        ]

    def worker_env(self) -> dict[str, str]:
        # The only way to set the prefetch from the CLI (default: 2 per thread).
        return {"dramatiq_queue_prefetch": "256"}

    def close(self) -> None:
        self.tasks.dramatiq.get_broker().close()
        super().close()

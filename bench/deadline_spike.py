"""Deadline spike: thousands of submissions within minutes, through the HTTP API,
the full pipeline behind them; every one completes, nothing lost, nothing twice.

    python bench/deadline_spike.py [--submissions 5000] [--minutes 5] [--students 1000]
                                   [--db sqlite|postgres] [--workers 2]
                                   [--worker-concurrency 32] [--plagiarism-delay 5]
                                   [--size-kb 1024] [--profile DIR]

The stack is real (bench/_spike_stack.py: private redis-server, a fresh database,
clamd with a local EICAR database, the web process and ``--workers`` ``herald
worker`` processes) with production settings pointing at real local servers
(bench/_spike_world.py) that count, per submission, the checks the plagiarism
service was asked for, the webhook calls the admin system received and the
receipts the SMTP server accepted. ``--students`` seeded students (one argon2
hash for all, written straight to the DB) sign in over HTTP first (8 at a time:
sign-in failures are rate limited per address, web/ratelimit.py, and a sign-in
counts provisionally until its password checks out); uploads are not rate limited.

The spike is open-loop: submission *i* is sent at ``i × minutes·60 / submissions``
seconds whatever the server's state, by student ``i mod students``, each a distinct
PDF (a 3,000-word essay plus random bytes up to ``--size-kb``). The plagiarism
service answers a check ``--plagiarism-delay`` s after it was created (the real
service takes ~30 s); the step polls it every 2 s.

Reported: the submission rate achieved, the 202's server and client p50/p99 during
the spike, the time from the last 202 to the last submission finished (drain), the
deepest backlog per queue, and the counts check (every accepted submission complete
in the DB, each of its steps recorded done once, and exactly one plagiarism check,
one webhook call and one email for it).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == REPO_ROOT / "bench":
    sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import collections  # noqa: E402
import contextlib  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from redis.asyncio import Redis  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bench._spike_client import Student, Upload, essay_pdf, sign_in, wait_drained  # noqa: E402
from bench._spike_stack import Stack, percentile, start_stack  # noqa: E402
from bench._spike_world import World, outside_world  # noqa: E402
from herald import names  # noqa: E402
from herald.db import create_engine, session_factory  # noqa: E402
from herald.logs import configure_logging  # noqa: E402
from herald.models import Submission, SubmissionStatus, Task, TaskEvent, TaskStatus  # noqa: E402
from herald.settings import Settings  # noqa: E402
from workers.pipeline import SUBMISSION_STEPS  # noqa: E402

QUEUES = ("cpu", "io")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Backlog:
    """The deepest ready backlog per queue, sampled every second."""

    deepest: dict[str, tuple[int, float]] = field(default_factory=dict)  # queue -> (depth, at s)

    async def sample(self, redis: Redis, began: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for queue in QUEUES:
                depth = int(await redis.zcard(names.queue_ready_key(queue)))
                if depth > self.deepest.get(queue, (-1, 0.0))[0]:
                    self.deepest[queue] = (depth, time.monotonic() - began)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def spike(
    students: list[Student], path: str, base: bytes, count: int, seconds: float
) -> tuple[list[Upload], float, float]:
    """Open-loop arrivals; returns the uploads, when the first was sent and when the
    last 202 came back (``time.monotonic()``)."""
    gap = seconds / count
    began = time.monotonic()
    failures: collections.Counter[str] = collections.Counter()

    async def one(index: int) -> Upload | None:
        await asyncio.sleep(max(0.0, began + index * gap - time.monotonic()))  # the schedule
        student = students[index % len(students)]
        upload = await student.upload(path, base + f"%spike-{index}\n".encode())
        if upload.status != 202:
            failures[f"{upload.status} {upload.body}"] += 1
            return None
        if index % 500 == 0:
            log(f"sent {index + 1}/{count}")
        return upload

    results = await asyncio.gather(*(one(i) for i in range(count)))
    last_ack = time.monotonic()
    if failures:
        log(f"refused uploads: {dict(failures)}")
    return [r for r in results if r is not None], began, last_ack


async def counts_check(stack: Stack, world: World, accepted: set[int]) -> list[str]:
    """Every way a submission could be lost or doubled; an empty list is a pass."""
    problems = []
    engine = create_engine(stack.settings)
    try:
        async with session_factory(engine)() as db:
            statuses = dict((await db.execute(select(Submission.id, Submission.status))).all())
            done_per_task = collections.Counter(
                dict(
                    (
                        await db.execute(
                            select(TaskEvent.task_id, func.count())
                            .where(TaskEvent.status == TaskStatus.DONE)
                            .group_by(TaskEvent.task_id)
                        )
                    ).all()
                )
            )
            tasks = (await db.execute(select(Task.id, Task.submission_id))).all()
    finally:
        await engine.dispose()
    if set(statuses) != accepted:
        problems.append(
            f"DB submissions ≠ accepted: {len(set(statuses) - accepted)} unknown, "
            f"{len(accepted - set(statuses))} missing"
        )
    incomplete = [s for s, status in statuses.items() if status != SubmissionStatus.COMPLETE]
    if incomplete:
        problems.append(f"{len(incomplete)} not complete, e.g. {incomplete[:5]}")
    steps_per_submission = collections.Counter(sub for _task, sub in tasks)
    if set(steps_per_submission.values()) - {len(SUBMISSION_STEPS)}:
        problems.append("a submission without its full set of step tasks")
    twice = [task for task, _sub in tasks if done_per_task.get(task, 0) != 1]
    if twice:
        problems.append(f"{len(twice)} step tasks not recorded done exactly once")
    for what, counted in (
        ("plagiarism checks", world.plagiarism.posts),
        ("webhook calls", world.webhook_calls()),
        ("emails", world.emails()),
    ):
        missing = accepted - set(counted)
        doubled = {s: n for s, n in counted.items() if n != 1}
        stray = set(counted) - accepted
        if missing or doubled or stray:
            problems.append(
                f"{what}: {len(missing)} missing, {len(doubled)} more than once, "
                f"{len(stray)} for unknown submissions"
            )
    return problems


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(9)
    with tempfile.TemporaryDirectory(prefix="herald-bench-spike-") as tmp:
        root = Path(tmp)
        async with (
            outside_world(args.plagiarism_delay) as world,
            start_stack(root, args.db, args.students, world.env()) as stack,
        ):
            stack.start_web()
            stack.start_workers(args.workers, args.worker_concurrency)
            await stack.wait_web()
            log(f"stack up in {root}; signing in {args.students} students…")
            signed_in = time.monotonic()
            students = await sign_in(stack, stack.students)
            log(f"signed in {len(students)} in {time.monotonic() - signed_in:.1f} s")
            base = essay_pdf(rng, padding=max(0, args.size_kb * 1024 - 30_000))
            redis = Redis.from_url(stack.settings.redis_url)
            backlog, sampling = Backlog(), asyncio.Event()
            profilers = (
                stack.profile([stack.web, *stack.workers], "profile-spike") if args.profile else []
            )
            sampler = asyncio.create_task(backlog.sample(redis, time.monotonic(), sampling))
            path = f"/api/assignments/{stack.assignment_id}/submissions"
            uploads, began, last_ack = await spike(
                students, path, base, args.submissions, args.minutes * 60
            )
            log(f"all sent; waiting for the pipeline to drain ({len(uploads)} accepted)…")
            drained_at = await wait_drained(stack, len(uploads))
            sampling.set()
            await sampler
            if profilers:
                stack.stop_profilers(profilers)
                args.profile.mkdir(parents=True, exist_ok=True)
                for found in root.glob("profile-*.txt"):
                    shutil.copy(found, args.profile / found.name)
            await redis.aclose()
            accepted = {u.submission_id for u in uploads if isinstance(u.submission_id, int)}
            problems = await counts_check(stack, world, accepted)
            if problems:
                kept = Path(tempfile.mkdtemp(prefix="herald-spike-logs-"))
                for found in root.glob("*.log"):
                    shutil.copy(found, kept / found.name)
                log(f"counts check failed; the processes' logs are in {kept}")
            for student in students:
                await student.close()
    report(args, len(base), uploads, began, last_ack, drained_at, backlog, problems)


def report(
    args: argparse.Namespace,
    size: int,
    uploads: list[Upload],
    began: float,
    last_ack: float,
    drained_at: float,
    backlog: Backlog,
    problems: list[str],
) -> None:
    sending = last_ack - began
    server = [u.server_ms for u in uploads]
    client = [u.client_ms for u in uploads]
    print(
        f"## Deadline spike: {args.submissions} submissions of {size / 1e6:.2f} MB PDFs in "
        f"{args.minutes:g} min from {args.students} students ({args.db}, {args.workers} worker "
        f"process(es) × {args.worker_concurrency}, plagiarism service {args.plagiarism_delay:g} s, "
        f"{os.cpu_count()} cores)\n"
    )
    print("| measure | value |")
    print("|---|---:|")
    print(f"| accepted (202) | {len(uploads)} of {args.submissions} |")
    print(f"| submission rate achieved | {len(uploads) / sending:.1f}/s over {sending:.1f} s |")
    print(
        f"| 202 server p50 / p99 | {statistics.median(server):.1f} / "
        f"{percentile(server, 0.99):.1f} ms |"
    )
    print(
        f"| 202 client p50 / p99 | {statistics.median(client):.1f} / "
        f"{percentile(client, 0.99):.1f} ms |"
    )
    print(f"| drain: last 202 → last submission complete | {drained_at - last_ack:.1f} s |")
    print(f"| first upload → last complete | {drained_at - began:.1f} s |")
    for queue, (depth, at) in sorted(backlog.deepest.items()):
        print(f"| deepest `{queue}` backlog | {depth} jobs at {at:.0f} s |")
    verdict = "PASS: 0 lost, 0 duplicated" if not problems else "FAIL: " + "; ".join(problems)
    print(
        f"| counts: complete, each step done once, 1 check, 1 webhook call, 1 email each "
        f"| {verdict} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submissions", type=int, default=5000)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--worker-concurrency", type=int, default=32)
    parser.add_argument("--plagiarism-delay", type=float, default=5.0)
    parser.add_argument("--size-kb", type=int, default=1024, help="each PDF's size")
    parser.add_argument("--profile", type=Path, help="py-spy web and workers into this folder")
    args = parser.parse_args()
    configure_logging(Settings.from_env({"HERALD_LOG_LEVEL": "warning"}), "bench")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

"""How long each pipeline step takes on one submission, on the embedded defaults.

    python bench/pipeline.py [--pdf FILE] [--repeats 3] [--earlier 50]

Starts a private redis-server and a worker in this process on a temporary SQLite
database, loads the demo data and ``--earlier`` other students' essays (so the
similarity step has work to compare against), then submits the PDF (default: a
generated ~1 MB one: a 3,000-word essay plus a 1 MB embedded font-like stream, the
shape of a real exported essay) ``--repeats`` times. Prints each step's median
wall time from its task row (started → finished) and the whole pipeline's.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == REPO_ROOT / "bench":
    sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from sqlalchemy import select  # noqa: E402

from herald.db import create_engine, session_factory  # noqa: E402
from herald.logs import configure_logging  # noqa: E402
from herald.migrate import upgrade_async  # noqa: E402
from herald.models import SUBMISSION_FINAL, Submission, Task  # noqa: E402
from herald.settings import Settings  # noqa: E402
from tests.documents import make_pdf  # noqa: E402
from tests.support import RedisServer  # noqa: E402
from tests.workers.support import submit_file  # noqa: E402
from workers import worker  # noqa: E402
from workers.pipeline import SUBMISSION_STEPS  # noqa: E402

WORDS = [
    "queue",
    "worker",
    "student",
    "upload",
    "deadline",
    "progress",
    "scan",
    "store",
    "record",
    "similarity",
    "preview",
    "receipt",
    "marker",
    "grade",
    "course",
    "assignment",
    "essay",
    "argument",
    "evidence",
    "method",
    "result",
    "analysis",
    "conclusion",
    "reference",
    "source",
    "claim",
    "reason",
    "example",
    "data",
    "table",
    "figure",
    "chapter",
    "section",
]


def essay(rng: random.Random, words: int) -> str:
    sentences = []
    while sum(len(s.split()) for s in sentences) < words:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20)))
        sentences.append(sentence.capitalize() + ".")
    return " ".join(sentences)


async def wait_final(settings: Settings, submission_id: int) -> dict[str, float]:
    engine = create_engine(settings)
    try:
        sessions = session_factory(engine)
        while True:
            async with sessions() as db:
                submission = await db.get(Submission, submission_id)
                assert submission is not None
                if submission.status in SUBMISSION_FINAL:
                    tasks = (
                        await db.scalars(select(Task).where(Task.submission_id == submission_id))
                    ).all()
                    return {
                        SUBMISSION_STEPS[t.step_index or 0].name: (
                            t.finished_at - t.started_at
                        ).total_seconds()
                        for t in tasks
                        if t.started_at and t.finished_at
                    }
            await asyncio.sleep(0.05)  # polling the DB for the end, not simulating work
    finally:
        await engine.dispose()


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="herald-bench-pipeline-") as tmp:
        root = Path(tmp)
        redis = RedisServer(root / "redis")
        redis.start()
        try:
            url = f"sqlite+aiosqlite:///{root / 'herald.db'}"
            await upgrade_async(url)
            settings = Settings.from_env(
                {
                    "HERALD_VAR_DIR": str(root),
                    "HERALD_DATABASE_URL": url,
                    "HERALD_REDIS_URL": redis.url,
                    "HERALD_LOG_LEVEL": "warning",
                }
            )
            stop = asyncio.Event()
            running = asyncio.create_task(worker.serve(settings, stop, concurrency=4))
            pdf = (
                Path(args.pdf).read_bytes()
                if args.pdf
                else make_pdf(essay(rng, 3000), padding=os.urandom(1 << 20))
            )
            print(f"submitting {args.earlier} earlier essays…", file=sys.stderr)
            earlier = [
                await submit_file(
                    settings, essay(rng, 1500).encode(), f"e{i}.txt", "text/plain", "bob"
                )
                for i in range(args.earlier)
            ]
            for submission_id in earlier:
                await wait_final(settings, submission_id)
            samples: dict[str, list[float]] = {}
            totals = []
            for repeat in range(args.repeats):
                started = time.perf_counter()
                submission_id = await submit_file(
                    settings, pdf + b"%" + str(repeat).encode(), "essay.pdf", "application/pdf"
                )
                for name, seconds in (await wait_final(settings, submission_id)).items():
                    samples.setdefault(name, []).append(seconds)
                totals.append(time.perf_counter() - started)
                print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)
            stop.set()
            await running
        finally:
            redis.stop()
    print(f"## Pipeline steps for a {len(pdf) / 1e6:.2f} MB PDF ({args.repeats} runs, median)\n")
    print("| step | queue | seconds |")
    print("|---|---|---:|")
    for step in SUBMISSION_STEPS:
        values = samples.get(step.name)
        shown = f"{statistics.median(values):.3f}" if values else "–"
        print(f"| {step.name} | {step.queue} | {shown} |")
    print(f"| **upload to complete** | | **{statistics.median(totals):.3f}** |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pdf", help="a PDF to submit (default: a generated ~1 MB essay)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--earlier", type=int, default=50)
    args = parser.parse_args()
    configure_logging(Settings.from_env({"HERALD_LOG_LEVEL": "warning"}), "bench")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

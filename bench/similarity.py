"""What the built-in similarity engine costs: fingerprinting a large text, storing it,
and comparing one submission with many stored ones.

    python bench/similarity.py [--submissions 1000] [--words 1500] [--database-url URL]

Texts are random words from a 20,000-word synthetic vocabulary (so unrelated
texts share almost nothing, as essays do) and every tenth stored submission
copies a passage of the probe, so the comparison has real matches to rank.
Without ``--database-url`` a fresh SQLite file is used; on PostgreSQL the table is
analysed after loading, as autovacuum would do. The report (markdown)
goes to stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == REPO_ROOT / "bench":
    sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from sqlalchemy import insert  # noqa: E402
from sqlalchemy import text as sql_text  # noqa: E402

from herald.db import create_engine, session_factory  # noqa: E402
from herald.migrate import upgrade_async  # noqa: E402
from herald.models import Assignment, Course, Submission, User  # noqa: E402
from workers.similarity import (  # noqa: E402
    compare_with_earlier,
    fingerprint,
    store_fingerprint,
)


def _vocabulary(rng: random.Random, size: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(size)]


def _text(rng: random.Random, vocabulary: list[str], words: int) -> str:
    return " ".join(rng.choices(vocabulary, k=words))


async def run(submissions: int, words: int, database_url: str | None) -> None:
    rng = random.Random(5)
    vocabulary = _vocabulary(rng, 20_000)

    big = _text(rng, vocabulary, 140_000)
    while len(big.encode()) < 1_000_000:
        big += " " + _text(rng, vocabulary, 1000)
    started = time.perf_counter()
    big_fp = fingerprint(big)
    fingerprint_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as folder:
        url = database_url or f"sqlite+aiosqlite:///{folder}/bench.db"
        await upgrade_async(url)
        engine = create_engine(url)
        sessions = session_factory(engine)
        async with sessions.begin() as db:
            course = Course(code="BENCH", title="Bench")
            db.add(course)
            await db.flush()
            assignment = Assignment(course_id=course.id, title="Essay")
            db.add(assignment)
            await db.flush()
            users = (
                await db.execute(
                    insert(User).returning(User.id),
                    [
                        {"username": f"s{i}", "display_name": f"S{i}", "password_hash": "x"}
                        for i in range(submissions + 1)
                    ],
                )
            ).scalars()
            user_ids = list(users)
            subs = (
                await db.execute(
                    insert(Submission).returning(Submission.id),
                    [
                        {
                            "assignment_id": assignment.id,
                            "student_id": uid,
                            "filename": "essay.txt",
                            "content_type": "text/plain",
                            "size": 1,
                            "sha256": "0" * 64,
                            "upload_path": "/nowhere",
                        }
                        for uid in user_ids
                    ],
                )
            ).scalars()
            sub_ids = list(subs)
            assignment_id = assignment.id
        probe_text = _text(rng, vocabulary, words)
        probe_words = probe_text.split()
        started = time.perf_counter()
        for i, sub_id in enumerate(sub_ids[:-1]):
            text = _text(rng, vocabulary, words)
            if i % 10 == 0:  # a copied passage of 10-60% of the probe
                share = rng.randint(10, 60) * len(probe_words) // 100
                text += " " + " ".join(probe_words[:share])
            await store_fingerprint(sessions, sub_id, assignment_id, fingerprint(text))
        store_all_s = time.perf_counter() - started
        if url.startswith("postgresql"):
            # What autovacuum does soon after a bulk load in production. Without column
            # statistics PostgreSQL reads `hash IN (...)` on the (assignment_id, hash)
            # index by assignment_id alone: a 500-hash batch then took ~100 ms, not ~1 ms.
            async with engine.begin() as conn:
                await conn.execute(sql_text("ANALYZE submission_fingerprints"))

        probe_id, probe_student = sub_ids[-1], user_ids[-1]
        await store_fingerprint(sessions, probe_id, assignment_id, fingerprint(probe_text))
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            report = await compare_with_earlier(sessions, probe_id, assignment_id, probe_student)
            timings.append(time.perf_counter() - started)

        started = time.perf_counter()
        await store_fingerprint(sessions, probe_id, assignment_id, big_fp)
        store_big_s = time.perf_counter() - started
        started = time.perf_counter()
        big_report = await compare_with_earlier(sessions, probe_id, assignment_id, probe_student)
        compare_big_s = time.perf_counter() - started
        await engine.dispose()

    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"# Similarity engine ({backend})\n")
    print("| what | time |\n|---|---|")
    print(
        f"| fingerprint a {len(big.encode()) / 1e6:.2f} MB text "
        f"({big_fp.words:,} words → {len(big_fp):,} fingerprints) | {fingerprint_s * 1000:.0f} ms |"
    )
    print(
        f"| fingerprint + store {submissions:,} submissions of {words:,} words "
        f"| {store_all_s:.1f} s ({store_all_s / submissions * 1000:.1f} ms each) |"
    )
    print(
        f"| compare a {words:,}-word submission ({report.fingerprints} fingerprints) with "
        f"{report.compared:,} stored, best of 3 | {min(timings) * 1000:.0f} ms |"
    )
    print(f"| store the 1 MB text's fingerprints | {store_big_s * 1000:.0f} ms |")
    print(
        f"| compare the 1 MB text with {big_report.compared:,} stored "
        f"| {compare_big_s * 1000:.0f} ms |"
    )
    print(f"\nTop matches of the probe: {[(m.submission_id, m.percent) for m in report.matches]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=1000)
    parser.add_argument("--words", type=int, default=1500)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    asyncio.run(run(args.submissions, args.words, args.database_url))


if __name__ == "__main__":
    main()

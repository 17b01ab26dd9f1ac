"""What one authorization costs router auth, cached and not.

    python bench/authorizer.py [--calls 2000] [--repeats 3] [--database-url URL]

Calls the ``herald.auth.authorize`` procedure object in process, exactly as
Crossbar's call lands in it (minus the WAMP hop), on a migrated database holding
the demo course plus ``--students`` students with one submission each. Per topic
family it times a miss (the decision cache emptied before every call, so each one
reads the DB) and a hit, and a denial (never cached). The baseline, run in the
same process, is the DB floor: opening a session and running ``SELECT 1``.

The report (markdown) goes to stdout: microseconds per call (median of repeats)
and the ratios miss/floor and miss/hit.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == REPO_ROOT / "bench":
    sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from sqlalchemy import select, text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker  # noqa: E402

from herald import names  # noqa: E402
from herald.db import create_engine, session_factory  # noqa: E402
from herald.demo import load_demo_data  # noqa: E402
from herald.logs import configure_logging  # noqa: E402
from herald.migrate import upgrade_async  # noqa: E402
from herald.models import Assignment, Course, CourseRole, Enrolment, Submission, User  # noqa: E402
from herald.settings import Settings  # noqa: E402
from router.authorizer import Authorizer  # noqa: E402

Call = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class World:
    student: int
    other_student: int
    course: int
    assignment: int
    own_submission: int
    other_submission: int


async def build_world(sessions: async_sessionmaker[AsyncSession], students: int) -> World:
    await load_demo_data(sessions, "demo")
    async with sessions.begin() as db:
        course = await db.scalar(select(Course).where(Course.code == "DEMO101"))
        assignment = await db.scalar(select(Assignment).where(Assignment.course_id == course.id))
        users = [
            User(username=f"s{i:05d}", display_name=f"Student {i}", password_hash="x")  # noqa: S106 - never signs in
            for i in range(students)
        ]
        db.add_all(users)
        await db.flush()
        db.add_all(
            Enrolment(user_id=u.id, course_id=course.id, role=CourseRole.STUDENT) for u in users
        )
        submissions = [
            Submission(
                assignment_id=assignment.id,
                student_id=u.id,
                filename="essay.txt",
                content_type="text/plain",
                size=1,
                sha256="0" * 64,
                upload_path="/dev/null",
            )
            for u in users
        ]
        db.add_all(submissions)
        await db.flush()
        return World(
            student=users[0].id,
            other_student=users[1].id,
            course=course.id,
            assignment=assignment.id,
            own_submission=submissions[0].id,
            other_submission=submissions[1].id,
        )


def cases(
    authorizer: Authorizer, sessions: async_sessionmaker[AsyncSession], world: World
) -> dict[str, Call]:
    session = {"session": 1, "authid": str(world.student), "authrole": names.ROLE_BROWSER}
    topics = {
        "user": names.user_topic(world.student),
        "course": names.course_topic(world.course),
        "assignment": names.assignment_topic(world.assignment),
        "submission": names.submission_topic(world.own_submission),
    }

    async def floor() -> object:
        async with sessions() as db:
            return await db.scalar(text("SELECT 1"))

    def miss(topic: str) -> Call:
        async def call() -> object:
            authorizer.cache.clear()
            return await authorizer(session, topic, "subscribe", {})

        return call

    def hit(topic: str) -> Call:
        async def call() -> object:
            return await authorizer(session, topic, "subscribe", {})

        return call

    denied = names.submission_topic(world.other_submission)

    async def deny() -> object:
        return await authorizer(session, denied, "subscribe", {})

    table: dict[str, Call] = {"floor: session + SELECT 1": floor}
    for family, topic in topics.items():
        table[f"{family}: miss"] = miss(topic)
        table[f"{family}: hit"] = hit(topic)
    table["submission of another student: deny"] = deny
    return table


async def time_call(call: Call, calls: int) -> float:
    """Microseconds per call over ``calls`` sequential calls (after one warm-up)."""
    await call()
    started = time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - started) / calls * 1e6


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="herald-bench-authz-") as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'herald.db'}"
        await upgrade_async(url)
        engine = create_engine(url)
        try:
            sessions = session_factory(engine)
            print(f"building a world of {args.students} students…", file=sys.stderr)
            world = await build_world(sessions, args.students)
            authorizer = Authorizer(sessions)
            table = cases(authorizer, sessions, world)
            samples: dict[str, list[float]] = {name: [] for name in table}
            for repeat in range(args.repeats):
                for name, call in table.items():  # interleaved, so drift hits every case
                    samples[name].append(await time_call(call, args.calls))
                print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)
        finally:
            await engine.dispose()
    report(samples, url.split(":", 1)[0], args)


def report(samples: dict[str, list[float]], backend: str, args: argparse.Namespace) -> None:
    median = {name: statistics.median(values) for name, values in samples.items()}
    floor = median["floor: session + SELECT 1"]
    print(f"## Authorizer cost per call ({backend}, {args.calls} calls × {args.repeats} repeats)\n")
    print("| case | µs/call | × DB floor | miss ÷ hit |")
    print("|---|---:|---:|---:|")
    for name, value in median.items():
        speedup = ""
        if name.endswith(": miss"):
            hit = median[name.replace(": miss", ": hit")]
            speedup = f"{value / hit:.0f}×"
        print(f"| {name} | {value:,.1f} | {value / floor:.2f} | {speedup} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--students", type=int, default=500)
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    args = parser.parse_args()
    # The authorizer logs each denial at info; a benchmark's log is noise.
    configure_logging(Settings.from_env({"HERALD_LOG_LEVEL": "warning"}), "bench")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

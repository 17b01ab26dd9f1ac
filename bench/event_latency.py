"""Event latency: a worker's emit → Redis → bridge → Crossbar → a browser-role WAMP
client, beside a raw WAMP publish → subscribe through the same router, same run.

    python bench/event_latency.py [--rates 100,1000] [--seconds 10] [--warmup 2]

Starts, as ``herald up`` does, a private redis-server (AOF on), migrates a SQLite
database in a temporary var/ and loads the demo data, then Crossbar (the rendered
node config), ``herald router-auth`` and ``herald bridge``, each a real process
polled for readiness. Three more processes make the load and take the measure:

- a subscriber (``bench._event_subscriber``): joins as Alice's page does, with a
  WAMP ticket minted the way ``GET /api/wamp/ticket`` mints it, over the browser
  WebSocket transport, and subscribes to her ``user.{id}``;
- per run, an emitter (``bench._event_emitter``), paced open-loop by absolute
  deadlines: ``herald`` mode publishes each event through the worker's
  ``EventPublisher`` (Lua script on Redis, relayed by the bridge); ``raw`` mode, the
  baseline, is a backend WAMP session publishing the same envelope straight to
  Crossbar. Same topic, same payload (a real task state), same subscriber.

Latency is the subscriber's ``time.time_ns()`` on arrival minus the event's *due*
time (its deadline in the schedule), so an emitter that falls behind shows as
latency; the emitter's own lateness is reported beside it. Warm-up events run at
the same rate before each measured run and are not counted. Per run: p50/p90/p99/
max, delivered/sent, the emitter's achieved rate, and each process's CPU (% of one
core, from /proc) with the machine's busy share, so the load others put on the
machine shows. Then the Herald/raw ratios and the issue's bars, pass or fail.

``--profile DIR`` samples Crossbar, the bridge, the emitter and the subscriber with py-spy
(``pip install py-spy``) during the Herald runs and leaves collapsed stacks in DIR.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == REPO_ROOT / "bench":
    sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import secrets  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from importlib.metadata import version  # noqa: E402
from typing import IO, Any  # noqa: E402

from redis.asyncio import Redis  # noqa: E402
from sqlalchemy import select  # noqa: E402

from bench._event_cpu import cpu_usage, snapshot  # noqa: E402
from bench._event_report import Run, report  # noqa: E402
from herald import names  # noqa: E402
from herald.db import create_engine, session_factory  # noqa: E402
from herald.models import User  # noqa: E402
from herald.sessions import SessionStore  # noqa: E402
from herald.settings import Settings  # noqa: E402
from herald.supervisor import Supervisor  # noqa: E402
from tests.support import free_port  # noqa: E402

SUBSCRIBER_USER = "alice"
# A run is drained once every event arrived, or nothing arrived for this long.
DRAIN_QUIET = 3.0
READY_TIMEOUT = 60.0


class LineChild:
    """A benchmark helper process spoken to in JSON lines over stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name

    @classmethod
    async def start(
        cls, name: str, argv: list[str], env: dict[str, str], log: IO[bytes]
    ) -> LineChild:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        return cls(proc, name)

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def receive(self, timeout: float = READY_TIMEOUT) -> dict[str, Any]:  # noqa: ASYNC109 - a deadline per answer
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"{self.name} exited (code {await self.proc.wait()}); see its log")
        return json.loads(line)  # type: ignore[no-any-return]

    async def ask(self, line: str, timeout: float = READY_TIMEOUT) -> dict[str, Any]:  # noqa: ASYNC109
        await self.send(line)
        return await self.receive(timeout)

    async def finish(self) -> None:
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def start_backend(root: Path) -> tuple[Supervisor, Settings, dict[str, str]]:
    """Redis, the migrated demo database, Crossbar, router auth and the bridge, ready."""
    env = {
        **os.environ,
        "HERALD_VAR_DIR": str(root),
        "HERALD_BACKEND_SECRET": secrets.token_urlsafe(32),
        "HERALD_WEB_PORT": str(free_port()),
        "HERALD_ROUTER_PORT": str(free_port()),
        "HERALD_ROUTER_BACKEND_PORT": str(free_port()),
        "HERALD_LOG_FORMAT": "json",
    }
    for name in ("HERALD_REDIS_URL", "HERALD_DATABASE_URL"):
        env.pop(name, None)  # the embedded defaults: a private Redis, SQLite in var/
    settings = Settings.from_env(env)
    env["HERALD_REDIS_URL"] = settings.redis_url
    supervisor = Supervisor(settings, env, log_dir=root / "logs")
    try:
        supervisor.start_private_redis()
        for command in ("migrate", "demo-data"):
            subprocess.run(
                [sys.executable, "-m", "herald", command],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        supervisor.start_router()
        supervisor.start_service("router-auth")
        supervisor.start_service("bridge")
    except BaseException:
        supervisor.stop_all()
        raise
    return supervisor, settings, env


async def mint_ticket(settings: Settings, username: str) -> tuple[int, str]:
    """A web session for ``username`` and a WAMP ticket for it, as the web app issues them."""
    engine = create_engine(settings)
    redis = Redis.from_url(settings.redis_url)
    try:
        async with session_factory(engine)() as db:
            user_id = await db.scalar(select(User.id).where(User.username == username))
        if user_id is None:
            raise RuntimeError(f"no user {username!r}: demo data not loaded")
        store = SessionStore(
            redis, session_ttl=settings.session_ttl_seconds, ticket_ttl=settings.ticket_ttl_seconds
        )
        _token, web_session = await store.create(user_id)
        return user_id, await store.issue_ticket(web_session)
    finally:
        await redis.aclose()
        await engine.dispose()


def start_profilers(
    pids: dict[str, int], folder: Path, label: str
) -> list[subprocess.Popen[bytes]]:
    """py-spy sampling each process (collapsed stacks, ``NAME-LABEL.txt``) until stopped."""
    folder.mkdir(parents=True, exist_ok=True)
    py_spy = Path(sys.executable).parent / "py-spy"
    return [
        subprocess.Popen(
            [
                # --subprocesses: Crossbar routes in a worker process under its node controller.
                str(py_spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "250",
                "--subprocesses",
                "--nonblocking", "--output", str(folder / f"{name}-{label}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]  # fmt: skip


async def stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    # py-spy writes its output when interrupted.
    for proc in profilers:
        proc.send_signal(signal.SIGINT)
    for proc in profilers:
        await asyncio.to_thread(proc.wait, 30)


async def drain(subscriber: LineChild, label: str, expected: int) -> None:
    """Until the subscriber has every measured event of ``label``, or none came for a while."""
    count, last_change = -1, time.monotonic()
    while True:
        now = (await subscriber.ask(f"count {label}"))["count"]
        if now >= expected:
            return
        if now != count:
            count, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > DRAIN_QUIET:
            return
        await asyncio.sleep(0.05)  # polling the subscriber, not posing as work


async def measure(
    mode: str,
    rate: float,
    args: argparse.Namespace,
    topic: str,
    env: dict[str, str],
    subscriber: LineChild,
    pids: dict[str, int],
    root: Path,
) -> Run:
    label = f"{mode}-{rate:g}"
    events = args.events or round(rate * args.seconds)
    warmup = round(rate * args.warmup)
    argv = [
        sys.executable, "-m", "bench._event_emitter",
        "--mode", mode, "--topic", topic, "--rate", str(rate),
        "--events", str(events), "--warmup", str(warmup), "--label", label,
    ]  # fmt: skip
    with (root / "logs" / f"emitter-{label}.log").open("ab") as log:
        emitter = await LineChild.start(f"emitter {label}", argv, env, log)
    try:
        await emitter.receive()  # ready: connected to Redis, or joined to Crossbar
        watched = {**pids, "emitter": emitter.proc.pid}
        profilers = []
        if args.profile is not None and mode == "herald":
            profiled = ("router", "bridge", "emitter", "subscriber")
            profilers = start_profilers({n: watched[n] for n in profiled}, args.profile, label)
        before = snapshot(watched)
        await emitter.send("go")
        result = await emitter.receive(timeout=READY_TIMEOUT + (events + warmup) / rate)
        await drain(subscriber, label, events)
        after = snapshot(watched)
        await stop_profilers(profilers)
        await emitter.send("quit")
    finally:
        await emitter.finish()
    dump = root / f"{label}.json"
    await subscriber.ask(f"dump {label} {dump}")
    received = json.loads(dump.read_text())
    rows = sorted(received["received"])  # by index: seq order must follow it
    seqs = [row[3] for row in rows]
    run = Run(
        mode=mode,
        rate=rate,
        emitter=result,
        from_due_ns=sorted(row[1] for row in rows),
        from_send_ns=sorted(row[2] for row in rows),
        duplicates=received["duplicates"],
        out_of_order=sum(1 for a, b in itertools.pairwise(seqs) if b <= a),
    )
    run.cpu, run.machine_busy = cpu_usage(before, after)
    return run


def describe_machine() -> str:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"Machine: {os.cpu_count()} cores, {platform.platform()}, Python "
        f"{platform.python_version()}, crossbar {version('crossbar')}, autobahn "
        f"{version('autobahn')}, redis-py {version('redis')}; load average at start {load}"
    )


async def run(args: argparse.Namespace, root: Path) -> bool | None:
    machine = describe_machine()
    supervisor, settings, env = await asyncio.to_thread(start_backend, root)
    subscriber: LineChild | None = None
    try:
        user_id, ticket = await mint_ticket(settings, SUBSCRIBER_USER)
        topic = names.user_topic(user_id)
        with (root / "logs" / "subscriber.log").open("ab") as log:
            subscriber = await LineChild.start(
                "subscriber", [sys.executable, "-m", "bench._event_subscriber", "--topic", topic],
                env, log,
            )  # fmt: skip
        await subscriber.send(ticket)
        await subscriber.receive()
        pids = {child.name: child.proc.pid for child in supervisor.children}
        pids["subscriber"] = subscriber.proc.pid
        runs = []
        for rate in args.rates:
            for mode in ("raw", "herald"):
                result = await measure(mode, rate, args, topic, env, subscriber, pids, root)
                runs.append(result)
                print(f"measured {result.label}: {len(result.from_due_ns)} events", flush=True)
        return report(runs, machine)
    finally:
        if subscriber is not None:
            if subscriber.proc.returncode is None:
                await subscriber.send("quit")
            await subscriber.finish()
        await asyncio.to_thread(supervisor.stop_all)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rates",
        type=lambda v: [float(x) for x in v.split(",")],
        default=[100.0, 1000.0],
        help="events/s, comma-separated (default 100,1000)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument(
        "--events", type=int, default=0, help="measured events per run (overrides --seconds)"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each run")
    parser.add_argument(
        "--profile",
        type=Path,
        help="sample Crossbar, the bridge, emitter and subscriber with py-spy in the Herald runs "
        "(collapsed stacks into this folder; pip install py-spy); latencies then include its cost",
    )
    parser.add_argument("--keep", type=Path, help="keep the var/ folder (logs) here")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        ok = asyncio.run(run(args, args.keep.resolve()))
    else:
        with tempfile.TemporaryDirectory(prefix="herald-bench-events-") as folder:
            ok = asyncio.run(run(args, Path(folder)))
    # A missed bar is a finding to report, not a failed command.
    if ok is not None:
        print("\nall bars met" if ok else "\nsome bars missed")


if __name__ == "__main__":
    main()

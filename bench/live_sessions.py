"""How many live browser sessions one router holds, what each costs, and how fast a
broadcast reaches all of them.

    python bench/live_sessions.py [--sessions 10000] [--procs 6] [--rate 40]
        [--broadcasts 3] [--hold 30] [--database-url postgresql+asyncpg://...]
        [--profile FILE] [--router-auth-from CHECKOUT]

Starts, as ``herald up`` does, a private redis-server, a real Crossbar node (the
config herald/crossbar.py renders), ``herald router-auth`` (it authenticates every
ticket and authorises every subscribe) and ``herald bridge``, each its own process,
on a migrated database (a temporary SQLite file, or a fresh PostgreSQL database
created beside ``--database-url`` and dropped afterwards) seeded in bulk with N
students, each enrolled in one course and owning one submission.

Tickets come from :class:`herald.sessions.SessionStore`, the code behind the web's
``/api/wamp/ticket``: one web session and one ticket per student. This skips N HTTP
sign-ins, whose cost is the password hash in the web process, not the router. They
are minted before the joins, so their lifetime is stretched to cover the join phase.

``--procs`` load-client processes (bench/_wamp_load.py) hold N/procs sessions each,
joining at ``--rate`` joins/s overall: a WebSocket with ``wamp.2.json`` and an
allowed Origin, ticket auth, then SUBSCRIBE to ``user.{id}``, ``submission.{id}``
and ``broadcast``, as a page does. Held sessions are counted from both sides: the
clients' WELCOMEs and SUBSCRIBEDs, and ``wamp.session.count`` from a backend session.

Measured: the RSS of Crossbar's router worker (its node controller is a separate
process), of the controller and of router auth, before any session and with all N
held; CPU time of each during the join phase, while holding every session idle for
``--hold`` seconds (the router's WebSocket pings, router auth's sweeps), and during
the broadcasts. Then, ``--broadcasts`` times, one admin broadcast through the real
path (herald.broadcasts.send_broadcast: DB row, Redis, bridge, Crossbar), stamped with
the wall clock just before the call (one machine, one clock), and the time until each
held session had it; baseline in the same run: the same-sized envelope published
straight to the router from a backend WAMP session (raw). The report (markdown) goes
to stdout, progress to stderr.

``--profile FILE`` records router auth with py-spy during the joins (speedscope JSON);
``--router-auth-from DIR`` runs router auth from another checkout (e.g. a worktree
of the commit before a change), to compare its cost per join on the same load.
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
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

from redis.asyncio import Redis  # noqa: E402

from bench._wamp_load_clients import Client, start_clients  # noqa: E402
from bench._wamp_load_procs import ProcSample, crossbar_worker, sample  # noqa: E402
from bench._wamp_load_world import database, mint_tickets, seed  # noqa: E402
from herald import names  # noqa: E402
from herald.broadcasts import Notice, send_broadcast  # noqa: E402
from herald.db import create_engine, session_factory  # noqa: E402
from herald.events import EventPublisher, iso_now  # noqa: E402
from herald.logs import configure_logging  # noqa: E402
from herald.sessions import SessionStore  # noqa: E402
from herald.settings import Settings  # noqa: E402
from herald.supervisor import Supervisor  # noqa: E402
from herald.wamp import BackendLink  # noqa: E402
from tests.conftest import stack_env  # noqa: E402
from tests.support import wait_until  # noqa: E402

BROADCAST_TIMEOUT = 30.0  # a broadcast not everywhere by then is reported as missing
TEXT = "The deadline for Essay 1 is extended by 24 hours."  # a realistic notice's size


# --- measuring -----------------------------------------------------------------------
@dataclass
class Spread:
    label: str
    latencies_ms: list[float]
    expected: int

    def line(self) -> str:
        values = sorted(self.latencies_ms)
        if not values:
            return f"| {self.label} | 0 / {self.expected} | – | – | – |"
        return (
            f"| {self.label} | {len(values):,} / {self.expected:,} | "
            f"{pct(values, 0.5):,.0f} | {pct(values, 0.99):,.0f} | {values[-1]:,.0f} |"
        )


async def collect(clients: list[Client], key: str, sent: float, held: int, label: str) -> Spread:
    replies = await asyncio.gather(
        *(c.ask({"cmd": "collect", "key": key, "timeout": BROADCAST_TIMEOUT}) for c in clients)
    )
    latencies = [(t - sent) * 1000 for reply in replies for t in reply["times"]]
    return Spread(label, latencies, held)


def cpu_line(
    name: str, before: ProcSample, after: ProcSample, seconds: float, per: int, unit: str
) -> str:
    used = after.cpu_seconds - before.cpu_seconds
    return (
        f"| {name} | {used:,.1f} s | {used / seconds * 100:,.0f} % | "
        f"{used / max(per, 1) * 1000:,.2f} ms per {unit} |"
    )


async def run(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="herald-bench-live-"))
    redis_url = f"unix://{root / 'redis' / 'redis.sock'}"
    report: list[str] = []
    try:
        async with database(args.database_url, root) as db_url:
            env = stack_env(root, redis_url, db_url)
            settings = Settings.from_env(env)
            supervisor = Supervisor(settings, {**os.environ, **env}, log_dir=root / "logs")
            try:
                await measure(args, root, settings, supervisor, report)
            finally:
                supervisor.stop_all()
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("\n".join(report))


async def measure(
    args: argparse.Namespace,
    root: Path,
    settings: Settings,
    supervisor: Supervisor,
    report: list[str],
) -> None:
    n = args.sessions
    supervisor.start_private_redis()
    engine = create_engine(settings)
    redis = Redis.from_url(settings.redis_url)
    stop = asyncio.Event()
    link_task: asyncio.Task[None] | None = None
    clients: list[Client] = []
    readers: list[asyncio.Task[None]] = []
    try:
        sessions = session_factory(engine)
        t0 = time.perf_counter()
        people = await seed(sessions, n)
        note(f"seeded {n} students in {time.perf_counter() - t0:.1f} s")
        router = supervisor.start_router()
        if args.router_auth_from:
            # Another checkout's router auth (e.g. before a change), everything else this one's.
            auth = supervisor.spawn(
                "router-auth",
                [sys.executable, "-m", "herald", "router-auth"],
                env={"PYTHONPATH": str(Path(args.router_auth_from).resolve())},
            )
            supervisor.wait_ready(auth, supervisor.health_check("router-auth", auth))
        else:
            auth = supervisor.start_service("router-auth")
        bridge = supervisor.start_service("bridge")
        wait_until(
            lambda: crossbar_worker(router.proc.pid) is not None,
            timeout=30,
            what="crossbar router worker",
        )
        worker_pid = crossbar_worker(router.proc.pid)
        assert worker_pid is not None
        pids = {
            "router worker": worker_pid,
            "node controller": router.proc.pid,
            "router-auth": auth.proc.pid,
            "bridge": bridge.proc.pid,
        }

        joined = asyncio.get_running_loop().create_future()

        async def on_join(session: Any) -> None:
            if not joined.done():
                joined.set_result(session)

        link = BackendLink(settings, name="bench", on_join=on_join)
        link_task = asyncio.create_task(link.run(stop))
        backend = await asyncio.wait_for(joined, 30)

        join_seconds_estimate = n / args.rate
        store = SessionStore(
            redis,
            session_ttl=settings.session_ttl_seconds,
            # Minted ahead of the joins: alive until the last one joins (docstring).
            ticket_ttl=max(settings.ticket_ttl_seconds, int(join_seconds_estimate * 2) + 120),
        )
        t0 = time.perf_counter()
        specs = await mint_tickets(store, people)
        note(f"minted {n} tickets in {time.perf_counter() - t0:.1f} s")

        idle = {name: sample(pid) for name, pid in pids.items()}
        profiler = None
        if args.profile:
            profiler = await asyncio.create_subprocess_exec(
                shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(auth.proc.pid),
                "--format",
                "speedscope",
                "--output",
                args.profile,
                # Sampling without pausing router auth: pausing it 200 times a second
                # slowed joins until the DB pool timed out (30 s) and joins failed.
                "--nonblocking",
                "--rate",
                "50",
                stdout=asyncio.subprocess.DEVNULL,
            )
        join_started = time.time()
        url = f"ws://127.0.0.1:{settings.router_port}/ws"
        clients = await start_clients(
            root, specs, args.procs, args.rate, url, settings.allowed_origins[0]
        )
        readers = [asyncio.create_task(c.read()) for c in clients]
        last_note = 0.0
        while not all(c.joined for c in clients):
            if any(c.proc.returncode is not None for c in clients):
                raise RuntimeError("a load client exited during the joins")
            await asyncio.sleep(0.2)
            if time.time() - last_note > 5:
                held = sum(c.last.get("held", 0) for c in clients)
                failed = sum(sum(c.last.get("failures", {}).values()) for c in clients)
                note(f"joining: {held} held, {failed} failed")
                last_note = time.time()
        join_ended = time.time()
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            await asyncio.wait_for(profiler.wait(), 30)
        joined_at = {name: sample(pid) for name, pid in pids.items()}
        join_seconds = join_ended - join_started

        welcomed = sum(c.joined["welcomed"] for c in clients if c.joined)
        subscribed = sum(c.joined["subscribed"] for c in clients if c.joined)
        failures: Counter[str] = Counter()
        for c in clients:
            failures.update(c.joined["failures"] if c.joined else {})
        firsts = [c.joined["first_join"] for c in clients if c.joined and c.joined["first_join"]]
        lasts = [c.joined["last_join"] for c in clients if c.joined and c.joined["last_join"]]
        join_ms = sorted(t * 1000 for c in clients if c.joined for t in c.joined["join_seconds"])
        stats = [await c.ask({"cmd": "stats"}) for c in clients]
        held = sum(s["held"] for s in stats)
        router_count = await backend.call("wamp.session.count", [names.ROLE_BROWSER])
        rate = (
            welcomed / (max(lasts) - min(firsts)) if len(lasts) and max(lasts) > min(firsts) else 0
        )

        # --- holding: what N idle sessions cost (pings, router auth's sweeps) ---------
        hold_from = {name: sample(pid) for name, pid in pids.items()}
        hold_started = time.time()
        await asyncio.sleep(args.hold)  # the measurement window itself: nothing to wait for
        hold_seconds = time.time() - hold_started
        hold_to = {name: sample(pid) for name, pid in pids.items()}

        # --- broadcasts -------------------------------------------------------------
        publisher = EventPublisher(redis)
        spreads: list[Spread] = []
        before_broadcasts = {name: sample(pid) for name, pid in pids.items()}
        broadcast_started = time.time()
        for round_ in range(args.broadcasts):
            key = f"raw:{round_}"
            sent = time.time()
            backend.publish(
                names.BROADCAST,
                {
                    "topic": names.BROADCAST,
                    "type": "broadcast",
                    "seq": 0,
                    "ts": iso_now(),
                    "data": {"key": key, "text": TEXT, "kind": "broadcast"},
                },
            )
            spreads.append(await collect(clients, key, sent, held, f"raw publish #{round_ + 1}"))
            sent = time.time()
            payload = await send_broadcast(sessions, publisher, Notice(text=TEXT), sender_id=None)
            spreads.append(
                await collect(clients, payload["key"], sent, held, f"admin broadcast #{round_ + 1}")
            )
        broadcast_seconds = time.time() - broadcast_started
        after = {name: sample(pid) for name, pid in pids.items()}
        final = [await c.ask({"cmd": "stats"}) for c in clients]
        lost: Counter[str] = Counter()
        for s in final:
            lost.update(s["closed"])

        # --- the report ---------------------------------------------------------------
        worker_delta = joined_at["router worker"].rss_kb - idle["router worker"].rss_kb
        report += [
            f"## Live sessions: {n:,} on one router ({args.procs} load processes, "
            f"{args.rate:g} joins/s asked, {settings.database_url.split(':', 1)[0]})",
            "",
            f"- held: **{held:,}** sessions (clients: {welcomed:,} WELCOMEs, "
            f"{subscribed:,} SUBSCRIBEDs; router: wamp.session.count = {router_count:,})",
            f"- join rate achieved: {rate:,.0f} joins/s; join phase {join_seconds:,.1f} s",
            f"- join time (connect to third SUBSCRIBED): p50 {pct(join_ms, 0.5):,.0f} ms, "
            f"p99 {pct(join_ms, 0.99):,.0f} ms, max {pct(join_ms, 1.0):,.0f} ms",
            f"- failures: {sum(failures.values())}"
            + "".join(f"\n  - {count} × {reason}" for reason, count in failures.most_common()),
            f"- held sessions lost later: {sum(lost.values())}"
            + "".join(f"\n  - {count} × {reason}" for reason, count in lost.most_common()),
            f"- router worker fds: {after['router worker'].fds:,}",
            "",
            "| process | RSS idle | RSS with all held | change | per session |",
            "|---|---:|---:|---:|---:|",
        ]
        for name in pids:
            delta = joined_at[name].rss_kb - idle[name].rss_kb
            report.append(
                f"| {name} | {idle[name].rss_kb / 1024:,.1f} MB | "
                f"{joined_at[name].rss_kb / 1024:,.1f} MB | {delta / 1024:+,.1f} MB | "
                f"{delta / max(held, 1):,.1f} KB |"
            )
        report += [
            "",
            f"Router worker: **{worker_delta / max(held, 1):,.1f} KB per session**.",
            "",
            f"CPU during the join phase ({join_seconds:,.1f} s):",
            "",
            "| process | CPU | of one core | cost |",
            "|---|---:|---:|---:|",
            *(
                cpu_line(name, idle[name], joined_at[name], join_seconds, welcomed, "join")
                for name in pids
            ),
            "",
            f"CPU while holding them idle for {hold_seconds:,.0f} s (the router's WebSocket "
            "pings, router auth's sweeps every 15 s):",
            "",
            "| process | CPU | of one core | cost |",
            "|---|---:|---:|---:|",
            *(
                cpu_line(
                    name,
                    hold_from[name],
                    hold_to[name],
                    hold_seconds,
                    held,
                    f"session in {hold_seconds:,.0f} s",
                )
                for name in pids
            ),
            "",
            f"CPU during the broadcasts ({broadcast_seconds:,.1f} s, both kinds, "
            f"{args.broadcasts} rounds):",
            "",
            "| process | CPU | of one core | cost |",
            "|---|---:|---:|---:|",
            *(
                cpu_line(
                    name,
                    before_broadcasts[name],
                    after[name],
                    broadcast_seconds,
                    held * len(spreads),
                    "delivery",
                )
                for name in pids
            ),
            "",
            "Broadcast to every held session, ms from send to arrival:",
            "",
            "| broadcast | reached | p50 | p99 | max (the last) |",
            "|---|---:|---:|---:|---:|",
            *(s.line() for s in spreads),
        ]
        raw_last = [
            max(s.latencies_ms) for s in spreads if s.label.startswith("raw") and s.latencies_ms
        ]
        real_last = [
            max(s.latencies_ms) for s in spreads if s.label.startswith("admin") and s.latencies_ms
        ]
        if raw_last and real_last:
            report += [
                "",
                f"Last arrival, median over rounds: admin broadcast "
                f"{statistics.median(real_last):,.0f} ms, raw publish "
                f"{statistics.median(raw_last):,.0f} ms "
                f"(ratio {statistics.median(real_last) / statistics.median(raw_last):.2f}×).",
            ]
    finally:
        for c in clients:
            if c.proc.returncode is None and c.proc.stdin is not None:
                c.proc.stdin.write(b'{"cmd": "quit"}\n')
        for c in clients:
            try:
                await asyncio.wait_for(c.proc.wait(), 30)
            except TimeoutError:
                c.proc.kill()
                await c.proc.wait()
        for task in readers:
            task.cancel()
        stop.set()
        if link_task is not None:
            await asyncio.gather(link_task, return_exceptions=True)
        await redis.aclose()
        await engine.dispose()


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of sorted ``values`` (nearest rank); 0 when empty."""
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(len(values) * q))]


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--procs", type=int, default=6, help="load-client processes")
    # Below what router auth and the router sustain on 2 shared cores (~6.5 ms of CPU each
    # per join): asked for more, joins queue until they time out.
    parser.add_argument("--rate", type=float, default=40.0, help="joins per second, overall")
    parser.add_argument("--broadcasts", type=int, default=3, help="rounds of raw + admin")
    parser.add_argument(
        "--hold", type=float, default=30.0, help="seconds of idle holding to measure"
    )
    parser.add_argument("--database-url", help="a PostgreSQL server URL; default: SQLite")
    parser.add_argument("--profile", help="py-spy speedscope file of router auth's joins")
    parser.add_argument("--keep", action="store_true", help="keep the logs and node dir")
    parser.add_argument(
        "--router-auth-from", help="run router auth from this checkout, to compare a change"
    )
    args = parser.parse_args()
    configure_logging(Settings.from_env({"HERALD_LOG_LEVEL": "warning"}), "bench")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

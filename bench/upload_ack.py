"""Upload acknowledgement under a deadline burst: the 202 beside the pipeline run inline.

    python bench/upload_ack.py [--rounds 10] [--concurrency 50] [--inline-rounds 3]
                               [--plagiarism-delay 5] [--db sqlite|postgres]
                               [--workers 0] [--worker-concurrency 16] [--profile DIR]

Starts the stack for real (bench/_spike_stack.py: private redis-server, migrated
database with the demo data and seeded students, clamd with a local EICAR
database, the web process and worker processes as their own OS processes) and
the outside world (bench/_spike_world.py: plagiarism service, admin system, SMTP).
``--concurrency`` students (one account each, so nothing is shared per user) sign
in over HTTP. Each round, every one of them uploads a distinct ~1.05 MB PDF at the
same moment. Sign-in is the only rate-limited path (failed attempts per username
and address, web/ratelimit.py); sign-ins run 8 at a time, well under the address
limit, and uploads are not rate limited.

Measured per request: the server's time (``Server-Timing``, set by the bench web
process's outermost middleware: headers parsed → response ready, the 1 MB body
streamed in between) and the client's (send → whole response read).

1. **202, the product's path** (``POST /api/assignments/{id}/submissions``): one
   warm-up round (not counted), then ``--rounds`` rounds. By default no worker runs
   (the uploads stay queued), so both paths are measured on the same quiet stack;
   ``--workers N`` starts N worker processes draining during the rounds, as during a
   real deadline, and the inline rounds then wait for the drain.
2. **Inline, the old way** (``POST /bench/inline/{id}``, bench/_spike_web.py): the
   same upload, then the step handlers the workers run (scan with clamd, store,
   record, built-in similarity) in the request.
3. **Inline with the plagiarism service**: 2 plus the external check (the same
   handler, posting to the local service and polling it every 2 s; the service
   takes ``--plagiarism-delay`` s per check, standing for the real ~30 s).

Bars (issue 8): p99 of the 202's server time ≤ 50 ms, and ≥ 50× faster than inline
(compared with 2, which has no external wait; 3's ratio is printed too).
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
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench._spike_client import Student, Upload, essay_pdf, sign_in, wait_drained  # noqa: E402
from bench._spike_stack import percentile, start_stack  # noqa: E402
from bench._spike_world import outside_world  # noqa: E402
from herald.logs import configure_logging  # noqa: E402
from herald.settings import Settings  # noqa: E402

ACK_P99_BAR_MS = 50.0
SPEEDUP_BAR = 50.0
REFUSED: list[Upload] = []  # every non-2xx answer, reported (never timed)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def burst(students: list[Student], path: str, pdf: bytes, tag: str) -> list[Upload]:
    """Every student uploads a distinct copy of ``pdf`` at the same moment."""
    uploads = await asyncio.gather(
        *(s.upload(path, pdf + f"%{tag}-{i}\n".encode()) for i, s in enumerate(students))
    )
    refused = [u for u in uploads if u.status not in (201, 202)]
    REFUSED.extend(refused)
    if refused:
        log(f"{len(refused)} of {len(uploads)} answered {refused[0].status}: {refused[0].body}")
    return [u for u in uploads if u.status in (201, 202)]


def row(name: str, uploads: list[Upload], field: str) -> tuple[float, float]:
    values = [getattr(u, field) for u in uploads]
    return statistics.median(values), percentile(values, 0.99)


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(8)
    with tempfile.TemporaryDirectory(prefix="herald-bench-ack-") as tmp:
        root = Path(tmp)
        async with (
            outside_world(args.plagiarism_delay) as world,
            start_stack(root, args.db, args.concurrency, world.env()) as stack,
        ):
            stack.start_web()
            if args.workers:
                stack.start_workers(args.workers, args.worker_concurrency)
            await stack.wait_web()
            log(f"stack up in {root}; signing in {args.concurrency} students…")
            students = await sign_in(stack, stack.students)
            pdf = essay_pdf(rng)
            log(f"document: {len(pdf) / 1e6:.2f} MB PDF")
            api = f"/api/assignments/{stack.assignment_id}/submissions"
            submitted = len(await burst(students, api, pdf, "warm"))
            acks: list[Upload] = []
            profilers = stack.profile([stack.web], "profile-web") if args.profile else []
            began = time.monotonic()
            for round_ in range(args.rounds):
                acks += await burst(students, api, pdf, f"ack{round_}")
                submitted += args.concurrency
                log(f"202 round {round_ + 1}/{args.rounds}")
            burst_seconds = time.monotonic() - began
            if profilers:
                stack.stop_profilers(profilers)
                keep_profiles(root, args.profile)
            drain_after = None
            if args.workers:
                log("waiting for the workers to finish the queued submissions…")
                drained_at = await wait_drained(stack, submitted)
                drain_after = drained_at - began - burst_seconds
            inline: list[Upload] = []
            inline_service: list[Upload] = []
            for round_ in range(args.inline_rounds):
                inline += await burst(
                    students, f"/bench/inline/{stack.assignment_id}", pdf, f"in{round_}"
                )
                log(f"inline round {round_ + 1}/{args.inline_rounds}")
            for round_ in range(args.inline_rounds):
                inline_service += await burst(
                    students, f"/bench/inline/{stack.assignment_id}?service=1", pdf, f"sv{round_}"
                )
                log(f"inline + service round {round_ + 1}/{args.inline_rounds}")
            for student in students:
                await student.close()
            if REFUSED:
                kept = Path(tempfile.mkdtemp(prefix="herald-ack-logs-"))
                for found in root.glob("*.log"):
                    shutil.copy(found, kept / found.name)
                log(f"{len(REFUSED)} requests refused; the processes' logs are in {kept}")
    report(args, len(pdf), acks, inline, inline_service, burst_seconds, drain_after)


def keep_profiles(root: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for found in root.glob("profile-*.txt"):
        shutil.copy(found, folder / found.name)
    log(f"profiles in {folder}: python -m bench._spike_profile {folder}/*.txt")


def _rest_ms(upload: Upload) -> float:
    named = sum(ms for name, ms in upload.phases.items() if name != "after_body")
    return upload.server_ms - named


def _steps(uploads: list[Upload]) -> str:
    names = list(uploads[0].body["steps"])  # type: ignore[arg-type]
    return ", ".join(
        f"{name} {statistics.median(u.body['steps'][name] for u in uploads) * 1000:.0f} ms"  # type: ignore[index]
        for name in names
    )


def report(
    args: argparse.Namespace,
    size: int,
    acks: list[Upload],
    inline: list[Upload],
    inline_service: list[Upload],
    burst_seconds: float,
    drain_after: float | None,
) -> None:
    n = args.concurrency
    print(
        f"## Upload acknowledgement: {args.rounds} rounds of {n} concurrent "
        f"{size / 1e6:.2f} MB PDF uploads ({args.db}, {args.workers} worker process(es) "
        f"× {args.worker_concurrency}, {os.cpu_count()} cores)\n"
    )
    print(
        "| path | requests | server p50 ms | server p99 ms | client p50 ms | client p99 ms "
        "| after-body p50 ms | after-body p99 ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = {}
    for name, uploads in (
        ("202 (queued for the workers)", acks),
        ("inline: scan, store, record, similarity", inline),
        (f"inline + plagiarism service ({args.plagiarism_delay:g} s)", inline_service),
    ):
        if not uploads:
            continue
        server = row(name, uploads, "server_ms")
        client = row(name, uploads, "client_ms")
        rows[name] = (server, client)
        after = [u.phases.get("after_body", float("nan")) for u in uploads]
        print(
            f"| {name} | {len(uploads)} | {server[0]:.1f} | {server[1]:.1f} "
            f"| {client[0]:.1f} | {client[1]:.1f} "
            f"| {statistics.median(after):.1f} | {percentile(after, 0.99):.1f} |"
        )
    print()
    if inline:
        print(f"Inline step medians: {_steps(inline)}.")
    if inline_service:
        print(f"Inline + service step medians: {_steps(inline_service)}.")
    phases = sorted({name for upload in acks for name in upload.phases} - {"after_body"})
    print(
        "202 server time by part (median ms): "
        + ", ".join(
            f"{name} {statistics.median(u.phases.get(name, 0.0) for u in acks):.1f}"
            for name in phases
        )
        + ", the DB transaction and the rest "
        + f"{statistics.median(_rest_ms(u) for u in acks):.1f}."
    )
    if drain_after is None:
        print(
            f"The {len(acks)} acknowledged uploads were sent in {burst_seconds:.1f} s (no workers)."
        )
    else:
        print(
            f"The {len(acks)} acknowledged uploads were sent in {burst_seconds:.1f} s; the "
            f"workers finished them {drain_after:.1f} s after the last 202."
        )
    ack_server = rows["202 (queued for the workers)"][0]
    print()
    print("| inline ÷ 202 (server time) | p50 | p99 |")
    print("|---|---:|---:|")
    for name, (server, _client) in rows.items():
        if name.startswith("inline"):
            print(
                f"| {name} | {server[0] / ack_server[0]:.0f}× | {server[1] / ack_server[1]:.0f}× |"
            )
    print()
    p99_ok = ack_server[1] <= ACK_P99_BAR_MS
    print(
        f"- 202 server p99 {ack_server[1]:.1f} ms ≤ {ACK_P99_BAR_MS:.0f} ms: "
        f"{'PASS' if p99_ok else 'FAIL'}"
    )
    if inline:
        local = rows["inline: scan, store, record, similarity"][0]
        ratio = min(local[0] / ack_server[0], local[1] / ack_server[1])
        print(
            f"- ≥ {SPEEDUP_BAR:.0f}× faster than inline without the external wait "
            f"(the smaller of the p50 and p99 ratios, {ratio:.0f}×): "
            f"{'PASS' if ratio >= SPEEDUP_BAR else 'FAIL'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--inline-rounds", type=int, default=3)
    parser.add_argument("--plagiarism-delay", type=float, default=5.0)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="worker processes draining the queue during the 202 rounds (0: none, the "
        "uploads stay queued; then the inline rounds wait for the drain)",
    )
    parser.add_argument("--worker-concurrency", type=int, default=16)
    parser.add_argument(
        "--profile", type=Path, help="py-spy the web process during the 202 rounds into this folder"
    )
    args = parser.parse_args()
    configure_logging(Settings.from_env({"HERALD_LOG_LEVEL": "warning"}), "bench")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

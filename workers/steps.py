"""The submission pipeline's step handlers; each does real work on the real file.

A handler reads the submission, reports progress through its context and
returns a :class:`StepOutcome`; the runner writes the outcome, the task's end
and the next step's start in one transaction. Handlers are idempotent: a step
re-run after a crash finds its earlier output and reuses it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

from herald.durable import write_atomically
from herald.models import Submission
from workers.clamd import ClamdScanner, StreamTooLarge
from workers.scanner import SCANNER_NAME, ScanVerdict, SignatureScanner, load_deny_list
from workers.step_context import StepContext, StepFailed, StepOutcome
from workers.textract import UNREADABLE, extract_text, text_stats

__all__ = ["Handler", "StepFailed", "StepOutcome", "current_path", "record", "scan", "store"]

CHUNK = 256 * 1024


Handler = Callable[[StepContext, Submission], Awaitable[StepOutcome]]


def _size_text(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def current_path(submission: Submission) -> Path:
    """Where the file is now: the store once stored, else the upload area."""
    if submission.stored_path and Path(submission.stored_path).exists():
        return Path(submission.stored_path)
    path = Path(submission.upload_path)
    if not path.exists():
        raise StepFailed("the uploaded file is missing from the file store")
    return path


async def _read_chunks(
    ctx: StepContext, path: Path, each: Callable[[bytes], None], verb: str, share: float = 100
) -> None:
    """Stream a file through ``each`` off the event loop, reporting progress up to ``share``%."""
    total = path.stat().st_size
    done = 0
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            each(chunk)
            done += len(chunk)
            await ctx.progress(done * share / max(total, 1), f"{verb} {_size_text(done)}")


def _check_intact(submission: Submission, path: Path, sha256: str) -> None:
    if sha256 != submission.sha256 or path.stat().st_size != submission.size:
        raise StepFailed("the stored upload does not match what was received (checksum mismatch)")


async def scan(ctx: StepContext, submission: Submission) -> StepOutcome:
    """Scan for malware; an infected file is quarantined and the submission rejected.

    clamd when ``HERALD_CLAMD_URL`` is set, else the built-in signature scanner,
    named as the limited scanner it is. The upload is re-hashed on the way, so a
    file damaged at rest is caught before anything trusts it.
    """
    path = current_path(submission)
    digest = hashlib.sha256()
    if ctx.settings.clamd_url:
        await _read_chunks(ctx, path, digest.update, "checked", share=30)
        _check_intact(submission, path, digest.hexdigest())
        clamd = ClamdScanner(ctx.settings.clamd_url)

        async def sent(done: int) -> None:
            share = done * 70 / max(submission.size, 1)
            await ctx.progress(30 + share, f"scanned {_size_text(done)}")

        try:
            verdict = await clamd.scan(path, sent)
        except StreamTooLarge as exc:
            raise StepFailed(f"the file is larger than the virus scanner accepts ({exc})") from exc
        scanner_name = clamd.name
    else:
        builtin = SignatureScanner(load_deny_list(ctx.settings.var_dir / "scan-denylist.txt"))

        def feed(chunk: bytes) -> None:
            digest.update(chunk)
            builtin.feed(chunk)

        await _read_chunks(ctx, path, feed, "scanned")
        _check_intact(submission, path, digest.hexdigest())
        verdict = builtin.verdict(submission.sha256)
        if verdict.infected:  # clamd's reasons name it already; name the limited one too
            verdict = ScanVerdict(True, f"{verdict.reason} ({SCANNER_NAME})")
        scanner_name = SCANNER_NAME
    if not verdict.infected:
        return StepOutcome(
            detail=f"Clean: {verdict.reason}",
            result={"scanner": scanner_name, "sha256": submission.sha256},
        )
    quarantine = ctx.settings.files_dir / "quarantine"
    quarantine.mkdir(parents=True, exist_ok=True)
    target = quarantine / f"{submission.id}-{submission.sha256}"
    await asyncio.to_thread(os.replace, path, target)
    reason = (
        f"Rejected: the file {verdict.reason}. It has been quarantined "
        "and not stored. Please upload a clean copy."
    )
    return StepOutcome(
        detail=f"Infected: {verdict.reason}",
        result={"scanner": scanner_name, "infected": True},
        submission_updates={"upload_path": str(target), "status_detail": reason},
        reject=reason,
    )


async def store(ctx: StepContext, submission: Submission) -> StepOutcome:
    """Content-addressed storage: one copy per distinct file, written atomically."""
    digest = submission.sha256
    target = ctx.settings.files_dir / "objects" / digest[:2] / digest[2:4] / digest
    target.parent.mkdir(parents=True, exist_ok=True)
    upload = Path(submission.upload_path)
    duplicate = target.exists()
    if not duplicate:
        await ctx.progress(10, "writing to the file store")
        with current_path(submission).open("rb") as source:
            await asyncio.to_thread(
                write_atomically, target, lambda out: shutil.copyfileobj(source, out, CHUNK)
            )
    if upload.exists() and upload != target:
        upload.unlink()
    detail = "Stored (identical file already in the store)" if duplicate else "Stored"
    return StepOutcome(
        detail=detail,
        result={"path": str(target), "deduplicated": duplicate},
        submission_updates={"stored_path": str(target)},
    )


async def record(ctx: StepContext, submission: Submission) -> StepOutcome:
    """The submission's final record: type, size, hash, and its text's words and pages."""
    path = current_path(submission)
    await ctx.progress(10, "extracting text")
    try:
        text, pages = await asyncio.to_thread(extract_text, path, submission.content_type)
    except UNREADABLE as exc:
        raise StepFailed(f"could not read the document: {exc}") from exc
    await ctx.progress(60, "counting words")
    stats = await asyncio.to_thread(text_stats, text, pages)
    if submission.content_type.startswith("image/"):
        detail = "Image: no text to read"
    else:
        detail = f"{stats.words:,} words"
        if stats.pages is not None:
            detail += f", {stats.pages} page{'s' if stats.pages != 1 else ''}"
    return StepOutcome(
        detail=detail,
        result={
            "content_type": submission.content_type,
            "size": submission.size,
            "sha256": submission.sha256,
            "words": stats.words,
            "lines": stats.lines,
            "pages": stats.pages,
        },
        submission_updates={"word_count": stats.words},
    )

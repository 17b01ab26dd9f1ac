"""Task outputs: the files reports, exports and imports make for their owner to
download, how long they are kept, and the ``outputs.purge`` kind that deletes them.

A handler writes its file with :func:`new_output_path` (inside
``var/outputs/{task id}/``, ideally through :func:`writing` so a crash never leaves
half a file) and returns ``Outcome(output=path)``. When the run is settled done the
engine records it on the task: ``Task.output_path`` holds the file's name and
``Task.result["output"]`` its ``filename``, ``size`` and ``content_type``.

Outputs are kept ``settings.output_retention_days`` after the task finished.
``outputs.purge`` (run daily by the scheduler) then deletes the file and marks the
task: ``output_path`` becomes NULL and ``result["output"]`` gains ``purged_at`` and
``retention_days``, so a page says "deleted on … after N days" instead of showing a
broken link. The web and the workers must see the same ``var/outputs`` folder.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import re
import secrets
import shutil
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Final

from sqlalchemy import select

from herald.events import iso
from herald.logs import get_logger
from herald.models import TASK_TERMINAL, Task, utcnow
from herald.settings import Settings
from workers.catalog import CATALOG, IMPORTS_FOLDER, PURGE_OUTPUTS
from workers.completion import COMPLETION_HOOKS
from workers.context import TaskContext
from workers.kinds import Outcome, TaskKind, register

__all__ = [
    "OUTPUTS_FOLDER",
    "attach_output",
    "content_type_for",
    "new_output_path",
    "output_dir",
    "output_file",
    "output_info",
    "output_url",
    "purge_outputs",
    "safe_filename",
    "writing",
]

log = get_logger(__name__)

OUTPUTS_FOLDER: Final = "outputs"
MAX_FILENAME: Final = 100
# Tasks marked purged per transaction (then their folders are deleted).
PURGE_BATCH: Final = 100
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")
_CONTENT_TYPES: Final = {
    ".csv": "text/csv; charset=utf-8",
    ".pdf": "application/pdf",
    ".zip": "application/zip",
}


def output_dir(settings: Settings, task_id: int) -> Path:
    """The folder of one task's outputs."""
    return settings.var_dir / OUTPUTS_FOLDER / str(task_id)


def output_url(task_id: int) -> str:
    """Where the owner downloads a task's output (served by the web's task routes)."""
    return f"/api/tasks/{task_id}/output"


def safe_filename(name: str) -> str:
    """``name`` as a plain file name: ASCII letters, digits, ``.``, ``_`` and ``-``
    (accents folded, anything else a dash), no leading dot, at most 100 characters."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE.sub("-", folded.replace("/", "-").replace("\\", "-")).strip(".-_")
    if len(cleaned) > MAX_FILENAME:
        stem, dot, suffix = cleaned.rpartition(".")
        if dot and stem and len(suffix) <= 8:
            cleaned = stem[: MAX_FILENAME - len(suffix) - 1].rstrip(".-_") + "." + suffix
        else:
            cleaned = cleaned[:MAX_FILENAME]
    return cleaned or "output"


def new_output_path(ctx: TaskContext, filename: str) -> Path:
    """A path for the task's output file named like ``filename`` (made safe), in the
    task's own folder, which is created. A re-run gets the same path."""
    folder = output_dir(ctx.settings, ctx.run.id)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / safe_filename(filename)


@contextmanager
def writing(path: Path) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` only once the block ends without error
    (written beside it, fsynced, renamed over it); on error nothing is left."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    handle = temp.open("xb")
    try:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(temp, path)
    except BaseException:
        handle.close()
        temp.unlink(missing_ok=True)
        raise


def content_type_for(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    if suffix in _CONTENT_TYPES:
        return _CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or "application/octet-stream"


def attach_output(settings: Settings, task_id: int, outcome: Outcome) -> Outcome:
    """``outcome`` with its output checked and described in ``result["output"]``
    (the engine calls this when a handler returns; the settle stores it).

    The file must be in the task's own folder and exist: the download route serves
    nothing else. Raises ValueError or OSError (a handler bug, retried) otherwise.
    """
    if outcome.output is None:
        return outcome
    path = Path(outcome.output)
    if path.parent.resolve() != output_dir(settings, task_id).resolve():
        raise ValueError(f"task {task_id}'s output {path} is not in its outputs folder")
    size = path.stat().st_size  # FileNotFoundError if the handler did not write it
    record = {"filename": path.name, "size": size, "content_type": content_type_for(path.name)}
    return replace(outcome, result={**(outcome.result or {}), "output": record})


def _record(task: Task) -> dict[str, Any] | None:
    output = (task.result or {}).get("output")
    return output if isinstance(output, dict) else None


def output_file(settings: Settings, task: Task) -> Path | None:
    """The file to serve for ``task``'s output, or ``None`` (never had one, purged,
    or gone from disk). Always inside the task's own outputs folder."""
    if task.output_path is None:
        return None
    path = output_dir(settings, task.id) / Path(task.output_path).name
    return path if path.is_file() else None


def output_info(settings: Settings, task: Task) -> dict[str, Any] | None:
    """What pages and the API say about ``task``'s output; ``None`` if it never had one.

    ``{"filename", "size", "content_type", "url", "available", "purged_at",
    "expires_at", "retention_days"}``: ``available`` is whether the file can be
    downloaded now; a purged output has ``purged_at`` (ISO) and the
    ``retention_days`` it was kept.
    """
    record = _record(task)
    if task.output_path is None and (record is None or not record.get("purged_at")):
        return None
    record = record or {}
    filename = str(record.get("filename") or Path(task.output_path or "output").name)
    purged_at = record.get("purged_at")
    days = int(record.get("retention_days") or settings.output_retention_days)
    finished = task.finished_at or task.created_at
    return {
        "filename": filename,
        "size": record.get("size"),
        "content_type": str(record.get("content_type") or content_type_for(filename)),
        "url": output_url(task.id),
        "available": purged_at is None and output_file(settings, task) is not None,
        "purged_at": purged_at,
        "expires_at": iso(finished + timedelta(days=days)) if finished else None,
        "retention_days": days,
    }


async def _mark_purged(ctx: TaskContext, ids: list[int], now: datetime) -> list[int]:
    """Mark a batch purged in one transaction; the ids it marked."""
    days = ctx.settings.output_retention_days
    marked = []
    async with ctx.sessions.begin() as db:
        tasks = await db.scalars(
            select(Task).where(Task.id.in_(ids), Task.output_path.is_not(None)).with_for_update()
        )
        for task in tasks:
            record = dict(_record(task) or {})
            record.setdefault("filename", Path(task.output_path or "output").name)
            record.update(purged_at=iso(now), retention_days=days)
            task.result = {**(task.result or {}), "output": record}
            task.output_path = None
            marked.append(task.id)
    return marked


def _old_entries(settings: Settings, cutoff: datetime) -> tuple[dict[int, Path], list[Path]]:
    """Task folders in var/outputs and import uploads last changed before ``cutoff``."""
    limit = cutoff.timestamp()
    folders: dict[int, Path] = {}
    uploads: list[Path] = []
    outputs, imports = settings.var_dir / OUTPUTS_FOLDER, settings.var_dir / IMPORTS_FOLDER
    if outputs.is_dir():
        for entry in outputs.iterdir():
            if entry.is_dir() and entry.name.isdigit() and entry.stat().st_mtime < limit:
                folders[int(entry.name)] = entry
    if imports.is_dir():
        uploads = [e for e in imports.iterdir() if e.is_file() and e.stat().st_mtime < limit]
    return folders, uploads


def _delete(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


async def _sweep(ctx: TaskContext, cutoff: datetime) -> int:
    """Delete what no task needs any more: old folders of tasks that have no kept
    output (a failed run's file, a purge interrupted after its commit, a deleted
    task) and import uploads older than ``cutoff``; returns how many."""
    folders, uploads = await asyncio.to_thread(_old_entries, ctx.settings, cutoff)
    keep: set[int] = set()
    ids = sorted(folders)
    async with ctx.sessions() as db:
        for start in range(0, len(ids), PURGE_BATCH):
            keep.update(
                (
                    await db.scalars(
                        select(Task.id).where(
                            Task.id.in_(ids[start : start + PURGE_BATCH]),
                            Task.status.not_in(TASK_TERMINAL)
                            | Task.output_path.is_not(None)
                            | (Task.finished_at >= cutoff),
                        )
                    )
                ).all()
            )
    doomed = [path for task_id, path in folders.items() if task_id not in keep] + uploads
    await asyncio.to_thread(_delete, doomed)
    return len(doomed)


async def purge_outputs(ctx: TaskContext) -> Outcome:
    """Delete every output of a task finished more than the retention period ago and
    mark the task purged; then sweep leftovers. Idempotent: a re-run finds nothing
    more to mark, and deleting a folder twice is harmless."""
    days = ctx.settings.output_retention_days
    now = utcnow()
    cutoff = now - timedelta(days=days)
    async with ctx.sessions() as db:
        due = list(
            (
                await db.scalars(
                    select(Task.id)
                    .where(Task.output_path.is_not(None), Task.finished_at < cutoff)
                    .order_by(Task.id)
                )
            ).all()
        )
    purged = 0
    for start in range(0, len(due), PURGE_BATCH):
        if ctx.cancelled:
            raise asyncio.CancelledError  # what is marked so far stays marked
        # Marked first, deleted after the commit: no page ever links a missing file;
        # a crash in between leaves folders the sweep below deletes next time.
        marked = await _mark_purged(ctx, due[start : start + PURGE_BATCH], now)
        for task_id in marked:
            await asyncio.to_thread(
                shutil.rmtree, output_dir(ctx.settings, task_id), ignore_errors=True
            )
        purged += len(marked)
        done = min(start + PURGE_BATCH, len(due))
        await ctx.progress(90 * done / len(due), f"{done} of {len(due)} outputs deleted")
    swept = await _sweep(ctx, cutoff)
    log.info("outputs purged", purged=purged, swept=swept, retention_days=days)
    plural = "s" if purged != 1 else ""
    return Outcome(
        detail=f"Deleted {purged} output{plural} older than {days} days",
        result={"purged": purged, "swept": swept, "retention_days": days},
    )


register(
    TaskKind(
        PURGE_OUTPUTS,
        "io",
        purge_outputs,
        label=CATALOG[PURGE_OUTPUTS].label,
        max_attempts=3,
        retry_base=30.0,
        hooks=COMPLETION_HOOKS,
    )
)

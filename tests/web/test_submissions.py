"""Accepting submissions under a burst: one transaction each, every row and job exactly
once, the file stored byte for byte across write batches."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from redis.asyncio import Redis
from sqlalchemy import select

from herald import names
from herald.models import Submission, SubmissionStatus, Task, TaskStatus
from tests.web.conftest import Client, Demo, login, upload_form
from web.uploads import CHUNK_SIZE, WRITE_BATCH
from workers.pipeline import SUBMISSION_STEPS


async def _upload(client: Client, demo: Demo, csrf: str, data: bytes, name: str) -> int:
    response = await client.post(
        f"/api/assignments/{demo.assignment_id}/submissions",
        data=upload_form(data, name),
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status == 202, await response.text()
    return int((await response.json())["id"])


async def test_concurrent_uploads_each_get_their_rows_and_one_job(
    client: Client, demo: Demo, redis: Redis
) -> None:
    """Twenty uploads at once: twenty submissions, each with its full set of step tasks
    (the first queued, with one job in Redis), none sharing or missing a row."""
    csrf = await login(client, "alice")
    contents = [f"Essay number {n}\n".encode() * 50 for n in range(20)]
    ids = await asyncio.gather(
        *(_upload(client, demo, csrf, data, f"e{n}.txt") for n, data in enumerate(contents))
    )
    assert len(set(ids)) == 20
    async with demo.sessions() as db:
        submissions = {
            s.id: s
            for s in (await db.scalars(select(Submission).where(Submission.id.in_(ids)))).all()
        }
        tasks = (await db.scalars(select(Task).where(Task.submission_id.in_(ids)))).all()
    assert set(submissions) == set(ids)
    for submission_id, data in zip(ids, contents, strict=True):
        submission = submissions[submission_id]
        assert submission.status == SubmissionStatus.RECEIVED
        assert submission.sha256 == hashlib.sha256(data).hexdigest()
        assert submission.created_at is not None
        mine = sorted((t for t in tasks if t.submission_id == submission_id), key=lambda t: t.id)
        assert [t.step_index for t in mine] == list(range(len(SUBMISSION_STEPS)))
        assert [t.status for t in mine] == [TaskStatus.QUEUED] + [TaskStatus.WAITING] * (
            len(SUBMISSION_STEPS) - 1
        )
        assert all(t.owner_id == demo.users["alice"].id for t in mine)
        assert mine[0].params == {"submission_id": submission_id, "step": "scan"}
    first_ids = {str(t.id).encode() for t in tasks if t.step_index == 0}
    queued = set(await redis.zrange(names.queue_ready_key(SUBMISSION_STEPS[0].queue), 0, -1))
    assert queued == first_ids


async def test_a_file_across_several_write_batches_is_stored_byte_for_byte(
    client: Client, demo: Demo
) -> None:
    """Chunks are gathered into batches before each write: a size that is no multiple of
    either (and a last partial batch) still lands on disk exactly."""
    csrf = await login(client, "alice")
    data = b"%PDF-1.4\n" + os.urandom(3 * WRITE_BATCH + CHUNK_SIZE + 1234)
    submission_id = await _upload(client, demo, csrf, data, "big.pdf")
    async with demo.sessions() as db:
        submission = await db.get(Submission, submission_id)
    assert submission is not None
    assert submission.size == len(data)
    assert Path(submission.upload_path).read_bytes() == data

"""The steps that look at a recorded submission side by side: its similarity to
other students' work, and its preview image."""

from __future__ import annotations

import asyncio

from herald.models import Submission
from workers.plagiarism_client import CheckRejected, PlagiarismClient, reference_for
from workers.similarity import compare_with_earlier, fingerprint, store_fingerprint
from workers.step_context import StepContext, StepFailed, StepOutcome
from workers.steps import current_path
from workers.textract import UNREADABLE, extract_text
from workers.thumbnail import ThumbnailError, render_thumbnail

__all__ = ["plagiarism", "thumbnail"]

# External services take ~30 s; give a check a few minutes before this attempt
# gives up (the step's retries then poll the same check again).
EXTERNAL_TIMEOUT = 300.0
EXTERNAL_POLL = 2.0
# Where a check's external id is kept between attempts, so a retry polls it
# instead of submitting the work a second time.
EXTERNAL_ID_TTL = 7 * 86400


def _external_id_key(submission_id: int) -> str:
    return f"herald:plagiarism-check:{submission_id}"


async def _text(submission: Submission) -> str:
    try:
        text, _pages = await asyncio.to_thread(
            extract_text, current_path(submission), submission.content_type
        )
    except UNREADABLE as exc:
        raise StepFailed(f"could not read the document: {exc}") from exc
    return text


async def plagiarism(ctx: StepContext, submission: Submission) -> StepOutcome:
    """Similarity to other students' submissions of the assignment: the external
    service when configured, else the built-in fingerprinting engine."""
    if submission.content_type.startswith("image/"):
        return StepOutcome(detail="Not checked: an image has no text to compare")
    text = await _text(submission)
    if ctx.settings.plagiarism_url:
        return await _external_check(ctx, submission, text, ctx.settings.plagiarism_url)
    await ctx.progress(5, "fingerprinting the text")
    prints = await asyncio.to_thread(fingerprint, text)
    await store_fingerprint(ctx.sessions, submission.id, submission.assignment_id, prints)
    report = await compare_with_earlier(
        ctx.sessions,
        submission.id,
        submission.assignment_id,
        submission.student_id,
        progress=ctx.progress,
    )
    if not report.compared:
        detail = "Similarity 0%: the first submission to compare against"
    elif report.matches:
        closest = report.matches[0]
        detail = (
            f"Similarity {report.score:.0f}% (closest: submission #{closest.submission_id}, "
            f"of {report.compared} compared)"
        )
    else:
        detail = f"Similarity 0% against {report.compared} other submissions"
    return StepOutcome(detail=detail, result={"engine": "built-in", **report.as_result()})


async def _external_check(
    ctx: StepContext, submission: Submission, text: str, url: str
) -> StepOutcome:
    key = _external_id_key(submission.id)
    known = await ctx.redis.get(key)
    known_id = known.decode() if isinstance(known, bytes) else known

    async def remember(external_id: str) -> None:
        await ctx.redis.set(key, external_id, ex=EXTERNAL_ID_TTL)

    async with PlagiarismClient(url) as client:
        try:
            report = await client.check(
                reference_for(submission.id),
                submission.filename,
                text,
                known_id=known_id,
                on_submitted=remember,
                timeout=EXTERNAL_TIMEOUT,
                poll_interval=EXTERNAL_POLL,
                progress=ctx.progress,
            )
        except CheckRejected as exc:
            raise StepFailed(f"the plagiarism service refused the check: {exc}") from exc
    return StepOutcome(
        detail=f"Similarity {report.score:.0f}% (external service)",
        result={"engine": "external", **report.as_result()},
    )


async def thumbnail(ctx: StepContext, submission: Submission) -> StepOutcome:
    """A PNG preview: the first page of a PDF, a scaled image, or the opening lines."""
    target = ctx.settings.files_dir / "thumbnails" / f"{submission.sha256}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    await ctx.progress(10, "rendering the preview")
    try:
        made = await asyncio.to_thread(
            render_thumbnail, current_path(submission), submission.content_type, target
        )
    except ThumbnailError as exc:
        # A file that cannot be previewed is still a good submission.
        return StepOutcome(detail=f"No preview: {exc}", result={"thumbnail": None})
    return StepOutcome(
        detail=f"Preview ready ({made.width}×{made.height})",
        result={"thumbnail": str(made.path), "width": made.width, "height": made.height},
    )

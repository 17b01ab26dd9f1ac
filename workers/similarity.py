"""The built-in similarity engine: winnowed document fingerprints (Schleimer, Wilkerson
and Aiken, "Winnowing: local algorithms for document fingerprinting", 2003 — the
method behind MOSS), stored per submission and compared within an assignment.

A text is normalised to words, every run of :data:`K` consecutive words is hashed,
and from every window of :data:`W` consecutive hashes the smallest is kept. Two
texts that share a passage of at least ``W + K - 1`` words share at least one
kept hash (the window covering that passage's grams picks the same minimum in
both), whatever surrounds the passage; passages shorter than ``K`` words are
never matched. The similarity of A to B is the share of A's distinct
fingerprints that B also has.

Typical use by a step handler::

    fp = fingerprint(text)
    await store_fingerprint(sessions, submission.id, submission.assignment_id, fp)
    report = await compare_with_earlier(
        sessions, submission.id, submission.assignment_id, submission.student_id,
        progress=ctx.progress,
    )
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.models import Submission, SubmissionFingerprint

__all__ = [
    "GUARANTEE",
    "Fingerprint",
    "K",
    "Progress",
    "SimilarMatch",
    "SimilarityReport",
    "W",
    "compare_with_earlier",
    "fingerprint",
    "similarity",
    "store_fingerprint",
    "tokens",
]

# k = 5 words (about 30 characters of prose). Shorter grams match stock phrases
# that unrelated essays share ("on the other hand", "as a result of the"), which
# would give every pair a floor of false similarity; longer grams let a copier
# hide a passage by changing one word in every k. Five is also the noise threshold:
# a common phrase of four words never counts as a match.
K = 5
# w = 6: every shared passage of w + k - 1 = 10 words (a short sentence) is found,
# and winnowing keeps about 2 / (w + 1) ≈ 29% of the grams, so a 3,000-word essay
# stores some 850 hashes. A larger w stores fewer but misses longer copied runs.
W = 6
GUARANTEE = W + K - 1

# The comparison looks this submission's hashes up in batches: each batch is one
# grouped query of index seeks on (assignment_id, hash), and batches give progress.
# A batch holds at most MAX_BATCH hashes, well under every driver's limit on bound
# parameters (SQLite's was 999 before 3.32), and there are at least PROGRESS_STEPS
# batches when there are that many hashes.
MAX_BATCH = 500
PROGRESS_STEPS = 10

_WORD = re.compile(r"\w+")

Progress = Callable[[float, str], Awaitable[None]]


def tokens(text: str) -> list[str]:
    """The text's words, NFKC-normalised and case-folded; punctuation and spacing dropped.

    Reformatting, changing case or punctuation therefore changes no fingerprint.
    """
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def _gram_hash(gram: Sequence[str]) -> int:
    # blake2b is stable across processes and machines (Python's hash() is salted per
    # process); 8 bytes read as a signed integer is exactly the BIGINT range.
    digest = hashlib.blake2b(" ".join(gram).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _winnow(hashes: Sequence[int], window: int) -> list[int]:
    """Positions chosen by robust winnowing: each window's minimum, the rightmost on
    ties, recorded once while it stays the minimum of the windows that hold it."""
    if not hashes:
        return []
    if len(hashes) < window:
        # One (short) window: its minimum still stands for the whole text.
        low = min(hashes)
        return [max(i for i, h in enumerate(hashes) if h == low)]
    chosen: list[int] = []
    # Indices whose hashes rise strictly from front to back: the front is the
    # current window's minimum, and popping on >= keeps the rightmost of equals.
    candidates: deque[int] = deque()
    for i, value in enumerate(hashes):
        while candidates and hashes[candidates[-1]] >= value:
            candidates.pop()
        candidates.append(i)
        if candidates[0] <= i - window:
            candidates.popleft()
        if i >= window - 1 and (not chosen or chosen[-1] != candidates[0]):
            chosen.append(candidates[0])
    return chosen


@dataclass(frozen=True)
class Fingerprint:
    """A text's distinct winnowed hashes, each with the word position of its first gram."""

    hashes: Mapping[int, int]
    words: int

    def __len__(self) -> int:
        return len(self.hashes)


def fingerprint(text: str, *, k: int = K, w: int = W) -> Fingerprint:
    """The winnowed fingerprint of ``text`` (empty when it has fewer than ``k`` words)."""
    words = tokens(text)
    grams = [_gram_hash(words[i : i + k]) for i in range(len(words) - k + 1)]
    hashes: dict[int, int] = {}
    for position in _winnow(grams, w):
        hashes.setdefault(grams[position], position)
    return Fingerprint(hashes=hashes, words=len(words))


def similarity(a: Fingerprint, b: Fingerprint) -> tuple[float, int]:
    """(percent of ``a``'s fingerprints also in ``b``, how many they share)."""
    shared = len(a.hashes.keys() & b.hashes.keys())
    return _percent(shared, len(a)), shared


def _percent(shared: int, total: int) -> float:
    return round(100.0 * shared / total, 1) if total else 0.0


@dataclass(frozen=True)
class SimilarMatch:
    submission_id: int
    percent: float  # of this submission's fingerprints found in that one
    shared: int


@dataclass(frozen=True)
class SimilarityReport:
    """How much of one submission's text appears in others of its assignment."""

    fingerprints: int  # this submission's distinct fingerprints
    compared: int  # other students' fingerprinted submissions of the assignment
    matches: tuple[SimilarMatch, ...]  # the closest first, at most ``top``

    @property
    def score(self) -> float:
        """The highest percentage against any one submission (0 with none)."""
        return self.matches[0].percent if self.matches else 0.0

    def as_result(self) -> dict[str, Any]:
        """JSON-able, for a task's result."""
        return {
            "score": self.score,
            "fingerprints": self.fingerprints,
            "compared": self.compared,
            "matches": [
                {"submission_id": m.submission_id, "percent": m.percent, "shared": m.shared}
                for m in self.matches
            ],
        }


async def store_fingerprint(
    sessions: async_sessionmaker[AsyncSession],
    submission_id: int,
    assignment_id: int,
    fp: Fingerprint,
) -> int:
    """Replace the submission's stored fingerprints with ``fp``; returns the row count.

    Idempotent: a step re-run after a crash stores the same rows again in one
    transaction (delete, then insert), never a duplicate, and a partial write
    never commits.
    """
    rows = [
        {"submission_id": submission_id, "assignment_id": assignment_id, "hash": h, "position": p}
        for h, p in fp.hashes.items()
    ]
    async with sessions.begin() as db:
        await db.execute(
            delete(SubmissionFingerprint).where(
                SubmissionFingerprint.submission_id == submission_id
            )
        )
        if rows:
            await db.execute(insert(SubmissionFingerprint), rows)
    return len(rows)


async def compare_with_earlier(
    sessions: async_sessionmaker[AsyncSession],
    submission_id: int,
    assignment_id: int,
    student_id: int,
    *,
    top: int = 5,
    progress: Progress | None = None,
) -> SimilarityReport:
    """Compare a stored fingerprint with every other one stored for the assignment.

    "Earlier" means every other submission of the assignment fingerprinted so far,
    except the same student's own: a student resubmitting an improved draft is not
    copying. A re-run may therefore see submissions stored since its first run.
    The submission's fingerprint must be stored first (:func:`store_fingerprint`);
    its hashes are looked up on the (assignment_id, hash) index in batches, each
    one query grouped by submission, so the cost follows this text's size and the
    number of matching rows, not the size of the assignment.
    """
    stored = SubmissionFingerprint
    own_submissions = select(Submission.id).where(
        Submission.assignment_id == assignment_id, Submission.student_id == student_id
    )
    shared: dict[int, int] = {}
    async with sessions() as db:
        # Sorted, so each batch reads one neighbourhood of the index.
        mine = sorted(
            (
                await db.scalars(select(stored.hash).where(stored.submission_id == submission_id))
            ).all()
        )
        compared = await db.scalar(
            select(func.count())
            .select_from(Submission)
            .where(
                Submission.assignment_id == assignment_id,
                Submission.student_id != student_id,
                select(stored.submission_id).where(stored.submission_id == Submission.id).exists(),
            )
        )
        size = min(MAX_BATCH, max(1, math.ceil(len(mine) / PROGRESS_STEPS)))
        batches = [mine[i : i + size] for i in range(0, len(mine), size)] if compared else []
        # Driving the lookup from these hashes (IN, not a join) keeps every database
        # on index seeks: given a join, SQLite chose to scan the assignment's rows.
        for done, batch in enumerate(batches, 1):
            query = (
                select(stored.submission_id, func.count())
                .where(
                    stored.assignment_id == assignment_id,
                    stored.hash.in_(batch),
                    stored.submission_id.not_in(own_submissions),
                )
                .group_by(stored.submission_id)
            )
            for candidate, count in await db.execute(query):
                shared[candidate] = shared.get(candidate, 0) + count
            if progress is not None:
                await progress(
                    100.0 * done / len(batches),
                    f"compared with {compared} earlier submission{'s' if compared != 1 else ''}",
                )
    total = len(mine)
    best = sorted(shared.items(), key=lambda item: (-item[1], item[0]))[:top]
    return SimilarityReport(
        fingerprints=total,
        compared=compared or 0,
        matches=tuple(SimilarMatch(sid, _percent(n, total), n) for sid, n in best),
    )

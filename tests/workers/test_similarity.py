"""The built-in similarity engine: winnowing, its guarantee, text from every supported
file type, and fingerprint storage and comparison on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from alembic import command
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from herald.db import session_factory
from herald.migrate import alembic_config, upgrade_async
from herald.models import (
    Assignment,
    Course,
    Submission,
    SubmissionFingerprint,
    User,
)
from tests.documents import make_docx, make_pdf
from workers.similarity import (
    GUARANTEE,
    MAX_BATCH,
    K,
    W,
    _winnow,
    compare_with_earlier,
    fingerprint,
    similarity,
    store_fingerprint,
    tokens,
)
from workers.textract import extract_text

# ---------------------------------------------------------------------------
# Essay-like texts, generated deterministically from a seed


def _vocabulary(words: str) -> list[str]:
    return words.split()


_OPENERS = (
    "It is often argued that",
    "Many historians believe that",
    "In recent years",
    "On the other hand,",
    "As a result,",
    "For this reason",
    "It is important to note that",
    "In contrast,",
    "Moreover,",
    "However,",
    "At the same time",
    "Critics point out that",
)
_ADJECTIVES = _vocabulary("""ancient modern rural urban local global careful rapid gradual sudden
fragile durable public private early late common rare formal informal political
economic social cultural scientific natural artificial coastal northern southern
wealthy poor skilled unskilled visible hidden direct indirect seasonal annual
narrow broad central regional medieval industrial digital chemical""")
_NOUNS = _vocabulary("""river harbour market council village farmer merchant guild monastery
parliament railway factory school teacher student library archive journal treaty
border tax harvest drought flood forest soil glacier climate ocean current
species habitat predator insect bacteria enzyme protein membrane cell gene
language dialect poem novel theatre painter canal bridge mill engine furnace
newspaper printer census survey charter colony empire province tariff wage
contract court judge witness verdict statute bishop pilgrim fortress garrison""")
_VERBS = _vocabulary("""shapes limits transforms weakens strengthens reflects conceals reveals
undermines supports replaces follows precedes outlasts funds controls explains
challenges protects threatens connects divides absorbs produces reduces measures
records favours rewards restricts delays accelerates""")
_LINKS = ("and", "while", "because", "although", "so", "whereas", "since")


def _sentence(rng: random.Random) -> str:
    def phrase() -> str:
        return f"the {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"

    shape = rng.randrange(3)
    if shape == 0:
        body = f"{phrase()} {rng.choice(_VERBS)} {phrase()} of {rng.choice(_NOUNS)}"
    elif shape == 1:
        body = (
            f"{phrase()} {rng.choice(_VERBS)} {phrase()}, {rng.choice(_LINKS)} "
            f"{phrase()} {rng.choice(_VERBS)} the {rng.choice(_NOUNS)}"
        )
    else:
        body = f"{phrase()} of the {rng.choice(_NOUNS)} {rng.choice(_VERBS)} {phrase()}"
    if rng.random() < 0.4:
        body = f"{rng.choice(_OPENERS)} {body}"
    return body[0].upper() + body[1:] + "."


def essay(seed: int, paragraphs: int = 6) -> list[list[str]]:
    """Paragraphs of sentences: about 350-450 words of essay-like prose."""
    rng = random.Random(seed)
    return [[_sentence(rng) for _ in range(rng.randint(4, 6))] for _ in range(paragraphs)]


def render(paragraphs: list[list[str]]) -> str:
    return "\n\n".join(" ".join(sentences) for sentences in paragraphs)


def lightly_edited(paragraphs: list[list[str]], seed: int) -> str:
    """Sentences reordered within paragraphs, spacing, case and punctuation changed, and
    one word in about twenty-five replaced: the disguises copying usually wears."""
    rng = random.Random(seed)
    out = []
    for sentences in paragraphs:
        order = sentences[:]
        rng.shuffle(order)
        words = " ".join(order).split(" ")
        for i in range(rng.randrange(25), len(words), 25):
            words[i] = rng.choice(_NOUNS)
        text = "".join(w + rng.choice((" ", "  ", "\n", " \t")) for w in words)
        text = text.replace(",", ";").replace(". ", "! ", 2).upper()
        out.append(text)
    return "\n\n\n".join(out)


# ---------------------------------------------------------------------------
# Scores between texts


def test_identical_texts_score_100() -> None:
    """A text compared with itself, reformatted or not, is 100% similar."""
    text = render(essay(1))
    reformatted = "  ".join(text.upper().split()).replace(".", " ;")
    assert similarity(fingerprint(text), fingerprint(text))[0] == 100.0
    assert similarity(fingerprint(text), fingerprint(reformatted))[0] == 100.0


def test_lightly_edited_copy_scores_high_but_below_identical() -> None:
    """Reordered sentences with changed spacing, case, punctuation and a few words is
    clearly flagged, yet scores below an exact copy."""
    for seed in range(5):
        source = essay(seed)
        percent, shared = similarity(
            fingerprint(lightly_edited(source, seed)), fingerprint(render(source))
        )
        assert 40.0 <= percent <= 95.0, (seed, percent)
        assert shared > 20


def test_unrelated_texts_score_near_zero() -> None:
    """Essays written independently from the same vocabulary share almost nothing."""
    texts = [fingerprint(render(essay(seed))) for seed in range(100, 110)]
    worst = max(similarity(a, b)[0] for a in texts for b in texts if a is not b)
    assert worst < 5.0


def test_short_texts_have_no_fingerprint() -> None:
    """Fewer than k words give no fingerprint and a 0% similarity, not a division error."""
    short = fingerprint("Just four words here")
    assert len(short) == 0
    assert similarity(short, fingerprint(render(essay(1)))) == (0.0, 0)


def test_tokens_ignore_case_width_and_punctuation() -> None:
    """NFKC folds compatibility forms (full-width letters, ligatures), case folds, and
    punctuation and spacing vanish."""
    assert tokens("Ｔｈｅ  ﬁnal—STRAẞE!\n(river)") == ["the", "final", "strasse", "river"]


# ---------------------------------------------------------------------------
# Winnowing


def _winnow_reference(hashes: list[int], window: int) -> list[int]:
    """The paper's definition, window by window: the rightmost minimum, recorded when it
    changes."""
    chosen: list[int] = []
    for start in range(max(1, len(hashes) - window + 1)):
        part = hashes[start : start + window]
        if not part:
            break
        low = min(part)
        pick = start + max(i for i, h in enumerate(part) if h == low)
        if not chosen or chosen[-1] != pick:
            chosen.append(pick)
    return chosen


@given(st.lists(st.integers(0, 5), max_size=60), st.integers(1, 8))
def test_winnow_matches_the_definition(hashes: list[int], window: int) -> None:
    """The linear-time winnowing picks exactly the positions the definition picks, ties
    included (small hash values force many)."""
    assert _winnow(hashes, window) == _winnow_reference(hashes, window)


_words = st.lists(st.from_regex(r"[a-z]{1,7}", fullmatch=True), max_size=80)


@settings(max_examples=300, deadline=None)
@given(
    _words,
    _words,
    _words,
    _words,
    st.lists(st.from_regex(r"[a-z]{1,7}", fullmatch=True), min_size=GUARANTEE, max_size=GUARANTEE),
)
def test_shared_passage_of_guaranteed_length_is_detected(
    before_a: list[str],
    after_a: list[str],
    before_b: list[str],
    after_b: list[str],
    passage: list[str],
) -> None:
    """Any passage of w + k - 1 words found in two texts, whatever surrounds it, gives
    them at least one common fingerprint."""
    a = fingerprint(" ".join(before_a + passage + after_a))
    b = fingerprint(" ".join(before_b + passage + after_b))
    assert a.hashes.keys() & b.hashes.keys()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.from_regex(r"[a-m]{1,7}", fullmatch=True), max_size=80),
    st.lists(st.from_regex(r"[n-z]{1,7}", fullmatch=True), max_size=80),
    st.lists(st.from_regex(r"[0-9]{1,4}", fullmatch=True), min_size=K - 1, max_size=K - 1),
)
def test_passage_shorter_than_k_is_never_matched(
    text_a: list[str], text_b: list[str], passage: list[str]
) -> None:
    """Below the noise threshold (k words) texts with otherwise disjoint words share no
    fingerprint: every k-gram holds a word only one of them has."""
    a = fingerprint(" ".join(text_a[:40] + passage + text_a[40:]))
    b = fingerprint(" ".join(text_b[:40] + passage + text_b[40:]))
    assert not a.hashes.keys() & b.hashes.keys()


def test_fingerprint_density_follows_w() -> None:
    """Winnowing keeps about 2 / (w + 1) of the grams of a long text (the paper's density)."""
    fp = fingerprint(render(essay(3, paragraphs=60)))
    density = len(fp) / (fp.words - K + 1)
    assert abs(density - 2 / (W + 1)) < 0.05


# ---------------------------------------------------------------------------
# Text from PDF and DOCX files built by hand


_DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def test_text_from_pdf_and_docx_compares_like_the_plain_text(tmp_path: Path) -> None:
    """The same essay as .txt, .md, .pdf and .docx extracts to the same words, so every
    pair scores 100%; an edited copy in another format still scores high, an unrelated
    one near zero."""
    source = render(essay(7))
    (tmp_path / "essay.txt").write_text(source, encoding="utf-8")
    (tmp_path / "essay.md").write_text("# Essay\n\n" + source, encoding="utf-8")
    (tmp_path / "essay.pdf").write_bytes(make_pdf(source))
    (tmp_path / "essay.docx").write_bytes(make_docx(source))
    (tmp_path / "edited.docx").write_bytes(make_docx(lightly_edited(essay(7), 1)))
    (tmp_path / "other.pdf").write_bytes(make_pdf(render(essay(8))))
    files = {
        "txt": ("essay.txt", "text/plain"),
        "md": ("essay.md", "text/markdown"),
        "pdf": ("essay.pdf", "application/pdf"),
        "docx": ("essay.docx", _DOCX),
        "edited": ("edited.docx", _DOCX),
        "other": ("other.pdf", "application/pdf"),
    }
    texts = {key: extract_text(tmp_path / name, kind)[0] for key, (name, kind) in files.items()}
    assert tokens(texts["pdf"]) == tokens(source)
    assert tokens(texts["docx"]) == tokens(source)
    prints = {key: fingerprint(text) for key, text in texts.items()}
    for a in ("txt", "pdf", "docx"):
        for b in ("txt", "md", "pdf", "docx"):
            assert similarity(prints[a], prints[b])[0] == 100.0, (a, b)
    assert 40.0 <= similarity(prints["edited"], prints["pdf"])[0] < 100.0
    assert similarity(prints["other"], prints["docx"])[0] < 5.0


# ---------------------------------------------------------------------------
# Storage and comparison in the database (SQLite and PostgreSQL)


async def _world(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """A course with two assignments and five students; returns their ids by name."""
    async with sessions.begin() as db:
        course = Course(code="SIM101", title="Similarity")
        db.add(course)
        await db.flush()
        first = Assignment(course_id=course.id, title="Essay 1")
        second = Assignment(course_id=course.id, title="Essay 2")
        students = {
            name: User(username=name, display_name=name.title(), password_hash="x")
            for name in ("ann", "ben", "cat", "dan", "eve")
        }
        db.add_all([first, second, *students.values()])
        await db.flush()
        return {"a1": first.id, "a2": second.id} | {n: u.id for n, u in students.items()}


async def _submit(
    sessions: async_sessionmaker[AsyncSession], assignment: int, student: int, text: str
) -> int:
    """A submission row with its fingerprint stored, as the plagiarism step leaves it."""
    async with sessions.begin() as db:
        sub = Submission(
            assignment_id=assignment,
            student_id=student,
            filename="essay.txt",
            content_type="text/plain",
            size=len(text),
            sha256="0" * 64,
            upload_path="/nowhere",
        )
        db.add(sub)
        await db.flush()
        sub_id = sub.id
    await store_fingerprint(sessions, sub_id, assignment, fingerprint(text))
    return sub_id


async def _rows(sessions: async_sessionmaker[AsyncSession], submission_id: int) -> int:
    async with sessions() as db:
        count = await db.scalar(
            select(func.count())
            .select_from(SubmissionFingerprint)
            .where(SubmissionFingerprint.submission_id == submission_id)
        )
    return count or 0


async def test_compare_with_earlier_ranks_other_students_in_the_same_assignment(
    engine: AsyncEngine,
) -> None:
    """The closest earlier submissions come first with their percentages; the student's
    own earlier draft and submissions of other assignments never match."""
    sessions = session_factory(engine)
    ids = await _world(sessions)
    source = essay(20)
    half = render(source[:3] + essay(21)[3:])
    own_draft = await _submit(sessions, ids["a1"], ids["ann"], render(source))
    edited = await _submit(sessions, ids["a1"], ids["ben"], lightly_edited(source, 2))
    partial = await _submit(sessions, ids["a1"], ids["cat"], half)
    await _submit(sessions, ids["a1"], ids["dan"], render(essay(22)))
    await _submit(sessions, ids["a2"], ids["eve"], render(source))  # another assignment
    new = await _submit(sessions, ids["a1"], ids["ann"], render(source))

    steps: list[float] = []

    async def progress(percent: float, detail: str) -> None:
        steps.append(percent)
        assert "3 earlier submissions" in detail

    report = await compare_with_earlier(
        sessions, new, ids["a1"], ids["ann"], top=2, progress=progress
    )
    assert report.compared == 3  # ben, cat, dan: not ann's draft, not eve's other assignment
    assert [m.submission_id for m in report.matches] == [edited, partial]
    assert own_draft not in {m.submission_id for m in report.matches}
    assert report.fingerprints == await _rows(sessions, new)
    assert 40.0 <= report.matches[0].percent < 100.0
    assert 30.0 <= report.matches[1].percent <= 70.0
    assert report.score == report.matches[0].percent
    assert report.matches[0].shared == round(report.matches[0].percent * report.fingerprints / 100)
    assert steps == sorted(steps) and steps[-1] == 100.0 and len(steps) > 1
    assert report.as_result()["matches"][0]["submission_id"] == edited

    everyone = await compare_with_earlier(sessions, new, ids["a1"], ids["ann"], top=10)
    unrelated = [m for m in everyone.matches if m.submission_id not in {edited, partial}]
    assert all(m.percent < 5.0 for m in unrelated)


async def test_long_texts_compare_in_the_database_as_in_memory(engine: AsyncEngine) -> None:
    """Texts long enough for full-size lookup batches score in the database exactly as
    the in-memory comparison scores them."""
    sessions = session_factory(engine)
    ids = await _world(sessions)
    source = essay(60, paragraphs=400)
    assert len(fingerprint(render(source))) > 10 * MAX_BATCH
    copy = render(source[:150]) + lightly_edited(source[150:], 3)
    earlier = await _submit(sessions, ids["a1"], ids["ben"], render(source))
    new = await _submit(sessions, ids["a1"], ids["ann"], copy)
    report = await compare_with_earlier(sessions, new, ids["a1"], ids["ann"])
    expected = similarity(fingerprint(copy), fingerprint(render(source)))
    assert [(m.submission_id, m.percent, m.shared) for m in report.matches] == [
        (earlier, *expected)
    ]


async def test_store_is_idempotent_and_replaces(engine: AsyncEngine) -> None:
    """Storing the same fingerprint again leaves the same rows and the same report;
    storing a changed text replaces the old rows instead of adding to them."""
    sessions = session_factory(engine)
    ids = await _world(sessions)
    text = render(essay(30))
    earlier = await _submit(sessions, ids["a1"], ids["ben"], text)
    sub = await _submit(sessions, ids["a1"], ids["ann"], text)
    rows = await _rows(sessions, sub)
    first = await compare_with_earlier(sessions, sub, ids["a1"], ids["ann"])

    assert await store_fingerprint(sessions, sub, ids["a1"], fingerprint(text)) == rows
    assert await _rows(sessions, sub) == rows
    assert await compare_with_earlier(sessions, sub, ids["a1"], ids["ann"]) == first
    assert first.matches[0].submission_id == earlier and first.score == 100.0

    other = fingerprint(render(essay(31)))
    await store_fingerprint(sessions, sub, ids["a1"], other)
    assert await _rows(sessions, sub) == len(other)
    assert (await compare_with_earlier(sessions, sub, ids["a1"], ids["ann"])).score < 5.0


async def test_first_submission_and_empty_text_report_nothing(engine: AsyncEngine) -> None:
    """With nothing earlier to compare, or no words to fingerprint, the score is 0."""
    sessions = session_factory(engine)
    ids = await _world(sessions)
    first = await _submit(sessions, ids["a1"], ids["ann"], render(essay(40)))
    report = await compare_with_earlier(sessions, first, ids["a1"], ids["ann"])
    assert (report.score, report.compared, report.matches) == (0.0, 0, ())
    empty = await _submit(sessions, ids["a1"], ids["ben"], "")
    report = await compare_with_earlier(sessions, empty, ids["a1"], ids["ben"])
    assert (report.score, report.fingerprints, report.compared) == (0.0, 0, 1)


async def test_fingerprints_go_with_their_submission(engine: AsyncEngine) -> None:
    """Deleting a submission deletes its fingerprints (ON DELETE CASCADE)."""
    sessions = session_factory(engine)
    ids = await _world(sessions)
    sub = await _submit(sessions, ids["a1"], ids["ann"], render(essay(50)))
    assert await _rows(sessions, sub) > 0
    async with sessions.begin() as db:
        await db.delete(await db.get(Submission, sub))
    assert await _rows(sessions, sub) == 0


def _tables(connection: object) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_fingerprint_migration_goes_down_and_up(
    engine: AsyncEngine, database_url: str
) -> None:
    """0005 can be undone and redone: the fingerprint table goes and comes back."""
    # Alembic connects on its own; pooled connections would hold locks it needs.
    await engine.dispose()
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0004")
    async with engine.connect() as connection:
        assert "submission_fingerprints" not in await connection.run_sync(_tables)
    await engine.dispose()
    await upgrade_async(database_url)
    async with engine.connect() as connection:
        assert "submission_fingerprints" in await connection.run_sync(_tables)


@pytest.mark.parametrize("value", [-(2**63), 2**63 - 1])
async def test_extreme_hashes_round_trip(engine: AsyncEngine, value: int) -> None:
    """The signed 64-bit ends of the hash range store and match on every backend."""
    sessions = session_factory(engine)
    ids = await _world(sessions)
    a = await _submit(sessions, ids["a1"], ids["ann"], "")
    b = await _submit(sessions, ids["a1"], ids["ben"], "")
    fp = fingerprint("")
    edge = type(fp)(hashes={value: 0}, words=K)
    await store_fingerprint(sessions, a, ids["a1"], edge)
    await store_fingerprint(sessions, b, ids["a1"], edge)
    report = await compare_with_earlier(sessions, b, ids["a1"], ids["ben"])
    assert [(m.submission_id, m.percent) for m in report.matches] == [(a, 100.0)]

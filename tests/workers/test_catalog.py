"""Who may submit which kind, on each database: students nothing, a course's markers
their course's reports, another course's marker not those, admins everything; bad
parameters refused with a reason for a person."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from herald.models import User
from tests.workers.outputs_support import (  # noqa: F401 - the fixture
    Classroom,
    classroom_fixture,
)
from workers.catalog import (
    EXPORT_SUBMISSIONS,
    GRADES_REPORT,
    IMPORT_USERS,
    IMPORTS_FOLDER,
    PURGE_OUTPUTS,
    QUEUE_STATS_REPORT,
    SIMILARITY_REPORT,
    BadParams,
    CatalogError,
    NotAllowed,
    NotSubmittable,
    check_request,
    kinds_for,
    staff_assignments,
)

STAFF_KINDS = (GRADES_REPORT, SIMILARITY_REPORT, EXPORT_SUBMISSIONS)
ADMIN_KINDS = (QUEUE_STATS_REPORT, PURGE_OUTPUTS)


async def _check(room: Classroom, who: str, kind: str, params: object) -> dict | CatalogError:
    async with room.sessions() as db:
        try:
            return await check_request(db, room.users[who], kind, params, settings=room.settings)
        except CatalogError as exc:
            return exc


async def test_course_staff_run_their_courses_reports_and_nobody_else(
    classroom: Classroom,
) -> None:
    """Marker of the course and site admin: allowed; student and another course's
    marker: NotAllowed, with the same answer for an assignment that does not exist."""
    mine = {"assignment_id": classroom.assignment_id}
    for kind in STAFF_KINDS:
        assert await _check(classroom, "mark", kind, mine) == {
            **mine,
            **({"format": "csv"} if kind == SIMILARITY_REPORT else {}),
        }
        assert isinstance(await _check(classroom, "ada", kind, mine), dict)
        for outsider in ("alice", "olga"):
            refused = await _check(classroom, outsider, kind, mine)
            assert isinstance(refused, NotAllowed), (kind, outsider)
            assert refused.status == 403
        missing = await _check(classroom, "mark", kind, {"assignment_id": 999_999})
        assert isinstance(missing, NotAllowed)
    theirs = {"assignment_id": classroom.other_assignment_id}
    assert isinstance(await _check(classroom, "olga", GRADES_REPORT, theirs), dict)
    assert isinstance(await _check(classroom, "mark", GRADES_REPORT, theirs), NotAllowed)
    # A site admin is told plainly that it does not exist.
    gone = await _check(classroom, "ada", GRADES_REPORT, {"assignment_id": 999_999})
    assert isinstance(gone, BadParams) and gone.message == "There is no assignment 999999."


async def test_admin_kinds_are_for_site_admins_only(classroom: Classroom) -> None:
    """Queue statistics, the purge and imports: site admins only, whatever the course role."""
    upload = f"{'c' * 32}.csv"
    (classroom.settings.var_dir / IMPORTS_FOLDER).mkdir(parents=True)
    (classroom.settings.var_dir / IMPORTS_FOLDER / upload).write_text("username\n")
    for kind, params in (
        (QUEUE_STATS_REPORT, {}),
        (PURGE_OUTPUTS, {}),
        (IMPORT_USERS, {"upload": upload}),
    ):
        for who in ("alice", "mark", "olga"):
            assert isinstance(await _check(classroom, who, kind, params), NotAllowed), (kind, who)
        assert isinstance(await _check(classroom, "ada", kind, params), dict)
    assert await _check(classroom, "ada", QUEUE_STATS_REPORT, {}) == {"days": 7}
    assert await _check(classroom, "ada", QUEUE_STATS_REPORT, {"days": "30"}) == {"days": 30}


@pytest.mark.parametrize(
    ("kind", "params", "error", "message"),
    [
        ("diag.sleep", {}, NotSubmittable, "Tasks of kind 'diag.sleep' cannot be submitted here."),
        ("grades.release", {"assignment_id": 1}, NotSubmittable, None),
        ("submission.scan", {}, NotSubmittable, None),
        ("no.such.kind", {}, NotSubmittable, None),
        (GRADES_REPORT, [], BadParams, "params must be a JSON object."),
        (GRADES_REPORT, {}, BadParams, "Assignment is required."),
        (GRADES_REPORT, {"assignment_id": "x"}, BadParams, "Assignment must be a whole number."),
        (GRADES_REPORT, {"assignment_id": True}, BadParams, "Assignment must be a whole number."),
        (GRADES_REPORT, {"assignment_id": 0}, BadParams, None),
        (GRADES_REPORT, {"assignment_id": 1, "x": 1}, BadParams, "Unknown parameter: x."),
        (
            SIMILARITY_REPORT,
            {"assignment_id": 1, "format": "docx"},
            BadParams,
            "Format must be one of: csv, pdf.",
        ),
        (QUEUE_STATS_REPORT, {"days": 0}, BadParams, "Days must be from 1 to 366."),
        (QUEUE_STATS_REPORT, {"days": 1.5}, BadParams, "Days must be a whole number."),
        (IMPORT_USERS, {}, BadParams, "File is required."),
        (IMPORT_USERS, {"upload": "../herald.db"}, BadParams, "File must name an uploaded file."),
        (
            IMPORT_USERS,
            {"upload": f"{'d' * 32}.csv"},
            BadParams,
            "The uploaded file is no longer there; please upload it again.",
        ),
    ],
)
async def test_bad_requests_are_refused_with_a_reason(
    classroom: Classroom, kind: str, params: object, error: type, message: str | None
) -> None:
    """Unknown or internal kinds are not submittable; bad params say what is wrong."""
    refused = await _check(classroom, "ada", kind, params)
    assert isinstance(refused, error), refused
    if message is not None:
        assert refused.message == message


async def test_pages_offer_what_each_user_may_run(classroom: Classroom) -> None:
    """Admin-only kinds only to admins; a marker's assignment picker holds only the
    assignments of the courses they mark."""
    for who, expected in (
        ("alice", {GRADES_REPORT, SIMILARITY_REPORT, EXPORT_SUBMISSIONS}),
        ("ada", {*STAFF_KINDS, *ADMIN_KINDS, IMPORT_USERS}),
    ):
        assert {kind.name for kind in kinds_for(classroom.users[who])} == expected

    async def picker(who: str) -> list[int]:
        db: AsyncSession
        async with classroom.sessions() as db:
            user: User = classroom.users[who]
            return [choice.id for choice in await staff_assignments(db, user)]

    assert await picker("mark") == [classroom.assignment_id]
    assert await picker("olga") == [classroom.other_assignment_id]
    assert await picker("alice") == []
    assert sorted(await picker("ada")) == sorted(
        [classroom.assignment_id, classroom.other_assignment_id]
    )

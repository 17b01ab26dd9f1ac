"""The whole access matrix of DESIGN.md's "Topics" table, generated, on SQLite and PostgreSQL.

Every viewer of the world (each role, an inactive account, one enrolled in nothing, no account)
× every topic of the world plus an unknown id per family × every action × every match option.
The expected answer is never listed by hand: it comes from :data:`FAMILIES`, a transcription of
the table, evaluated over the facts read back from the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from herald import names
from herald.db import session_factory
from herald.models import CourseRole, User
from router.authorizer import Authorizer, authorize
from tests.router.fixtures import AccessWorld, Facts, build_access_world

# --- Who is looking ---------------------------------------------------------------

ROLE_OF = {
    "alice": "student",
    "bob": "student",
    "carol": "student of OTHER",
    "dual": "student of both courses",
    "mark": "marker",
    "otto": "marker of OTHER",
    "tess": "student here, marker of OTHER",
    "cora": "course-role admin",
    "ada": "site admin",
    "sam": "site admin enrolled in nothing",
    "zed": "inactive student",
    "old": "inactive site admin",
    "nemo": "enrolled in nothing",
}
NO_ACCOUNT = "no account"
# An id no row has; small enough to be a valid id on every backend.
UNKNOWN_ID = 999_999


@dataclass(frozen=True)
class Viewer:
    name: str
    role: str
    id: int | None  # None: the session's authid names no user
    is_admin: bool
    is_active: bool


def viewers(aw: AccessWorld) -> list[Viewer]:
    found = [
        Viewer(name, ROLE_OF[name], user.id, user.is_admin, user.is_active)
        for name, user in aw.world.users.items()
    ]
    assert {v.name for v in found} == set(ROLE_OF), "every user of the world has a role label"
    return [*found, Viewer("ghost", NO_ACCOUNT, None, False, False)]


# --- DESIGN.md's "Topics" table, one rule per row ------------------------------------


def is_admin_of(f: Facts, v: Viewer, course: int) -> bool:
    # A site admin is an admin of every course (herald.access applies the same to pages).
    return v.is_admin or (v.id is not None and f.role(v.id, course) is CourseRole.ADMIN)


def submission_rule(f: Facts, v: Viewer, sid: int) -> bool:
    """The submission's owner; markers and admins of its course."""
    if sid not in f.submissions or v.id is None:
        return False
    owner, course = f.submissions[sid]
    return v.id == owner or f.role(v.id, course) is CourseRole.MARKER or is_admin_of(f, v, course)


def assignment_rule(f: Facts, v: Viewer, aid: int) -> bool:
    """Students enrolled in its course; its markers; admins."""
    course = f.assignments.get(aid)
    if course is None or v.id is None:
        return False
    enrolled = f.role(v.id, course) in (CourseRole.STUDENT, CourseRole.MARKER)
    return enrolled or is_admin_of(f, v, course)


def user_rule(f: Facts, v: Viewer, uid: int) -> bool:
    """That user only."""
    return v.id == uid


def course_rule(f: Facts, v: Viewer, cid: int) -> bool:
    """Members of the course."""
    # Site admins may view any course id, even one with no row yet: herald.access decides
    # so for pages too and test_authorizer pins it. Harmless: nothing is published there.
    return v.is_admin or (v.id is not None and f.role(v.id, cid) is not None)


def broadcast_rule(f: Facts, v: Viewer, _: int) -> bool:
    """Every signed-in user (being signed in is the gate below)."""
    return True


def admin_tasks_rule(f: Facts, v: Viewer, _: int) -> bool:
    """Admins: site admins, for it carries every course's tasks."""
    return v.is_admin


# How a thing relates to the viewer, so a failure says "student / submission / same course".
OWN, SAME_COURSE, UNRELATED, UNKNOWN, SITE = (
    "own",
    "same course",
    "unrelated course",
    "unknown id",
    "site-wide",
)


def submission_relation(f: Facts, v: Viewer, sid: int) -> str:
    if sid not in f.submissions:
        return UNKNOWN
    owner, course = f.submissions[sid]
    if owner == v.id:
        return OWN
    return SAME_COURSE if v.id is not None and course in f.courses_of(v.id) else UNRELATED


def course_thing_relation(course: int | None, f: Facts, v: Viewer) -> str:
    # An assignment or course has no owner: "own" is one of the viewer's own courses.
    if course is None:
        return UNKNOWN
    return OWN if v.id is not None and course in f.courses_of(v.id) else UNRELATED


def user_relation(f: Facts, v: Viewer, uid: int) -> str:
    if uid not in f.users:
        return UNKNOWN
    if uid == v.id:
        return OWN
    shared = v.id is not None and f.courses_of(uid) & f.courses_of(v.id)
    return SAME_COURSE if shared else UNRELATED


@dataclass(frozen=True)
class Family:
    name: str
    topic: Callable[[int], str]
    ids: Callable[[Facts], Iterable[int]]
    relation: Callable[[Facts, Viewer, int], str]
    may_subscribe: Callable[[Facts, Viewer, int], bool]


def _single(topic: str) -> Callable[[int], str]:
    return lambda _: topic


FAMILIES = (
    Family(
        "submission.{id}",
        names.submission_topic,
        lambda f: [*f.submissions, UNKNOWN_ID],
        submission_relation,
        submission_rule,
    ),
    Family(
        "assignment.{id}",
        names.assignment_topic,
        lambda f: [*f.assignments, UNKNOWN_ID],
        lambda f, v, aid: course_thing_relation(f.assignments.get(aid), f, v),
        assignment_rule,
    ),
    Family(
        "user.{id}",
        names.user_topic,
        lambda f: [*f.users, UNKNOWN_ID],
        user_relation,
        user_rule,
    ),
    Family(
        "course.{id}",
        names.course_topic,
        lambda f: [*f.courses, UNKNOWN_ID],
        lambda f, v, cid: course_thing_relation(cid if cid in f.courses else None, f, v),
        course_rule,
    ),
    Family("broadcast", _single(names.BROADCAST), lambda f: [0], lambda *_: SITE, broadcast_rule),
    Family(
        "admin.tasks", _single(names.ADMIN_TASKS), lambda f: [0], lambda *_: SITE, admin_tasks_rule
    ),
)

ACTIONS = ("subscribe", "publish", "call", "register")
# "missing" is WAMP's default, exact; prefix on user.7 would also match user.70.
MATCHES: dict[str, Mapping[str, Any]] = {
    "exact": {"match": "exact"},
    "prefix": {"match": "prefix"},
    "wildcard": {"match": "wildcard"},
    "missing": {},
}


def expected(f: Facts, v: Viewer, family: Family, ident: int, action: str, match: str) -> bool:
    """The table's rule behind the gate every browser session passes first: a signed-in
    (active) account, only subscribe (nobody but the backend publishes, calls or registers),
    and only an exact match (CROSSBAR_NOTES.md, Authorization)."""
    signed_in = v.id is not None and v.is_active
    gate = signed_in and action == "subscribe" and match in ("exact", "missing")
    return gate and family.may_subscribe(f, v, ident)


@dataclass(frozen=True)
class Case:
    viewer: Viewer
    family: str
    relation: str
    topic: str
    action: str
    match: str
    allow: bool

    def __str__(self) -> str:
        want = "allow" if self.allow else "deny"
        return (
            f"{self.viewer.role} ({self.viewer.name}) / {self.family} / {self.relation} / "
            f"{self.action} / match {self.match}: {self.topic!r} should {want}"
        )


def matrix(aw: AccessWorld) -> list[Case]:
    f = aw.facts
    return [
        Case(
            v,
            family.name,
            family.relation(f, v, ident),
            family.topic(ident),
            action,
            match,
            expected(f, v, family, ident, action, match),
        )
        for v in viewers(aw)
        for family in FAMILIES
        for ident in family.ids(f)
        for action in ACTIONS
        for match in MATCHES
    ]


# --- The tests -------------------------------------------------------------------------


@pytest.fixture
async def access_world(engine: AsyncEngine) -> AccessWorld:
    return await build_access_world(session_factory(engine))


# Attacks the world must be able to express, or the matrix would be quietly thinner.
REQUIRED = [
    ("student", "submission.{id}", OWN),
    ("student", "submission.{id}", SAME_COURSE),
    ("student", "submission.{id}", UNRELATED),
    ("student", "submission.{id}", UNKNOWN),
    ("student", "user.{id}", SAME_COURSE),
    ("student", "user.{id}", UNRELATED),
    ("student", "assignment.{id}", UNRELATED),
    ("student", "course.{id}", UNRELATED),
    ("marker of OTHER", "submission.{id}", UNRELATED),
    ("student here, marker of OTHER", "submission.{id}", SAME_COURSE),
    ("course-role admin", "admin.tasks", SITE),
    ("course-role admin", "submission.{id}", UNRELATED),
    ("inactive student", "submission.{id}", OWN),
    ("inactive site admin", "admin.tasks", SITE),
    ("enrolled in nothing", "course.{id}", UNRELATED),
    ("site admin enrolled in nothing", "submission.{id}", UNRELATED),
    (NO_ACCOUNT, "broadcast", SITE),
]


async def test_matrix_covers_every_role_family_and_relation(access_world: AccessWorld) -> None:
    """The generated matrix holds every role × family × relation it claims, allows and denies."""
    cases = matrix(access_world)
    seen = {(c.viewer.role, c.family, c.relation) for c in cases}
    missing = [r for r in REQUIRED if r not in seen]
    assert not missing, missing
    relations = {(c.family, c.relation) for c in cases}
    assert relations == {
        *((fam, rel) for fam in ("submission.{id}", "user.{id}") for rel in (OWN, SAME_COURSE)),
        *((fam.name, UNRELATED) for fam in FAMILIES[:4]),
        *((fam.name, UNKNOWN) for fam in FAMILIES[:4]),
        ("assignment.{id}", OWN),
        ("course.{id}", OWN),
        ("broadcast", SITE),
        ("admin.tasks", SITE),
    }
    for family in FAMILIES:
        outcomes = {c.allow for c in cases if c.family == family.name}
        assert outcomes == {True, False}, f"{family.name} is never {not outcomes.pop()}"
    assert {(c.action, c.match) for c in cases if c.allow} == {
        ("subscribe", "exact"),
        ("subscribe", "missing"),
    }


def _report(mismatches: list[str], total: int) -> None:
    mismatches.sort()
    for line in mismatches:
        print(line)
    assert not mismatches, (
        f"{len(mismatches)} of {total} decisions differ from DESIGN.md:\n" + "\n".join(mismatches)
    )


async def test_matrix_through_authorize(engine: AsyncEngine, access_world: AccessWorld) -> None:
    """authorize() answers every case of the matrix as DESIGN.md's table says."""
    cases = matrix(access_world)
    mismatches: list[str] = []
    async with session_factory(engine)() as db:
        users: dict[int | None, User | None] = {None: None}
        for v in {c.viewer for c in cases if c.viewer.id is not None}:
            users[v.id] = await db.get(User, v.id)
        for case in cases:
            user = users[case.viewer.id]
            got = await authorize(db, user, case.topic, case.action, dict(MATCHES[case.match]))
            if got is not case.allow:
                mismatches.append(f"{case} (got {got!r})")
    _report(mismatches, len(cases))


async def test_matrix_through_authorizer_procedure(
    engine: AsyncEngine, access_world: AccessWorld
) -> None:
    """The WAMP procedure answers every case of the matrix, from the session's authid alone."""
    procedure = Authorizer(session_factory(engine))
    cases = matrix(access_world)
    mismatches: list[str] = []
    # Crossbar calls the procedure concurrently too; a few at a time also keeps this quick.
    limit = asyncio.Semaphore(8)

    async def check(case: Case) -> None:
        authid = str(case.viewer.id if case.viewer.id is not None else UNKNOWN_ID)
        session = {"session": 1, "authid": authid, "authrole": names.ROLE_BROWSER}
        async with limit:
            got = await procedure(session, case.topic, case.action, dict(MATCHES[case.match]))
        if got != {"allow": case.allow, "disclose": False}:
            mismatches.append(f"{case} (got {got!r})")

    await asyncio.gather(*(check(case) for case in cases))
    _report(mismatches, len(cases))

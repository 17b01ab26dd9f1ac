"""A small world for access decisions: the demo course plus a second course,
submissions on both, and an inactive account."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.demo import load_demo_data
from herald.models import Assignment, Course, CourseRole, Enrolment, Submission, User


@dataclass(frozen=True)
class World:
    users: dict[str, User]
    demo_course: int
    other_course: int
    demo_assignment: int
    other_assignment: int
    alice_submission: int
    bob_submission: int
    carol_submission: int

    def uid(self, name: str) -> int:
        return self.users[name].id


def _submission(assignment_id: int, student_id: int) -> Submission:
    return Submission(
        assignment_id=assignment_id,
        student_id=student_id,
        filename="essay.txt",
        content_type="text/plain",
        size=1,
        sha256="0" * 64,
        upload_path="/dev/null",
    )


async def build_world(sessions: async_sessionmaker[AsyncSession]) -> World:
    """Demo data, course OTHER with student carol, and inactive student zed in DEMO101."""
    await load_demo_data(sessions, "demo")
    async with sessions.begin() as db:
        users = {u.username: u for u in (await db.scalars(select(User))).all()}
        demo_course = await db.scalar(select(Course).where(Course.code == "DEMO101"))
        demo_assignment = await db.scalar(select(Assignment))
        assert demo_course is not None and demo_assignment is not None
        other = Course(code="OTHER", title="Another course")
        other_assignment = Assignment(course=other, title="Other essay")
        carol = User(username="carol", display_name="Carol", password_hash="x")
        zed = User(username="zed", display_name="Zed", password_hash="x", is_active=False)
        db.add_all([other, other_assignment, carol, zed])
        db.add(Enrolment(user=carol, course=other, role=CourseRole.STUDENT))
        db.add(Enrolment(user=zed, course=demo_course, role=CourseRole.STUDENT))
        await db.flush()
        subs = [
            _submission(demo_assignment.id, users["alice"].id),
            _submission(demo_assignment.id, users["bob"].id),
            _submission(other_assignment.id, carol.id),
        ]
        db.add_all(subs)
        await db.flush()
        users |= {"carol": carol, "zed": zed}
        return World(
            users=users,
            demo_course=demo_course.id,
            other_course=other.id,
            demo_assignment=demo_assignment.id,
            other_assignment=other_assignment.id,
            alice_submission=subs[0].id,
            bob_submission=subs[1].id,
            carol_submission=subs[2].id,
        )


# --- A richer world for the access matrix ------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What the database holds about people and things, read back as plain data:
    the input of the tests' own reading of DESIGN.md's topic table."""

    users: dict[int, User]
    courses: frozenset[int]
    # (user id, course id) -> the user's role in that course
    roles: dict[tuple[int, int], CourseRole]
    # assignment id -> its course id
    assignments: dict[int, int]
    # submission id -> (owner id, course id)
    submissions: dict[int, tuple[int, int]]

    def courses_of(self, user_id: int) -> frozenset[int]:
        return frozenset(course for (user, course) in self.roles if user == user_id)

    def role(self, user_id: int, course_id: int) -> CourseRole | None:
        return self.roles.get((user_id, course_id))


@dataclass(frozen=True)
class AccessWorld:
    """:class:`World` plus the users who make access decisions interesting, and its facts."""

    world: World
    facts: Facts

    def uid(self, name: str) -> int:
        return self.world.uid(name)


# username -> (is_admin, is_active, {course: role}); "demo" is DEMO101, "other" is OTHER.
EXTRA_USERS: dict[str, tuple[bool, bool, dict[str, CourseRole]]] = {
    "dual": (False, True, {"demo": CourseRole.STUDENT, "other": CourseRole.STUDENT}),
    "otto": (False, True, {"other": CourseRole.MARKER}),
    # A student here who marks there must not mark here.
    "tess": (False, True, {"demo": CourseRole.STUDENT, "other": CourseRole.MARKER}),
    # Course-role admin without the site-wide is_admin flag.
    "cora": (False, True, {"demo": CourseRole.ADMIN}),
    # Site admin power must come from is_admin, not from any enrolment.
    "sam": (True, True, {}),
    # A deactivated site admin keeps the flag in the DB but must lose everything.
    "old": (True, False, {"demo": CourseRole.ADMIN}),
    "nemo": (False, True, {}),
}


async def read_facts(sessions: async_sessionmaker[AsyncSession]) -> Facts:
    """Everything an access decision depends on, as plain dicts."""
    async with sessions() as db:
        users = {u.id: u for u in (await db.scalars(select(User))).all()}
        courses = frozenset((await db.scalars(select(Course.id))).all())
        roles = {
            (user, course): role
            for user, course, role in (
                await db.execute(select(Enrolment.user_id, Enrolment.course_id, Enrolment.role))
            ).all()
        }
        assignments = {
            aid: course
            for aid, course in (await db.execute(select(Assignment.id, Assignment.course_id))).all()
        }
        submissions = {
            sid: (owner, course)
            for sid, owner, course in (
                await db.execute(
                    select(Submission.id, Submission.student_id, Assignment.course_id).join(
                        Assignment, Assignment.id == Submission.assignment_id
                    )
                )
            ).all()
        }
    return Facts(users, courses, roles, assignments, submissions)


async def build_access_world(sessions: async_sessionmaker[AsyncSession]) -> AccessWorld:
    """:func:`build_world` plus :data:`EXTRA_USERS`, and submissions by zed (inactive,
    DEMO101) and dual (OTHER), so every viewer has own, same-course and unrelated things."""
    world = await build_world(sessions)
    course_ids = {"demo": world.demo_course, "other": world.other_course}
    async with sessions.begin() as db:
        extra: dict[str, User] = {}
        for name, (is_admin, is_active, enrolments) in EXTRA_USERS.items():
            user = User(
                username=name,
                display_name=name.title(),
                password_hash="x",
                is_admin=is_admin,
                is_active=is_active,
            )
            extra[name] = user
            db.add(user)
            for course, role in enrolments.items():
                db.add(Enrolment(user=user, course_id=course_ids[course], role=role))
        await db.flush()
        db.add_all(
            [
                _submission(world.demo_assignment, world.uid("zed")),
                _submission(world.other_assignment, extra["dual"].id),
            ]
        )
    world = replace(world, users=world.users | extra)
    return AccessWorld(world=world, facts=await read_facts(sessions))

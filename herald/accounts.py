"""Changes to who someone is and what they may see: disable and enable accounts,
enrol and unenrol, grant and revoke site admin.

Every change that takes a right away is committed first and then announced
(herald.access_events), so router auth drops its cached decisions and kills the
live WAMP sessions that were authorised under the old rights.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.access_events import AccessEvent, AccessEventKind, announce
from herald.logs import get_logger
from herald.models import Course, CourseRole, Enrolment, User
from herald.sessions import SessionStore

__all__ = ["AccountError", "Accounts"]

log = get_logger(__name__)


class AccountError(LookupError):
    """An unknown user or course, or a change that does not apply; the message is for people."""


@dataclass(frozen=True)
class Accounts:
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    store: SessionStore

    async def set_active(self, username: str, active: bool) -> None:
        """Enable or disable an account; disabling signs it out everywhere at once."""
        async with self.sessions.begin() as db:
            user = await _user(db, username)
            user.is_active = active
            user_id = user.id
        if active:
            log.info("account enabled", user_id=user_id)
            return
        ended = await self.store.end_all(user_id)
        await announce(self.redis, AccessEvent(AccessEventKind.DISABLED, user_id))
        log.info("account disabled", user_id=user_id, web_sessions_ended=ended)

    async def set_admin(self, username: str, admin: bool) -> None:
        async with self.sessions.begin() as db:
            user = await _user(db, username)
            changed = user.is_admin != admin
            user.is_admin = admin
            user_id = user.id
        if changed and not admin:
            await self._access_changed(user_id)

    async def enrol(self, username: str, course_code: str, role: CourseRole) -> None:
        """Enrol in a course with ``role``, or change the role of an existing enrolment."""
        async with self.sessions.begin() as db:
            user, course, enrolment = await _enrolment(db, username, course_code)
            previous = enrolment.role if enrolment is not None else None
            if enrolment is None:
                db.add(Enrolment(user_id=user.id, course_id=course.id, role=role))
            else:
                enrolment.role = role
            user_id = user.id
        if previous is not None and previous != role:
            # A marker made a student must lose the submissions they were watching.
            await self._access_changed(user_id)

    async def unenrol(self, username: str, course_code: str) -> None:
        async with self.sessions.begin() as db:
            user, _course, enrolment = await _enrolment(db, username, course_code)
            if enrolment is None:
                raise AccountError(f"{username!r} is not enrolled in {course_code!r}")
            await db.delete(enrolment)
            user_id = user.id
        await self._access_changed(user_id)

    async def _access_changed(self, user_id: int) -> None:
        await announce(self.redis, AccessEvent(AccessEventKind.ACCESS_CHANGED, user_id))


async def _user(db: AsyncSession, username: str) -> User:
    user = await db.scalar(select(User).where(User.username == username))
    if user is None:
        raise AccountError(f"no user {username!r}")
    return user


async def _course(db: AsyncSession, code: str) -> Course:
    course = await db.scalar(select(Course).where(Course.code == code))
    if course is None:
        raise AccountError(f"no course with code {code!r}")
    return course


async def _enrolment(
    db: AsyncSession, username: str, course_code: str
) -> tuple[User, Course, Enrolment | None]:
    user = await _user(db, username)
    course = await _course(db, course_code)
    enrolment = await db.scalar(
        select(Enrolment).where(Enrolment.user_id == user.id, Enrolment.course_id == course.id)
    )
    return user, course, enrolment

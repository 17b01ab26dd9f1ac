"""``herald user add | disable | enable | enrol | unenrol | admin``: accounts from a shell.

Changes that take a right away reach live browsers at once: see herald.accounts.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable

from herald.settings import Settings

__all__ = ["add_user_commands"]

MIN_PASSWORD_LENGTH = 4
ROLES = ("student", "marker", "admin")


def _cmd_add(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from herald.db import create_engine, session_factory
    from herald.models import Course, CourseRole, Enrolment, User
    from herald.passwords import hash_password

    password = args.password or getpass.getpass(f"Password for {args.username}: ")
    if len(password) < MIN_PASSWORD_LENGTH:
        print(
            f"herald user add: password too short (at least {MIN_PASSWORD_LENGTH} characters)",
            file=sys.stderr,
        )
        return 2

    async def add() -> str | None:
        engine = create_engine(settings)
        try:
            async with session_factory(engine).begin() as db:
                # Every check before the first add: returning inside this block commits.
                if await db.scalar(select(User.id).where(User.username == args.username)):
                    return f"user {args.username!r} already exists"
                course = None
                if args.course:
                    course = await db.scalar(select(Course).where(Course.code == args.course))
                    if course is None:
                        return f"no course with code {args.course!r}"
                user = User(
                    username=args.username,
                    display_name=args.name or args.username,
                    email=args.email,
                    password_hash=hash_password(password),
                    is_admin=args.admin,
                )
                db.add(user)
                if course is not None:
                    db.add(Enrolment(user=user, course=course, role=CourseRole(args.role)))
            return None
        finally:
            await engine.dispose()

    error = asyncio.run(add())
    if error:
        print(f"herald user add: {error}", file=sys.stderr)
        return 1
    print(f"user {args.username} added")
    return 0


def _run_change(settings: Settings, change: Callable[..., Awaitable[None]], done: str) -> int:
    """Run one account change with the DB and Redis; an AccountError becomes exit code 1."""
    from redis.asyncio import Redis

    from herald.accounts import AccountError, Accounts
    from herald.db import create_engine, session_factory
    from herald.sessions import SessionStore

    async def main() -> None:
        redis = Redis.from_url(settings.redis_url)
        engine = create_engine(settings)
        try:
            store = SessionStore(
                redis,
                session_ttl=settings.session_ttl_seconds,
                ticket_ttl=settings.ticket_ttl_seconds,
            )
            await change(Accounts(session_factory(engine), redis, store))
        finally:
            await redis.aclose()
            await engine.dispose()

    try:
        asyncio.run(main())
    except AccountError as exc:
        print(f"herald: {exc.args[0]}", file=sys.stderr)
        return 1
    print(done)
    return 0


def _cmd_disable(settings: Settings, args: argparse.Namespace) -> int:
    return _run_change(
        settings,
        lambda accounts: accounts.set_active(args.username, False),
        f"user {args.username} disabled and signed out everywhere",
    )


def _cmd_enable(settings: Settings, args: argparse.Namespace) -> int:
    return _run_change(
        settings,
        lambda accounts: accounts.set_active(args.username, True),
        f"user {args.username} enabled",
    )


def _cmd_enrol(settings: Settings, args: argparse.Namespace) -> int:
    from herald.models import CourseRole

    return _run_change(
        settings,
        lambda accounts: accounts.enrol(args.username, args.course, CourseRole(args.role)),
        f"user {args.username} is {args.role} in {args.course}",
    )


def _cmd_unenrol(settings: Settings, args: argparse.Namespace) -> int:
    return _run_change(
        settings,
        lambda accounts: accounts.unenrol(args.username, args.course),
        f"user {args.username} removed from {args.course}",
    )


def _cmd_admin(settings: Settings, args: argparse.Namespace) -> int:
    admin = args.state == "on"
    return _run_change(
        settings,
        lambda accounts: accounts.set_admin(args.username, admin),
        f"user {args.username} is {'now' if admin else 'no longer'} a site admin",
    )


def add_user_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = sub.add_parser("user", help="manage users")
    actions = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="add a user")
    add.add_argument("username")
    add.add_argument("--name", help="display name")
    add.add_argument("--email")
    add.add_argument("--password", help="omit to be prompted")
    add.add_argument("--admin", action="store_true", help="site administrator")
    add.add_argument("--course", help="enrol in the course with this code")
    add.add_argument("--role", default="student", choices=ROLES)
    add.set_defaults(func=_cmd_add)

    disable = actions.add_parser("disable", help="disable an account and sign it out everywhere")
    disable.add_argument("username")
    disable.set_defaults(func=_cmd_disable)

    enable = actions.add_parser("enable", help="enable a disabled account")
    enable.add_argument("username")
    enable.set_defaults(func=_cmd_enable)

    enrol = actions.add_parser("enrol", help="enrol in a course, or change the role in it")
    enrol.add_argument("username")
    enrol.add_argument("course", help="course code")
    enrol.add_argument("--role", default="student", choices=ROLES)
    enrol.set_defaults(func=_cmd_enrol)

    unenrol = actions.add_parser("unenrol", help="remove from a course")
    unenrol.add_argument("username")
    unenrol.add_argument("course", help="course code")
    unenrol.set_defaults(func=_cmd_unenrol)

    admin = actions.add_parser("admin", help="grant or revoke site admin")
    admin.add_argument("username")
    admin.add_argument("state", choices=("on", "off"))
    admin.set_defaults(func=_cmd_admin)

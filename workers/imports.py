"""``import.users``: users and enrolments from a CSV file, every row checked, the good
ones imported, and a report per row as the task's output.

The file (UTF-8, a byte-order mark allowed) starts with a header row naming its
columns, in any order and case (``display name`` = ``display_name``):

| column | required | rule |
|---|---|---|
| ``username`` | yes | 1–64 letters, digits, ``. _ - @``, starting with a letter or digit |
| ``display_name`` | yes | 1–200 characters |
| ``course_code`` | yes | an existing course (case does not matter) |
| ``role`` | yes | ``student``, ``marker`` or ``admin`` (a course admin, never a site admin) |
| ``email`` | no | an address like ``name@example.ac.uk`` |
| ``password`` | no | 8–200 characters; applied only to an account without a usable password |

A user may have several rows, one per course; the rows must agree on name, email
and password. A row is imported when every check passes: the user is created if
new, their display name and email brought up to date, and the enrolment added if
missing. An existing enrolment's role is never changed (that takes access away
from live sessions; ``herald user enrol`` does it properly), so a row asking for
another role is an error. Re-running the same file changes nothing.

Passwords: a user created without one gets no usable password (a marker no
password matches), so nobody can sign in as them until a later import row (or an
operator) gives them one; an import never replaces a usable password. Passwords
are hashed at once and never written to the report or the logs.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sqlalchemy import select

from herald.models import Course, CourseRole, Enrolment, TaskStatus, User
from herald.passwords import hash_password
from workers.catalog import CATALOG, IMPORT_USERS, IMPORTS_FOLDER, upload_name_ok
from workers.completion import CompletionHooks
from workers.context import Services, TaskContext, TaskRun
from workers.csvfiles import write_csv
from workers.kinds import Outcome, TaskFailed, TaskKind, register
from workers.outputs import new_output_path

__all__ = [
    "COLUMNS",
    "MAX_ROWS",
    "REQUIRED",
    "UNUSABLE_PASSWORD",
    "HeaderError",
    "import_users",
    "read_header",
]

REQUIRED: Final = ("username", "display_name", "course_code", "role")
COLUMNS: Final = (*REQUIRED, "email", "password")
MAX_ROWS: Final = 20_000
BATCH: Final = 200  # rows per transaction, and per progress report
MIN_PASSWORD, MAX_PASSWORD = 8, 200
# No argon2 hash starts with "!": verify_password answers False for any password.
UNUSABLE_PASSWORD: Final = "!no-password"  # noqa: S105 - a marker no password matches
_USERNAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}", re.ASCII)
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
REPORT_HEADER: Final = ("row", "username", "result", "message")


class HeaderError(ValueError):
    """The file's first row does not name the columns an import needs."""


def _column(name: str) -> str:
    return re.sub(r"[\s-]+", "_", name.strip().lower())


def read_header(cells: Sequence[str]) -> list[str]:
    """The normalised column names of a header row; :class:`HeaderError` says what is wrong."""
    names = [_column(cell) for cell in cells]
    unknown = [cells[i] for i, name in enumerate(names) if name not in COLUMNS]
    if unknown:
        raise HeaderError(
            f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"the columns are {', '.join(COLUMNS)}"
        )
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise HeaderError(
            f"the header row lacks {', '.join(missing)} (columns: {', '.join(COLUMNS)})"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise HeaderError(f"column {', '.join(repeated)} appears twice")
    return names


@dataclass
class Row:
    number: int  # as a spreadsheet numbers it: the header is row 1
    values: dict[str, str]
    errors: list[str] = field(default_factory=list)
    result: str = ""
    message: str = ""

    @property
    def username(self) -> str:
        return self.values.get("username", "")


def _check_fields(row: Row, cells: list[str], names: list[str]) -> None:
    if len(cells) > len(names) and any(cell.strip() for cell in cells[len(names) :]):
        row.errors.append("more cells than columns")
    values = {name: cells[i].strip() if i < len(cells) else "" for i, name in enumerate(names)}
    row.values = values
    missing = [name for name in REQUIRED if not values.get(name)]
    if missing:
        row.errors.append(f"missing {', '.join(missing)}")
    username = values.get("username", "")
    if username and not _USERNAME.fullmatch(username):
        row.errors.append(
            "bad username (1–64 letters, digits, . _ - @, starting with a letter or digit)"
        )
    if len(values.get("display_name", "")) > 200:
        row.errors.append("display name longer than 200 characters")
    email = values.get("email", "")
    if email and (len(email) > 320 or not _EMAIL.fullmatch(email)):
        row.errors.append(f"bad email {email!r}")
    role = values.get("role", "").lower()
    values["role"] = role
    if role and role not in {r.value for r in CourseRole}:
        row.errors.append(f"bad role {values['role']!r} (student, marker or admin)")
    password = values.get("password", "")
    if password and not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        row.errors.append(f"password must be {MIN_PASSWORD}–{MAX_PASSWORD} characters")


def parse(text: str) -> list[Row]:
    """Every data row with its field errors; :class:`HeaderError` for a bad header."""
    records = csv.reader(io.StringIO(text, newline=""))
    header = next(records, None)
    if header is None:
        raise HeaderError("the file is empty")
    names = read_header(header)
    rows: list[Row] = []
    for number, cells in enumerate(records, 2):
        if not any(cell.strip() for cell in cells):
            continue  # a blank line is no row
        if len(rows) >= MAX_ROWS:
            raise HeaderError(f"the file has more than {MAX_ROWS} rows; split it")
        row = Row(number, {})
        _check_fields(row, cells, names)
        rows.append(row)
    if not rows:
        raise HeaderError("the file has no rows below its header")
    return rows


def _check_consistency(rows: list[Row], courses: dict[str, Course]) -> None:
    """Across rows: courses exist, no enrolment twice, one user's rows agree."""
    seen: dict[tuple[str, int], int] = {}
    first: dict[str, Row] = {}
    for row in rows:
        code = row.values.get("course_code", "")
        course = courses.get(code.casefold())
        if code and course is None:
            row.errors.append(f"unknown course {code!r}")
        if row.errors:
            continue
        assert course is not None
        key = (row.username, course.id)
        if key in seen:
            row.errors.append(f"duplicate of row {seen[key]}")
            continue
        seen[key] = row.number
        earlier = first.setdefault(row.username, row)
        for name, label in (("display_name", "display name"), ("email", "email")):
            if row.values.get(name, "") != earlier.values.get(name, ""):
                row.errors.append(f"{label} differs from row {earlier.number} for this user")
        if row.values.get("password", "") != earlier.values.get("password", ""):
            row.errors.append(f"password differs from row {earlier.number} for this user")


async def _existing(ctx: TaskContext, rows: list[Row]) -> tuple[dict[str, Course], dict[str, User]]:
    """The courses, and the users the rows name that exist already."""
    usernames = sorted({row.username for row in rows if row.username})
    async with ctx.sessions() as db:
        courses = {c.code.casefold(): c for c in (await db.scalars(select(Course))).all()}
        users: dict[str, User] = {}
        for start in range(0, len(usernames), BATCH):
            chunk = usernames[start : start + BATCH]
            found = await db.scalars(select(User).where(User.username.in_(chunk)))
            users.update({user.username: user for user in found})
    return courses, users


def _password_hashes(rows: list[Row], users: dict[str, User]) -> dict[str, str]:
    """Hashes of the passwords that will be set (blocking: argon2 is slow on purpose)."""
    wanted = {}
    for row in rows:
        password = row.values.get("password", "")
        user = users.get(row.username)
        if password and (user is None or user.password_hash.startswith("!")):
            wanted[row.username] = password
    return {username: hash_password(password) for username, password in wanted.items()}


async def _apply(ctx: TaskContext, rows: list[Row], courses: dict[str, Course]) -> None:
    """Import one batch of good rows in one transaction, setting each row's result."""
    async with ctx.sessions.begin() as db:
        names = sorted({row.username for row in rows})
        users = {
            u.username: u for u in await db.scalars(select(User).where(User.username.in_(names)))
        }
        hashes = await asyncio.to_thread(_password_hashes, rows, users)
        for row in rows:
            values = row.values
            course = courses[values["course_code"].casefold()]
            role = CourseRole(values["role"])
            user = users.get(row.username)
            changes = []
            if user is None:
                user = User(
                    username=row.username,
                    display_name=values["display_name"],
                    email=values.get("email") or None,
                    password_hash=hashes.get(row.username, UNUSABLE_PASSWORD),
                )
                db.add(user)
                await db.flush()
                users[row.username] = user
                row.result = "created"
                changes.append(
                    "user created" + ("" if row.username in hashes else " without a password")
                )
            else:
                if user.display_name != values["display_name"]:
                    user.display_name = values["display_name"]
                    changes.append("display name changed")
                if values.get("email") and user.email != values["email"]:
                    user.email = values["email"]
                    changes.append("email changed")
                if row.username in hashes and user.password_hash.startswith("!"):
                    user.password_hash = hashes[row.username]
                    changes.append("password set")
            enrolment = await db.scalar(
                select(Enrolment).where(
                    Enrolment.user_id == user.id, Enrolment.course_id == course.id
                )
            )
            if enrolment is None:
                db.add(Enrolment(user_id=user.id, course_id=course.id, role=role))
                changes.append(f"enrolled as {role} in {course.code}")
            elif enrolment.role != role:
                # Checked before this batch; a concurrent change lands here.
                row.result, row.message = "error", _role_conflict(enrolment.role, course.code)
                continue
            if not row.result:
                row.result = "updated" if changes else "unchanged"
            row.message = "; ".join(changes) or f"already {role} in {course.code}"


def _role_conflict(role: CourseRole, code: str) -> str:
    return f"already {role} in {code}; change roles with `herald user enrol`"


async def _check_roles(
    ctx: TaskContext, rows: list[Row], courses: dict[str, Course], users: dict[str, User]
) -> None:
    ids = sorted({users[row.username].id for row in rows if row.username in users})
    roles: dict[tuple[int, int], CourseRole] = {}
    async with ctx.sessions() as db:
        for start in range(0, len(ids), BATCH):
            found = await db.execute(
                select(Enrolment.user_id, Enrolment.course_id, Enrolment.role).where(
                    Enrolment.user_id.in_(ids[start : start + BATCH])
                )
            )
            roles.update({(u, c): role for u, c, role in found})
    for row in rows:
        user = users.get(row.username)
        if row.errors or user is None:
            continue
        course = courses[row.values["course_code"].casefold()]
        existing = roles.get((user.id, course.id))
        if existing is not None and existing != row.values["role"]:
            row.errors.append(_role_conflict(existing, course.code))


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TaskFailed(
            "the file is not UTF-8 text; save it from the spreadsheet as “CSV UTF-8”"
        ) from None


async def import_users(ctx: TaskContext) -> Outcome:
    """Check every row, import the good ones, write the per-row report."""
    upload = ctx.params.get("upload")
    if not isinstance(upload, str) or not upload_name_ok(upload):
        raise TaskFailed("upload must name an uploaded file")
    source = ctx.settings.var_dir / IMPORTS_FOLDER / upload
    try:
        data = await asyncio.to_thread(source.read_bytes)
    except FileNotFoundError:
        raise TaskFailed(
            f"the uploaded file is gone (uploads are kept {ctx.settings.output_retention_days} "
            "days); upload it again"
        ) from None
    try:
        rows = parse(_decode(data))
    except HeaderError as exc:
        raise TaskFailed(str(exc)) from None
    await ctx.progress(10, f"checking {len(rows)} rows")
    courses, users = await _existing(ctx, rows)
    _check_consistency(rows, courses)
    await _check_roles(ctx, rows, courses, users)
    good = [row for row in rows if not row.errors]
    for row in rows:
        if row.errors:
            row.result, row.message = "error", "; ".join(row.errors)
    await ctx.progress(30, f"{len(good)} of {len(rows)} rows are good; importing")
    for start in range(0, len(good), BATCH):
        if ctx.cancelled:
            raise asyncio.CancelledError
        await _apply(ctx, good[start : start + BATCH], courses)
        done = min(start + BATCH, len(good))
        await ctx.progress(30 + 65 * done / len(good), f"{done} of {len(good)} rows imported")
    original = ctx.params.get("filename")
    stem = Path(original).stem if isinstance(original, str) and original else "users"
    path = new_output_path(ctx, f"{stem}-import-report.csv")
    report = [(row.number, row.username, row.result, row.message) for row in rows]
    await asyncio.to_thread(write_csv, path, REPORT_HEADER, report)
    counts = {
        name: sum(1 for row in rows if row.result == name)
        for name in ("created", "updated", "unchanged", "error")
    }
    detail = ", ".join(f"{count} {name}" for name, count in counts.items() if name != "error")
    detail += f", {counts['error']} error{'s' if counts['error'] != 1 else ''}"
    return Outcome(detail=detail, result={"rows": len(rows), **counts}, output=path)


class ImportHooks(CompletionHooks):
    """The owner's message, and the uploaded file deleted once the import is done (it
    may hold passwords); a failed import keeps it for a retry until the purge."""

    async def after_settled(
        self, run: TaskRun, outcome: Outcome | None, services: Services
    ) -> None:
        await super().after_settled(run, outcome, services)
        upload = run.params.get("upload")
        if run.status == TaskStatus.DONE and isinstance(upload, str) and upload_name_ok(upload):
            (services.settings.var_dir / IMPORTS_FOLDER / upload).unlink(missing_ok=True)


register(
    TaskKind(
        IMPORT_USERS,
        "io",
        import_users,
        label=CATALOG[IMPORT_USERS].label,
        max_attempts=3,
        retry_base=5.0,
        hooks=ImportHooks(),
    )
)

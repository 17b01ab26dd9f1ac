"""The task kinds people may submit themselves (through ``POST /api/tasks`` and the
pages), who may submit each, and the checking of their parameters.

Every other kind (pipeline steps, grade releases, diagnostics) is submitted only by
Herald itself or an operator's shell. Who may run a kind is its ``audience``:

- ``admin``: site admins only;
- ``staff``: the markers and course admins (``herald.models.STAFF_ROLES``) of the
  course of the assignment the parameters name, and site admins;
- ``anyone``: every signed-in user.

:func:`check_request` is the one gate: it answers the cleaned parameters to record,
or raises a :class:`CatalogError` whose message is for a person.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from herald.access import course_role
from herald.models import STAFF_ROLES, Assignment, Course, Enrolment, User
from herald.names import MAX_ROW_ID

if TYPE_CHECKING:
    from herald.settings import Settings

__all__ = [
    "CATALOG",
    "EXPORT_SUBMISSIONS",
    "GRADES_REPORT",
    "IMPORTS_FOLDER",
    "IMPORT_USERS",
    "PURGE_OUTPUTS",
    "QUEUE_STATS_REPORT",
    "SIMILARITY_REPORT",
    "AssignmentChoice",
    "BadParams",
    "CatalogError",
    "NotAllowed",
    "NotSubmittable",
    "Param",
    "UserKind",
    "check_request",
    "kinds_for",
    "staff_assignments",
    "upload_name_ok",
    "user_kind",
]

GRADES_REPORT: Final = "reports.grades"
SIMILARITY_REPORT: Final = "reports.similarity"
QUEUE_STATS_REPORT: Final = "reports.queue_stats"
IMPORT_USERS: Final = "import.users"
EXPORT_SUBMISSIONS: Final = "export.submissions"
PURGE_OUTPUTS: Final = "outputs.purge"

# Uploaded import files wait in ``settings.var_dir / IMPORTS_FOLDER`` under a random
# name; a task names its file by that name only, never by a path.
IMPORTS_FOLDER: Final = "imports"
_UPLOAD_NAME: Final = re.compile(r"[0-9a-f]{32}\.csv", re.ASCII)
MAX_TEXT: Final = 150

Audience = Literal["admin", "staff", "anyone"]
ParamType = Literal["assignment", "choice", "integer", "upload", "text"]


class CatalogError(ValueError):
    """A task request that cannot be honoured; ``str(error)`` is for a person."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class NotSubmittable(CatalogError):
    """Unknown kind, or one people do not submit themselves."""

    status, code = 400, "not_submittable"


class NotAllowed(CatalogError):
    """This user may not run this kind (with these parameters)."""

    status, code = 403, "forbidden"


class BadParams(CatalogError):
    """The parameters are missing, of the wrong type, or name nothing that exists."""

    status, code = 400, "bad_params"


@dataclass(frozen=True)
class Param:
    """One parameter of a kind, as a form field and as a JSON value.

    ``assignment``: an assignment id (for a ``staff`` kind, the course is its course);
    ``choice``: one of ``choices`` (the first is the default);
    ``integer``: ``minimum``..``maximum``, ``default`` when absent;
    ``upload``: the name of a file waiting in ``var/imports`` (see :data:`IMPORTS_FOLDER`);
    ``text``: a short line for people (e.g. the uploaded file's original name).
    """

    name: str
    label: str
    type: ParamType
    required: bool = True
    choices: tuple[str, ...] = ()
    minimum: int = 0
    maximum: int = MAX_ROW_ID
    default: int | str | None = None


@dataclass(frozen=True)
class UserKind:
    """A kind people may submit: who may, what it asks for, how to speak of it."""

    name: str
    label: str
    audience: Audience
    description: str
    params: tuple[Param, ...] = ()
    # Completion messages say "Your {noun} for Essay 1 is ready".
    noun: str = "task"
    # Where pages offer it: "report" and "export" on /reports, "import" on
    # /admin/import, "maintenance" on /reports for admins.
    group: Literal["report", "export", "import", "maintenance"] = "report"

    def __post_init__(self) -> None:
        if self.audience == "staff" and self.course_param is None:
            raise ValueError(f"{self.name}: a staff kind needs an assignment parameter")

    @property
    def course_param(self) -> str | None:
        """The parameter whose assignment's course decides who counts as staff."""
        return next((p.name for p in self.params if p.type == "assignment"), None)


_ASSIGNMENT = Param("assignment_id", "Assignment", "assignment")

CATALOG: Final[dict[str, UserKind]] = {
    kind.name: kind
    for kind in (
        UserKind(
            GRADES_REPORT,
            "Grades report",
            "staff",
            "Every submission of an assignment with its status, grade and release time (CSV).",
            (_ASSIGNMENT,),
            noun="grades report",
        ),
        UserKind(
            SIMILARITY_REPORT,
            "Similarity overview",
            "staff",
            "Each submission's similarity score and closest matches, as the plagiarism "
            "step recorded them (CSV or PDF).",
            (_ASSIGNMENT, Param("format", "Format", "choice", choices=("csv", "pdf"))),
            noun="similarity overview",
        ),
        UserKind(
            EXPORT_SUBMISSIONS,
            "Submissions export",
            "staff",
            "An assignment's processed files in a zip, a folder per student, with a "
            "manifest (CSV).",
            (_ASSIGNMENT,),
            noun="submissions export",
            group="export",
        ),
        UserKind(
            QUEUE_STATS_REPORT,
            "Queue and task statistics",
            "admin",
            "Per queue and kind: tasks by status and run time (median, 95th percentile) "
            "over the last days (CSV).",
            (Param("days", "Days", "integer", required=False, minimum=1, maximum=366, default=7),),
            noun="queue statistics report",
        ),
        UserKind(
            IMPORT_USERS,
            "Bulk import of users",
            "admin",
            "Users and enrolments from a CSV file; every row checked, the good ones "
            "imported, a report per row.",
            (
                Param("upload", "File", "upload"),
                Param("filename", "Original file name", "text", required=False),
            ),
            noun="user import",
            group="import",
        ),
        UserKind(
            PURGE_OUTPUTS,
            "Purge old outputs",
            "admin",
            "Deletes task outputs older than the retention period now (it also runs daily).",
            noun="output purge",
            group="maintenance",
        ),
    )
}


def user_kind(name: str) -> UserKind | None:
    """The catalog entry of ``name``, or ``None`` for a kind people do not submit."""
    return CATALOG.get(name)


def kinds_for(user: User) -> list[UserKind]:
    """The kinds a page may offer ``user``: admin-only ones only to site admins.

    A ``staff`` kind is listed for everyone else too; whether they are staff of
    any course is for the page to find out (:func:`staff_assignments`).
    """
    return [kind for kind in CATALOG.values() if user.is_admin or kind.audience != "admin"]


def upload_name_ok(name: str) -> bool:
    """Whether ``name`` is the form of a stored import file's name."""
    return _UPLOAD_NAME.fullmatch(name) is not None


def _integer(param: Param, raw: object) -> int:
    if isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
        raw = int(raw.strip())
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise BadParams(f"{param.label} must be a whole number.")
    if not param.minimum <= raw <= param.maximum:
        raise BadParams(f"{param.label} must be from {param.minimum} to {param.maximum}.")
    return raw


def _text(param: Param, raw: object) -> str:
    if not isinstance(raw, str):
        raise BadParams(f"{param.label} must be text.")
    # One line of printable text: it is shown on pages and in messages.
    cleaned = "".join(ch for ch in raw if unicodedata.category(ch)[0] != "C").strip()
    return cleaned[:MAX_TEXT]


def _clean(param: Param, raw: object, settings: Settings | None) -> object:
    if param.type == "assignment":
        return _integer(Param(param.name, param.label, "integer", minimum=1), raw)
    if param.type == "integer":
        return _integer(param, raw)
    if param.type == "choice":
        if raw not in param.choices:
            raise BadParams(f"{param.label} must be one of: {', '.join(param.choices)}.")
        return raw
    if param.type == "upload":
        if not isinstance(raw, str) or not upload_name_ok(raw):
            raise BadParams(f"{param.label} must name an uploaded file.")
        if settings is not None and not (settings.var_dir / IMPORTS_FOLDER / raw).is_file():
            raise BadParams("The uploaded file is no longer there; please upload it again.")
        return raw
    return _text(param, raw)


async def _check_staff(db: AsyncSession, user: User, assignment_id: int) -> None:
    course_id = await db.scalar(select(Assignment.course_id).where(Assignment.id == assignment_id))
    if user.is_admin:
        if course_id is None:
            raise BadParams(f"There is no assignment {assignment_id}.")
        return
    # An assignment outside the user's courses is not disclosed: it gets the same
    # answer as one that does not exist.
    if course_id is None or await course_role(db, user.id, course_id) not in STAFF_ROLES:
        raise NotAllowed("Only the course's markers may run this for that assignment.")


async def check_request(
    db: AsyncSession,
    user: User,
    kind: str,
    params: object,
    *,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """The cleaned parameters of ``kind`` for ``user`` to submit; raises
    :class:`NotSubmittable`, :class:`NotAllowed` or :class:`BadParams`.

    With ``settings``, an ``upload`` parameter must also name a file that is there.
    """
    spec = CATALOG.get(kind)
    if spec is None:
        raise NotSubmittable(f"Tasks of kind {kind!r} cannot be submitted here.")
    if spec.audience == "admin" and not user.is_admin:
        raise NotAllowed(f"Only site admins may run the {spec.label.lower()}.")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise BadParams("params must be a JSON object.")
    known = {param.name for param in spec.params}
    unknown = sorted(str(name) for name in params if name not in known)
    if unknown:
        raise BadParams(
            f"Unknown parameter{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}."
        )
    cleaned: dict[str, Any] = {}
    for param in spec.params:
        raw = params.get(param.name)
        if raw is None or raw == "":
            if param.type == "choice":
                cleaned[param.name] = param.choices[0]
            elif param.default is not None:
                cleaned[param.name] = param.default
            elif param.required:
                raise BadParams(f"{param.label} is required.")
            continue
        cleaned[param.name] = _clean(param, raw, settings)
    if spec.audience == "staff":
        assert spec.course_param is not None
        await _check_staff(db, user, cleaned[spec.course_param])
    return cleaned


@dataclass(frozen=True)
class AssignmentChoice:
    id: int
    title: str
    course_code: str


async def staff_assignments(db: AsyncSession, user: User) -> list[AssignmentChoice]:
    """The assignments ``user`` may run staff kinds for: every one for a site admin,
    else those of the courses they mark; by course code, then title."""
    query = select(Assignment.id, Assignment.title, Course.code).join(
        Course, Course.id == Assignment.course_id
    )
    if not user.is_admin:
        query = query.join(Enrolment, Enrolment.course_id == Course.id).where(
            Enrolment.user_id == user.id, Enrolment.role.in_(STAFF_ROLES)
        )
    rows = await db.execute(query.order_by(Course.code, Assignment.title, Assignment.id))
    return [AssignmentChoice(row.id, row.title, row.code) for row in rows]

"""The ``herald`` command line, run as an operator would: a subprocess per command."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path


def _herald(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "herald", *args],
        env={**os.environ, "HERALD_VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_migrate_demo_data_and_user_add(tmp_path: Path) -> None:
    """migrate, demo-data (once only) and user add build the database an operator expects."""
    assert _herald(tmp_path, "migrate").returncode == 0
    first = _herald(tmp_path, "demo-data")
    assert first.returncode == 0 and "demo data loaded" in first.stdout
    again = _herald(tmp_path, "demo-data")
    assert again.returncode == 0 and "skipped" in again.stdout

    added = _herald(
        tmp_path,
        "user",
        "add",
        "carol",
        "--name",
        "Carol Marker",
        "--password",
        "s3cret!",
        "--course",
        "DEMO101",
        "--role",
        "marker",
    )
    assert added.returncode == 0, added.stderr
    with sqlite3.connect(tmp_path / "herald.db") as db:
        row = db.execute(
            "SELECT u.display_name, u.password_hash, e.role FROM users u "
            "JOIN enrolments e ON e.user_id = u.id WHERE u.username = 'carol'"
        ).fetchone()
    assert row[0] == "Carol Marker" and row[2] == "marker"
    assert row[1].startswith("$argon2") and "s3cret!" not in row[1]

    duplicate = _herald(tmp_path, "user", "add", "carol", "--password", "other1")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    no_course = _herald(tmp_path, "user", "add", "dan", "--password", "pw1234", "--course", "NOPE")
    assert no_course.returncode == 1 and "no course with code 'NOPE'" in no_course.stderr
    with sqlite3.connect(tmp_path / "herald.db") as db:
        assert db.execute("SELECT count(*) FROM users WHERE username = 'dan'").fetchone() == (0,)


def test_bad_setting_stops_with_exit_code_2(tmp_path: Path) -> None:
    """A bad HERALD_* value stops any command with a one-line explanation, no traceback."""
    result = _herald(tmp_path, "migrate", HERALD_WEB_PORT="eighty")
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "herald: bad setting: HERALD_WEB_PORT='eighty' is not an integer"
    )


def test_queue_commands_as_an_operator_uses_them(tmp_path: Path, redis_server: str) -> None:
    """enqueue (idempotent with --key), queue settings, queues/tasks --json, cancel, retry,
    and clear refusals, against a real Redis with no worker running."""
    import json

    env = {"HERALD_REDIS_URL": redis_server}
    subprocess.run(
        ["redis-cli", "-s", redis_server.removeprefix("unix://"), "flushall"], check=True
    )
    assert _herald(tmp_path, "migrate", **env).returncode == 0
    paused = _herald(tmp_path, "queue", "diag", "--pause", "--max-active", "2", **env)
    assert paused.returncode == 0, paused.stderr
    assert json.loads(paused.stdout) == {
        "name": "diag",
        "paused": True,
        "max_active": 2,
        "window": None,
        "immediate": False,
    }
    first = _herald(tmp_path, "enqueue", "diag.noop", "--key", "k1", "--json", **env)
    again = _herald(tmp_path, "enqueue", "diag.noop", "--key", "k1", "--json", **env)
    assert json.loads(first.stdout) == {"id": 1, "created": True}
    assert json.loads(again.stdout) == {"id": 1, "created": False}
    later = _herald(
        tmp_path, "enqueue", "diag.sleep", "--params", '{"seconds": 1}', "--at", "+1h", **env
    )
    assert later.returncode == 0 and "task 2 queued" in later.stdout

    [diag] = json.loads(_herald(tmp_path, "queues", "--json", **env).stdout)
    assert (diag["queue"], diag["waiting"], diag["delayed"], diag["paused"]) == ("diag", 1, 1, True)

    assert "cancelled" in _herald(tmp_path, "cancel", "1", **env).stdout
    tasks = json.loads(_herald(tmp_path, "tasks", "--status", "cancelled", "--json", **env).stdout)
    assert [t["id"] for t in tasks] == [1]
    assert "queued again" in _herald(tmp_path, "retry", "1", **env).stdout

    unknown = _herald(tmp_path, "enqueue", "no.such", **env)
    assert unknown.returncode == 1 and "no task kind 'no.such'" in unknown.stderr
    bad_json = _herald(tmp_path, "enqueue", "diag.noop", "--params", "{oops", **env)
    assert bad_json.returncode == 2 and "not JSON" in bad_json.stderr
    bad_time = _herald(tmp_path, "enqueue", "diag.noop", "--at", "tomorrow", **env)
    assert bad_time.returncode == 2 and "use an ISO time" in bad_time.stderr
    assert "Traceback" not in bad_time.stderr
    bad_status = _herald(tmp_path, "tasks", "--status", "bogus", **env)
    assert bad_status.returncode == 2 and "invalid choice" in bad_status.stderr
    bad_window = _herald(tmp_path, "queue", "diag", "--window", "Mon 9-5", **env)
    assert bad_window.returncode == 1 and "cannot read" in bad_window.stderr
    missing = _herald(tmp_path, "cancel", "99", **env)
    assert missing.returncode == 1 and "no task 99" in missing.stderr


def test_user_account_commands(tmp_path: Path, redis_server: str) -> None:
    """disable / enable / enrol / unenrol / admin change the database and fail clearly."""
    env = {"HERALD_REDIS_URL": redis_server}
    assert _herald(tmp_path, "migrate", **env).returncode == 0
    assert _herald(tmp_path, "demo-data", **env).returncode == 0

    def row(sql: str) -> tuple[object, ...]:
        with sqlite3.connect(tmp_path / "herald.db") as db:
            return tuple(db.execute(sql).fetchone() or ())

    disabled = _herald(tmp_path, "user", "disable", "bob", **env)
    assert disabled.returncode == 0 and "signed out everywhere" in disabled.stdout
    assert row("SELECT is_active FROM users WHERE username = 'bob'") == (0,)
    assert _herald(tmp_path, "user", "enable", "bob", **env).returncode == 0
    assert row("SELECT is_active FROM users WHERE username = 'bob'") == (1,)

    role_of_mark = (
        "SELECT e.role FROM enrolments e JOIN users u ON u.id = e.user_id WHERE u.username = 'mark'"
    )
    enrolled = _herald(tmp_path, "user", "enrol", "mark", "DEMO101", "--role", "student", **env)
    assert enrolled.returncode == 0, enrolled.stderr
    assert row(role_of_mark) == ("student",)
    assert _herald(tmp_path, "user", "unenrol", "mark", "DEMO101", **env).returncode == 0
    assert row(role_of_mark) == ()
    again = _herald(tmp_path, "user", "unenrol", "mark", "DEMO101", **env)
    assert again.returncode == 1 and "not enrolled" in again.stderr

    assert _herald(tmp_path, "user", "admin", "ada", "off", **env).returncode == 0
    assert row("SELECT is_admin FROM users WHERE username = 'ada'") == (0,)
    unknown = _herald(tmp_path, "user", "disable", "nobody", **env)
    assert unknown.returncode == 1 and unknown.stderr.strip() == "herald: no user 'nobody'"

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

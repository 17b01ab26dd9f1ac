"""``herald schedule`` and ``herald scheduler --check`` as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")

SCHEDULE = """
[jobs.morning]
cron = "0 9 * * *"
kind = "diag.noop"
business_days = true
active_hours = "08:00-18:00"
missed = "once"
"""


def _herald(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "herald", *args],
        env={**os.environ, "HERALD_VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_schedule_lists_jobs_last_runs_and_one_off_tasks(tmp_path: Path, redis_server: str) -> None:
    """Recurring jobs with next times in the configured zone, last run (from the DB when
    Redis has none), policy and limits; and one-off tasks waiting for their time."""
    (tmp_path / "schedule.toml").write_text(SCHEDULE)
    env = {
        "HERALD_REDIS_URL": redis_server,
        "HERALD_TIMEZONE": "Europe/London",
        "HERALD_SCHEDULE_FILE": str(tmp_path / "schedule.toml"),
    }
    subprocess.run(
        ["redis-cli", "-s", redis_server.removeprefix("unix://"), "flushall"], check=True
    )
    assert _herald(tmp_path, "migrate", **env).returncode == 0
    one_off = _herald(
        tmp_path, "enqueue", "diag.noop", "--at", "2030-01-07T09:00", "--key", "release-1", **env
    )
    assert one_off.returncode == 0, one_off.stderr
    ran = _herald(
        tmp_path,
        "enqueue",
        "diag.noop",
        "--key",
        "schedule:morning:2026-11-23T09:00:00Z",
        "--json",
        **env,
    )
    ran_id = json.loads(ran.stdout)["id"]

    listed = _herald(tmp_path, "schedule", "--json", "--next", "4", **env)
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert document["timezone"] == "Europe/London"
    purge, morning = document["jobs"]
    assert purge["job"] == "outputs.purge" and purge["builtin"] and purge["missed"] == "once"
    assert morning["cron"] == "0 9 * * *" and morning["kind_known"]
    assert (morning["business_days"], morning["active_hours"]) == (True, "08:00-18:00")
    upcoming = [datetime.fromisoformat(t) for t in morning["next"]]
    assert len(upcoming) == 4 and upcoming == sorted(upcoming)
    assert all((t.hour, t.minute, t.weekday() < 5) == (9, 0, True) for t in upcoming)
    assert all(t.utcoffset() == t.astimezone(LONDON).utcoffset() for t in upcoming)
    assert (morning["last_run"], morning["last_task"]) == ("2026-11-23T09:00:00+00:00", ran_id)
    [waiting] = document["one_off"]
    assert waiting["kind"] == "diag.noop" and waiting["key"] == "release-1"
    assert (waiting["due"], waiting["waiting_for"]) == ("2030-01-07T09:00:00+00:00", "its time")

    table = _herald(tmp_path, "schedule", **env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == "Recurring jobs (times in Europe/London):"
    [row] = [line for line in lines if line.startswith("morning ")]
    assert "business days, hours 08:00-18:00" in row and "once" in row
    assert f"2026-11-23 09:00:00 GMT (task {ran_id})" in row
    assert any(line.startswith("One-off tasks waiting") for line in lines)
    assert any("2030-01-07 09:00:00 GMT" in line and "release-1" in line for line in lines)


def test_a_bad_schedule_file_stops_the_commands(tmp_path: Path, redis_server: str) -> None:
    """A mistake in the file stops `herald schedule` and `herald scheduler` with exit
    code 2 and one line naming the file, the job and the fault."""
    path = tmp_path / "schedule.toml"
    path.write_text("[jobs.typo]\ncron = '0 9 * * mon-fry'\nkind = 'diag.noop'\n")
    env = {"HERALD_REDIS_URL": redis_server, "HERALD_SCHEDULE_FILE": str(path)}
    for command in ("schedule", "scheduler"):
        result = _herald(tmp_path, command, **env)
        assert result.returncode == 2
        assert result.stderr.strip() == (
            f"herald: HERALD_SCHEDULE_FILE {path}: job 'typo': cron '0 9 * * mon-fry': "
            "'fry' is not a day of week"
        )


def test_scheduler_check_without_a_scheduler(tmp_path: Path, redis_server: str) -> None:
    """--check exits 1 when no scheduler on this host keeps its health key."""
    subprocess.run(
        ["redis-cli", "-s", redis_server.removeprefix("unix://"), "flushall"], check=True
    )
    result = _herald(tmp_path, "scheduler", "--check", HERALD_REDIS_URL=redis_server)
    assert result.returncode == 1 and "no healthy scheduler" in result.stderr

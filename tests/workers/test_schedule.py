"""The schedule: the built-in jobs, a TOML file adding and changing jobs, and clear
errors naming the file, the job and the fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.settings import Settings, SettingsError
from workers.schedule import BUILTIN_JOBS, MissedPolicy, ScheduleError, load_schedule


def settings_for(tmp_path: Path, text: str | None, zone: str = "UTC") -> Settings:
    env = {"HERALD_VAR_DIR": str(tmp_path), "HERALD_TIMEZONE": zone}
    if text is not None:
        path = tmp_path / "schedule.toml"
        path.write_text(text, encoding="utf-8")
        env["HERALD_SCHEDULE_FILE"] = str(path)
    return Settings.from_env(env)


def test_the_built_in_schedule(tmp_path: Path) -> None:
    """Without a file the schedule is the built-in jobs: the nightly outputs purge."""
    jobs = load_schedule(settings_for(tmp_path, None))
    assert [job.name for job in jobs] == list(BUILTIN_JOBS) == ["outputs.purge"]
    [purge] = jobs
    assert (purge.cron, purge.kind, purge.missed) == ("0 3 * * *", "outputs.purge", "once")
    assert purge.builtin and purge.enabled


def test_a_file_adds_jobs_and_changes_built_in_ones(tmp_path: Path) -> None:
    """A file's table adds a job with every option, and changes only the keys it gives
    of a built-in job."""
    settings = settings_for(
        tmp_path,
        """
        [jobs."outputs.purge"]
        cron = "30 2 * * *"

        [jobs.nightly-report]
        cron = "0 6 * * mon-fri"
        kind = "diag.noop"
        params = { count_in = "reports", nested = { a = [1, 2] } }
        queue = "io"
        priority = -10
        business_days = true
        active_hours = "Mon-Fri 05:00-07:00"
        missed = "once"
        about = "the morning report"
        """,
        zone="Europe/London",
    )
    purge, report = load_schedule(settings)
    assert (purge.cron, purge.kind, purge.missed) == ("30 2 * * *", "outputs.purge", "once")
    assert report.name == "nightly-report" and not report.builtin
    assert report.params == {"count_in": "reports", "nested": {"a": [1, 2]}}
    assert (report.queue, report.priority, report.missed) == ("io", -10, MissedPolicy.ONCE)
    assert report.business_days and report.active_hours == "Mon-Fri 05:00-07:00"
    assert str(report.when.zone) == "Europe/London"


def test_a_file_can_turn_a_built_in_job_off(tmp_path: Path) -> None:
    """enabled = false keeps the job listed but off."""
    [purge] = load_schedule(settings_for(tmp_path, '[jobs."outputs.purge"]\nenabled = false\n'))
    assert not purge.enabled


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[jobs.a]\nkind = 'diag.noop'\n", "job 'a': cron is required"),
        ("[jobs.a]\ncron = '* * * * *'\n", "job 'a': kind is required"),
        (
            "[jobs.a]\ncron = '0 25 * * *'\nkind = 'diag.noop'\n",
            "job 'a': cron '0 25 * * *': hour 25 is out of range 0-23",
        ),
        (
            "[jobs.a]\ncron = '* * * * *'\nkind = 'x'\nkinds = 'y'\n",
            "job 'a': unknown key 'kinds' (known: cron, kind, params",
        ),
        ("[jobs.a]\ncron = 5\nkind = 'x'\n", "job 'a': cron must be a string, not 5"),
        (
            "[jobs.a]\ncron = '* * * * *'\nkind = 'x'\npriority = true\n",
            "job 'a': priority must be an integer, not True",
        ),
        (
            "[jobs.a]\ncron = '* * * * *'\nkind = 'x'\npriority = 500\n",
            "job 'a': priority must be from -100 to 100",
        ),
        (
            "[jobs.a]\ncron = '* * * * *'\nkind = 'x'\nmissed = 'all'\n",
            "job 'a': missed must be one of 'skip', 'once'",
        ),
        (
            "[jobs.a]\ncron = '* * * * *'\nkind = 'x'\nactive_hours = '8-18'\n",
            "job 'a': cannot read '8-18' in window '8-18'",
        ),
        (
            "[jobs.a]\ncron = '* * * * *'\nkind = 'x'\nparams = { at = 2026-01-01 }\n",
            "job 'a': params must hold JSON values (TOML dates and times are not)",
        ),
        (
            "[jobs.a]\ncron = '* * * * *'\nkind = 'x'\nqueue = 'no spaces'\n",
            "job 'a': queue 'no spaces' is not a queue name",
        ),
        (
            "[jobs.a]\ncron = '0 3 * * *'\nkind = 'x'\nactive_hours = '08:00-18:00'\n",
            "job 'a': never fires: no time in the next 10 years matches cron '0 3 * * *' "
            "within active hours '08:00-18:00'",
        ),
        ("[jobs.'bad name']\ncron = '* * * * *'\nkind = 'x'\n", "job 'bad name': a job name is"),
        ("[jobs]\na = 1\n", "job 'a': must be a table, [jobs.a]"),
        ("[job.a]\ncron = '* * * * *'\n", "unknown top-level key 'job'"),
        ("[jobs.a\ncron = '* * * * *'\n", "not valid TOML: "),
    ],
)
def test_mistakes_name_the_file_the_job_and_the_fault(
    tmp_path: Path, toml: str, message: str
) -> None:
    """Each mistake stops loading with a SettingsError naming the file and what is wrong."""
    settings = settings_for(tmp_path, toml)
    with pytest.raises(ScheduleError) as caught:
        load_schedule(settings)
    assert isinstance(caught.value, SettingsError)
    assert str(caught.value).startswith(f"HERALD_SCHEDULE_FILE {tmp_path / 'schedule.toml'}: ")
    assert message in str(caught.value)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    """A schedule file that is not there is reported, not ignored."""
    settings = Settings.from_env(
        {"HERALD_VAR_DIR": str(tmp_path), "HERALD_SCHEDULE_FILE": str(tmp_path / "nope.toml")}
    )
    with pytest.raises(ScheduleError, match=r"nope\.toml: cannot be read"):
        load_schedule(settings)


def test_a_disabled_job_may_never_fire(tmp_path: Path) -> None:
    """A job switched off is not checked for ever firing (it is parked, not broken)."""
    settings = settings_for(
        tmp_path,
        "[jobs.a]\ncron = '0 3 * * *'\nkind = 'x'\nactive_hours = '08:00-18:00'\nenabled = false\n",
    )
    assert not load_schedule(settings)[1].enabled

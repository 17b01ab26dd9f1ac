"""The admins' dashboard and GET /api/stats: numbers from real tasks run by a real
worker, exact percentiles and buckets from known rows, depth from samples, and the
indexes that keep the history queries to one range however many tasks there are."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from herald.db import Transactions
from herald.models import QueueSample, Task, TaskStatus, utcnow
from tests.support import eventually
from tests.web.conftest import Client, Demo, login, settings_of
from tests.workers.support import worker_running
from web.stats import durations_query, finished_query, step_for
from workers.backlog import candidates_query
from workers.control import TaskRequest, submit_tasks
from workers.queue import RedisQueue


async def _stats(client: Client, hours: int = 1) -> dict[str, Any]:
    response = await client.get(f"/api/stats?hours={hours}")
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def test_stats_count_what_a_real_worker_did(
    client: Client, demo: Demo, engine: AsyncEngine, redis: Redis
) -> None:
    """Five no-ops done and one task failed for good show as throughput 5 and one
    failure on queue diag, and the no-ops' execution times as diag.noop's percentiles."""
    transactions = Transactions(engine)
    requests = [TaskRequest("diag.noop") for _ in range(5)]
    requests.append(TaskRequest("diag.sleep", {"seconds": 0, "fail": True}))
    ids = [item.id for item in await submit_tasks(transactions, RedisQueue(redis), requests)]
    transactions.close()
    async with worker_running(settings_of(client)):

        async def settled() -> bool:
            async with demo.sessions() as db:
                statuses = list(await db.scalars(select(Task.status).where(Task.id.in_(ids))))
            return statuses.count(TaskStatus.DONE) == 5 and TaskStatus.FAILED in statuses

        await eventually(settled, timeout=30, what="the tasks to finish")
    await login(client, "ada")
    stats = await _stats(client)
    assert "diag" in stats["queues"]
    assert sum(stats["throughput"]["diag"]) == 5
    assert sum(stats["failures"]["diag"]) == 1
    assert stats["totals"] == {"processed": 5, "failed": 1}
    assert len(stats["buckets"]) == len(stats["throughput"]["diag"]) == 60
    assert stats["step"] == 60
    [noop] = [row for row in stats["durations"] if row["kind"] == "diag.noop"]
    assert noop["count"] == 5
    assert 0 <= noop["p50"] <= noop["p95"] <= noop["p99"] <= noop["max"]
    assert not [row for row in stats["durations"] if row["kind"] == "diag.sleep"]
    assert stats["current"]["diag"] == {"waiting": 0, "running": 0, "delayed": 0}


async def _add_tasks(demo: Demo, rows: list[dict[str, Any]]) -> None:
    async with demo.sessions.begin() as db:
        db.add_all(Task(params={}, **row) for row in rows)


async def test_percentiles_and_buckets_are_exact_for_known_rows(client: Client, demo: Demo) -> None:
    """A hundred runs of 1 to 100 seconds: p50 50 s, p95 95 s, p99 99 s, longest 100 s;
    each finished task lands in the bucket of its finishing time; cancelled ones and
    ones before the window are left out."""
    now = utcnow()
    step = step_for(6)
    last_bucket = int(now.timestamp()) // step * step
    finished = datetime.fromtimestamp(last_bucket - 2 * step + 1, now.tzinfo)
    base = {"kind": "reports.timed", "queue": "cpu", "status": TaskStatus.DONE}
    await _add_tasks(
        demo,
        [
            {**base, "started_at": finished - timedelta(seconds=i), "finished_at": finished}
            for i in range(1, 101)
        ]
        + [
            {**base, "status": TaskStatus.FAILED, "started_at": now, "finished_at": now},
            {**base, "status": TaskStatus.CANCELLED, "started_at": now, "finished_at": now},
            {
                **base,
                "started_at": now - timedelta(hours=8),
                "finished_at": now - timedelta(hours=7),
            },
        ],
    )
    await login(client, "ada")
    stats = await _stats(client, hours=6)
    assert stats["step"] == step == 300
    assert stats["buckets"][-1] == last_bucket
    [timed] = stats["durations"]
    assert timed == {
        "kind": "reports.timed",
        "count": 100,
        "p50": pytest.approx(50, abs=0.01),
        "p95": pytest.approx(95, abs=0.01),
        "p99": pytest.approx(99, abs=0.01),
        "max": pytest.approx(100, abs=0.01),
    }
    throughput = stats["throughput"]["cpu"]
    assert throughput[-3] == 100 and sum(throughput) == 100
    assert stats["failures"]["cpu"][-1] == 1 and sum(stats["failures"]["cpu"]) == 1


async def test_depth_comes_from_the_samples_with_gaps_where_none_was_taken(
    client: Client, demo: Demo
) -> None:
    """Per bucket, the most jobs waiting among its samples; a bucket without a sample
    has no value (not zero): the monitor was not running then."""
    now = utcnow()
    step = step_for(1)
    start = int(now.timestamp()) // step * step
    at = [datetime.fromtimestamp(start - offset, now.tzinfo) for offset in (0, 5 * step)]
    async with demo.sessions.begin() as db:
        db.add_all(
            [
                QueueSample(at=at[0], queue="io", waiting=7, delayed=0, running=2),
                QueueSample(
                    at=at[0] + timedelta(seconds=1), queue="io", waiting=4, delayed=0, running=3
                ),
                QueueSample(at=at[1], queue="io", waiting=12, delayed=1, running=0),
                QueueSample(
                    at=now - timedelta(hours=3), queue="io", waiting=99, delayed=0, running=0
                ),
            ]
        )
    await login(client, "ada")
    stats = await _stats(client, hours=1)
    depth = stats["depth"]["io"]
    assert depth[-1] == 7 and stats["running"]["io"][-1] == 3
    assert depth[-6] == 12
    assert depth[-2] is None
    assert 99 not in depth


@pytest.mark.parametrize("hours", ["0", "337", "six", "-1", "1.5"])
async def test_hours_out_of_range_are_refused(client: Client, demo: Demo, hours: str) -> None:
    """hours is a whole number from 1 to 336 (the samples' retention)."""
    await login(client, "ada")
    response = await client.get(f"/api/stats?hours={hours}")
    assert response.status == 400
    assert "from 1 to 336" in (await response.json())["message"]


async def test_stats_are_for_admins_only(client: Client, demo: Demo) -> None:
    """Signed out: 401; a marker: 403."""
    assert (await client.get("/api/stats")).status == 401
    await login(client, "mark")
    assert (await client.get("/api/stats")).status == 403


async def test_the_dashboard_page_draws_over_tables_of_the_numbers(
    client: Client, demo: Demo
) -> None:
    """The page carries each chart's figure and a table of its numbers (readable
    without JavaScript), and the URL its script refreshes from."""
    now = utcnow()
    await _add_tasks(
        demo,
        [
            {
                "kind": "diag.noop",
                "queue": "diag",
                "status": TaskStatus.DONE,
                "started_at": now - timedelta(seconds=2),
                "finished_at": now,
            }
        ],
    )
    await login(client, "ada")
    html = await (await client.get("/admin/dashboard?hours=24")).text()
    for chart in ("depth", "throughput", "failures", "durations"):
        assert f'data-chart="{chart}"' in html
        assert f'data-table="{chart}"' in html
    assert 'data-stats-url="/api/stats?hours=24"' in html
    assert '<th scope="row">diag.noop</th>' in html
    assert 'data-total="processed">1<' in html
    assert (await client.get("/admin/dashboard?hours=999")).status == 400


HISTORY_ROWS = 100_000


def _seed_history(connection: Any, now: datetime) -> None:
    """100,000 tasks finished one a minute back over four weeks (2.5 times over): five
    failed, fifty queued, the rest done; one statement, then the planner's statistics."""
    if connection.dialect.name == "sqlite":
        # Every piece of SQL here is this test's own constant: nothing comes from outside.
        source = (
            "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "  # noqa: S608
            f"WHERE i < {HISTORY_ROWS}) SELECT i FROM n)"
        )
        ago = "strftime('%Y-%m-%d %H:%M:%f', :now, '-' || (i % 40000) || ' minutes')"
        false, analyze = "0", "ANALYZE"
    else:
        source = f"generate_series(1, {HISTORY_ROWS}) AS i"
        ago = "(:now - (i % 40000) * interval '1 minute')"
        false, analyze = "false", "ANALYZE tasks"
    status = "CASE WHEN i <= 5 THEN 'failed' WHEN i <= 55 THEN 'queued' ELSE 'done' END"
    finished = f"CASE WHEN i > 5 AND i <= 55 THEN NULL ELSE {ago} END"
    insert = (
        "INSERT INTO tasks (kind, queue, priority, immediate, status, progress, params, "  # noqa: S608
        "attempts, max_attempts, created_at, queued_at, started_at, finished_at) "
        f"SELECT 'diag.noop', 'diag', 0, {false}, {status}, 0, '{{}}', 1, 3, "
        f"{ago}, {ago}, {ago}, {finished} FROM {source}"
    )
    when = bindparam("now", type_=Task.__table__.c.finished_at.type)
    connection.execute(text(insert).bindparams(when), {"now": now})
    connection.exec_driver_sql(analyze)


def _plan(connection: Any, statement: Any) -> str:
    compiled = statement.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    params = tuple(compiled.params[name] for name in compiled.positiontup or ())
    if connection.dialect.name == "sqlite":
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params)
        return "\n".join(str(row[-1]) for row in rows)
    rows = connection.exec_driver_sql(f"EXPLAIN {compiled}", params)
    return "\n".join(str(row[0]) for row in rows)


async def test_history_queries_read_one_index_range_among_100k_tasks(
    client: Client, demo: Demo, engine: AsyncEngine
) -> None:
    """With 100,000 finished tasks, throughput, failures, percentiles and the backlog
    check each search their index instead of scanning the table, and the answers only
    count the window's tasks."""
    now = utcnow()
    async with engine.begin() as connection:
        await connection.run_sync(_seed_history, now)
    since = now - timedelta(hours=1)
    async with engine.connect() as connection:
        dialect = connection.dialect.name
        for statement, index in (
            (finished_query(since, 60, dialect), "ix_tasks_status_finished"),
            (durations_query(since, dialect), "ix_tasks_status_finished"),
            (candidates_query("diag"), "ix_tasks_status_queue_queued"),
        ):
            plan = await connection.run_sync(_plan, statement)
            assert index in plan, plan
            assert "SCAN tasks" not in plan and "Seq Scan on tasks" not in plan, plan
    await login(client, "ada")
    stats = await _stats(client, hours=1)
    # One task a minute (i % 40000 minutes ago, 2.5 times over): 60 minutes' worth.
    window = stats["buckets"][0]
    expected = sum(
        1 for i in range(56, HISTORY_ROWS + 1) if now.timestamp() - (i % 40000) * 60 >= window
    )
    assert stats["totals"]["processed"] == expected
    assert stats["totals"]["failed"] == 5

"""The task list's queries read an index, not the whole table: the plan of every query
the API makes for each common filter, on a table of realistic size."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from herald.models import Task
from tests.web.conftest import Client, Demo, login
from tests.web.tasks_data import fill_tasks
from web.keys import ENGINE

ROWS = 20_000


@contextmanager
def statements_of(client: Client) -> Iterator[list[tuple[str, Any]]]:
    """The SELECTs on tasks the app runs while the block runs."""
    assert client.app is not None
    engine: AsyncEngine = client.app[ENGINE]
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and " tasks" in statement:
            seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def plans(engine: AsyncEngine, statements: list[tuple[str, Any]]) -> list[str]:
    """Each statement's plan, as one line."""
    found = []
    async with engine.connect() as conn:
        for statement, parameters in statements:
            if engine.dialect.name == "sqlite":
                rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
                found.append(" / ".join(str(row[-1]) for row in rows))
            else:
                rows = await conn.exec_driver_sql("EXPLAIN (COSTS OFF) " + statement, parameters)
                found.append(" / ".join(str(row[0]).strip() for row in rows))
    return found


@pytest.mark.timeout(300)
async def test_every_common_filter_reads_an_index(
    client: Client, demo: Demo, engine: AsyncEngine
) -> None:
    """With 20,000 tasks, the newest page, each filter, a deep page and a time range
    read the id order or an index (never the table), and none sorts the table."""
    filled = await fill_tasks(engine, ROWS)
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("ANALYZE tasks"))
    await login(client, "ada")
    day = (filled.start + timedelta(days=15)).date().isoformat()
    wide = (filled.start + timedelta(days=1)).date().isoformat()
    end = (filled.start + timedelta(days=59)).date().isoformat()
    queries = {
        "newest": "",
        "status": "status=failed",
        "kind": "kind=reports.grades",
        "queue": "queue=bulk",
        "owner": "owner=student00042",
        "mine": "mine=1&steps=0",
        "deep": f"before={filled.first_id + 500}",
        "day": f"from={day}&to={day}",
        "term": f"from={wide}&to={end}",
        "before": f"to={day}",
    }
    for name, query in queries.items():
        with statements_of(client) as statements:
            response = await client.get(f"/api/tasks?{query}")
            assert response.status == 200, await response.text()
        found = await plans(engine, statements)
        if name == "day":  # a day's tasks are read off created_at, wherever they lie
            assert all("ix_tasks_created_at" in plan for plan in found), found
        for plan in found:
            assert "Seq Scan on tasks" not in plan, (name, plan)
            if engine.dialect.name == "sqlite":
                # SCAN tasks alone is the id order read backwards, stopping at a page.
                assert "SCAN tasks" not in plan or name in ("newest", "term", "before"), (
                    name,
                    plan,
                )
                # A day's range is read off created_at and sorted: a day, not the table.
                assert "TEMP B-TREE" not in plan or name == "day", (name, plan)


@pytest.mark.timeout(300)
async def test_narrow_and_wide_time_ranges_page_the_same_tasks(
    client: Client, demo: Demo, engine: AsyncEngine
) -> None:
    """A time range read off created_at (narrow) or in id order (wide) gives the
    newest matching tasks, page after page, as a plain query of the table does."""
    filled = await fill_tasks(engine, 12_000)
    await login(client, "ada")
    start = filled.start
    ranges = {
        "day": (start + timedelta(days=15), start + timedelta(days=16)),
        "term": (start + timedelta(days=1), start + timedelta(days=59)),
        "old": (start, start + timedelta(days=30)),
    }
    for name, (low, high) in ranges.items():
        async with demo.sessions() as db:
            expected = list(
                (
                    await db.scalars(
                        select(Task.id)
                        .where(Task.created_at >= low, Task.created_at <= high)
                        .order_by(Task.id.desc())
                        .limit(120)
                    )
                ).all()
            )
        query = urlencode({"from": low.isoformat(), "to": high.isoformat(), "limit": 40})
        seen: list[int] = []
        cursor = ""
        while len(seen) < 120:
            response = await client.get(f"/api/tasks?{query}{cursor}")
            assert response.status == 200, await response.text()
            page = await response.json()
            seen += [row["id"] for row in page["tasks"]]
            cursor = f"&before={page['next']}"
        assert seen == expected, name

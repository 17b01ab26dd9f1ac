"""Migration 0008 (queue samples, alerts, the history indexes) goes down and up again
on every database."""

from __future__ import annotations

import asyncio

from alembic import command
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from herald.migrate import alembic_config, upgrade_async


def _schema(connection: Connection) -> tuple[set[str], set[str]]:
    inspector = inspect(connection)
    return set(inspector.get_table_names()), {i["name"] for i in inspector.get_indexes("tasks")}


async def test_monitoring_migration_goes_down_and_up(
    engine: AsyncEngine, database_url: str
) -> None:
    """Down to 0007 drops the two tables and the two task indexes; up brings them back."""
    ours = {"ix_tasks_status_finished", "ix_tasks_status_queue_queued"}
    async with engine.connect() as connection:
        tables, indexes = await connection.run_sync(_schema)
    assert {"queue_samples", "alerts"} <= tables and ours <= indexes
    # Alembic connects on its own; pooled connections would hold locks it needs.
    await engine.dispose()
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0007")
    async with engine.connect() as connection:
        tables, indexes = await connection.run_sync(_schema)
    assert not {"queue_samples", "alerts"} & tables and not ours & indexes
    await engine.dispose()
    await upgrade_async(database_url)
    async with engine.connect() as connection:
        tables, indexes = await connection.run_sync(_schema)
    assert {"queue_samples", "alerts"} <= tables and ours <= indexes

"""Migrations: the schema they build is the one the models describe, on every database."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from herald.migrate import alembic_config, upgrade_async
from herald.models import Base


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _assignment_columns(connection: Connection) -> set[str]:
    return {column["name"] for column in inspect(connection).get_columns("assignments")}


async def test_migrated_schema_matches_the_models(engine: AsyncEngine) -> None:
    """After every migration has run, autogenerate finds nothing left to do."""
    async with engine.connect() as connection:
        assert await connection.run_sync(_differences) == []


async def test_allowed_types_migration_goes_down_and_up(
    engine: AsyncEngine, database_url: str
) -> None:
    """0004 can be undone and redone: assignments lose and regain allowed_types."""
    # Alembic connects on its own; pooled connections would hold locks it needs.
    await engine.dispose()
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0003")
    async with engine.connect() as connection:
        assert "allowed_types" not in await connection.run_sync(_assignment_columns)
    await engine.dispose()
    await upgrade_async(database_url)
    async with engine.connect() as connection:
        assert "allowed_types" in await connection.run_sync(_assignment_columns)

"""Schema migrations (Alembic), run by ``herald migrate`` and by ``herald up``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

__all__ = ["alembic_config", "upgrade", "upgrade_async"]

_HERE = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url)
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database up to ``revision``; creates the SQLite file's folder if needed."""
    if database_url.startswith("sqlite") and ":///" in database_url:
        Path(database_url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    """:func:`upgrade` from async code (Alembic's env runs its own event loop)."""
    await asyncio.to_thread(upgrade, database_url, revision)

"""Per-queue settings: stored in the DB (the truth), mirrored into Redis where every
worker's claims read them, so a change applies at once, without restarts, on every
machine. The reconciler mirrors them again after Redis loses data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.models import QueueSetting
from workers.queue import RedisQueue
from workers.window import TimeWindow

__all__ = ["MAX_ACTIVE_LIMIT", "QueueConfig", "load_queue_settings", "mirror_all", "update_queue"]

MAX_ACTIVE_LIMIT = 100_000
_QUEUE_NAME_LIMIT = 64
_UNSET: Any = object()


@dataclass(frozen=True)
class QueueConfig:
    """A queue's settings as shown to operators."""

    name: str
    paused: bool = False
    max_active: int | None = None
    window: str | None = None
    immediate: bool = False

    @classmethod
    def of(cls, row: QueueSetting) -> QueueConfig:
        return cls(row.name, row.paused, row.max_active, row.window, row.immediate)


def _check_name(name: str) -> None:
    if (
        not name
        or len(name) > _QUEUE_NAME_LIMIT
        or not name.replace("-", "").replace("_", "").isalnum()
    ):
        raise ValueError(f"queue name {name!r} must be 1–64 letters, digits, '-' or '_'")


async def load_queue_settings(sessions: async_sessionmaker[AsyncSession]) -> dict[str, QueueConfig]:
    async with sessions() as db:
        rows = (await db.scalars(select(QueueSetting))).all()
    return {row.name: QueueConfig.of(row) for row in rows}


async def update_queue(
    sessions: async_sessionmaker[AsyncSession],
    queue: RedisQueue,
    name: str,
    *,
    paused: bool = _UNSET,
    max_active: int | None = _UNSET,
    window: str | None = _UNSET,
    immediate: bool = _UNSET,
) -> QueueConfig:
    """Change some of a queue's settings (others keep their values) and apply them live.

    :class:`ValueError` (with a message for a person) for a bad name, cap or window.
    """
    _check_name(name)
    if (
        max_active is not _UNSET
        and max_active is not None
        and (isinstance(max_active, bool) or not 1 <= max_active <= MAX_ACTIVE_LIMIT)
    ):
        raise ValueError(f"max_active must be from 1 to {MAX_ACTIVE_LIMIT}, or none")
    if window is not _UNSET and window is not None:
        window = TimeWindow.parse(window).spec  # raises WindowError, a ValueError
    async with sessions.begin() as db:
        row = await db.get(QueueSetting, name, with_for_update=True)
        if row is None:
            row = QueueSetting(name=name, paused=False, immediate=False)
            db.add(row)
        if paused is not _UNSET:
            row.paused = paused
        if max_active is not _UNSET:
            row.max_active = max_active
        if window is not _UNSET:
            row.window = window
        if immediate is not _UNSET:
            row.immediate = immediate
        config = QueueConfig(name, row.paused, row.max_active, row.window, row.immediate)
    await _mirror(queue, config)
    return config


async def _mirror(queue: RedisQueue, config: QueueConfig) -> None:
    await queue.apply_settings(
        config.name,
        paused=config.paused,
        max_active=config.max_active,
        window=config.window,
        immediate=config.immediate,
    )


async def mirror_all(sessions: async_sessionmaker[AsyncSession], queue: RedisQueue) -> None:
    """Copy every queue's DB settings into Redis (after Redis lost them, or at start-up)."""
    for config in (await load_queue_settings(sessions)).values():
        await _mirror(queue, config)

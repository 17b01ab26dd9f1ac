"""Which function does each pipeline step's work (looked up per call, so a test can
swap one in to inject a fault)."""

from __future__ import annotations

from workers.notify_steps import admin_sync, notify
from workers.review_steps import plagiarism, thumbnail
from workers.steps import Handler, record, scan, store

__all__ = ["HANDLERS"]

HANDLERS: dict[str, Handler] = {
    "scan": scan,
    "store": store,
    "record": record,
    "plagiarism": plagiarism,
    "admin_sync": admin_sync,
    "thumbnail": thumbnail,
    "notify": notify,
}

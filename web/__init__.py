"""Herald's web process: pages, JSON API, uploads and WAMP tickets (aiohttp)."""

from __future__ import annotations

from web.app import create_app, serve

__all__ = ["create_app", "serve"]

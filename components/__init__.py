"""Backend WAMP components: the bridge relaying Redis events to WAMP topics."""

from __future__ import annotations

from components.bridge import Bridge, serve

__all__ = ["Bridge", "serve"]

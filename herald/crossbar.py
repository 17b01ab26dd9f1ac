"""Run the Crossbar.io router: render its node config from settings, build its
command line and environment, and tell when it accepts connections.

The committed ``crossbar/config.json`` is the template (with the embedded
defaults); :func:`render_config` writes the copy a node actually runs into its
node directory, next to the key files Crossbar generates there, so neither ever
lands in ``crossbar/``.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from herald import names
from herald.settings import Settings, SettingsError

__all__ = [
    "CONFIG_TEMPLATE",
    "crossbar_command",
    "crossbar_env",
    "render_config",
    "router_ready",
]

# The package is installed editable from the repository, so the template sits
# beside the ``herald`` package.
CONFIG_TEMPLATE = Path(__file__).resolve().parent.parent / "crossbar" / "config.json"
CONFIG_NAME = "config.json"
BROWSER_TRANSPORT_ID = "browser"
BACKEND_TRANSPORT_ID = "backend"
WS_PATH = "ws"
SECRET_ENV = "HERALD_BACKEND_SECRET"  # noqa: S105 - a variable name, not a secret


def _transport(worker: dict[str, Any], transport_id: str) -> dict[str, Any]:
    for transport in worker["transports"]:
        if transport.get("id") == transport_id:
            return transport  # type: ignore[no-any-return]
    raise SettingsError(f"{CONFIG_TEMPLATE} has no transport with id {transport_id!r}")


def build_config(settings: Settings, template: dict[str, Any]) -> dict[str, Any]:
    """The template with hosts, ports, origins and wire names taken from settings and names."""
    config = copy.deepcopy(template)
    worker = config["workers"][0]

    # Wire names come from herald.names so the router and the code can never disagree.
    realm = worker["realms"][0]
    realm["name"] = names.REALM
    for role in realm["roles"]:
        if "authorizer" in role:
            role["name"] = names.ROLE_BROWSER
            role["authorizer"] = names.PROC_AUTHORIZE
        else:
            role["name"] = names.ROLE_BACKEND

    browser = _transport(worker, BROWSER_TRANSPORT_ID)
    browser["endpoint"]["interface"] = settings.router_host
    browser["endpoint"]["port"] = settings.router_port
    websocket = browser["websocket"][WS_PATH]
    websocket["auth"]["ticket"]["authenticator"] = names.PROC_AUTHENTICATE
    websocket["options"]["allowed_origins"] = list(settings.allowed_origins)

    backend = _transport(worker, BACKEND_TRANSPORT_ID)
    # Backend components authenticate with a shared secret: loopback only.
    backend["endpoint"]["interface"] = "127.0.0.1"
    backend["endpoint"]["port"] = settings.backend_port
    users = backend["auth"]["wampcra"]["users"]
    (user,) = users.values()
    user["role"] = names.ROLE_BACKEND
    backend["auth"]["wampcra"]["users"] = {names.BACKEND_AUTHID: user}
    return config


def render_config(settings: Settings, node_dir: Path) -> Path:
    """Write the node config for ``settings`` into ``node_dir``; returns its path.

    The secret stays a ``${HERALD_BACKEND_SECRET}`` reference that Crossbar
    substitutes from its environment (:func:`crossbar_env`), so it never lands on disk.
    """
    template = json.loads(CONFIG_TEMPLATE.read_text(encoding="utf-8"))
    config = build_config(settings, template)
    node_dir.mkdir(parents=True, exist_ok=True)
    path = node_dir / CONFIG_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def crossbar_command(node_dir: Path) -> list[str]:
    """The argv that starts a Crossbar node from ``node_dir`` (rendered beforehand)."""
    executable = Path(sys.executable).parent / "crossbar"
    return [
        str(executable),
        "start",
        "--cbdir",
        str(node_dir),
        "--config",
        str(node_dir / CONFIG_NAME),
        "--loglevel",
        "info",
        # Plain text: the log goes to files and supervisors, not a terminal.
        "--color",
        "false",
    ]


def crossbar_env(settings: Settings) -> dict[str, str]:
    """The environment for the Crossbar process; raises SettingsError without a backend secret.

    Crossbar only warns about an unset ``${VAR}`` in its config, so refuse here
    instead of starting a router whose backend credential is empty.
    """
    secret = settings.require_backend_secret()
    # The child inherits PATH, HOME, locale etc.; only the secret is added.
    return {**os.environ, SECRET_ENV: secret}


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def router_ready(settings: Settings) -> bool:
    """Whether both the browser and the backend port accept TCP connections."""
    host = settings.router_host
    if host in {"0.0.0.0", "", "::"}:  # noqa: S104 - probing a wildcard bind via loopback
        host = "127.0.0.1"
    return _accepts(host, settings.router_port) and _accepts("127.0.0.1", settings.backend_port)

"""The Crossbar node config: the committed template and its rendering from settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from herald import names
from herald.crossbar import (
    CONFIG_TEMPLATE,
    crossbar_command,
    crossbar_env,
    render_config,
    router_ready,
)
from herald.settings import Settings, SettingsError
from tests.conftest import make_settings


def _settings(tmp_path: Path, **overrides: str) -> Settings:
    return make_settings(tmp_path, "redis://127.0.0.1:1", "sqlite+aiosqlite:///x.db", **overrides)


def _transports(config: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {t["id"]: t for t in config["workers"][0]["transports"]}


def test_committed_template_is_locked_down() -> None:
    """The template keeps JSON only, explicit origins, size limits, pings and no info pages."""
    config = json.loads(CONFIG_TEMPLATE.read_text())
    transports = _transports(config)
    ws = transports["browser"]["websocket"]["ws"]
    assert "web" not in transports["browser"]  # no "/" nodeinfo or 404 page with versions
    assert ws["serializers"] == ["json"]
    options = ws["options"]
    assert "*" not in options["allowed_origins"]
    assert options["max_message_size"] > 0
    assert options["auto_ping_interval"] > 0 and options["auto_ping_timeout"] > 0
    assert options["enable_webstatus"] is False and options["show_server_version"] is False
    assert ws["auth"] == {"ticket": {"type": "dynamic", "authenticator": names.PROC_AUTHENTICATE}}
    backend = transports["backend"]
    assert backend["endpoint"]["interface"] == "127.0.0.1"
    assert backend["options"]["max_message_size"] > 0
    (user,) = backend["auth"]["wampcra"]["users"].values()
    assert user["secret"] == "${HERALD_BACKEND_SECRET}"
    roles = {r["name"]: r for r in config["workers"][0]["realms"][0]["roles"]}
    assert roles[names.ROLE_BROWSER] == {"name": "user", "authorizer": names.PROC_AUTHORIZE}


def test_render_config_applies_settings(tmp_path: Path) -> None:
    """Rendering sets ports, host and origins from settings and never writes the secret."""
    settings = _settings(
        tmp_path, HERALD_ROUTER_HOST="10.1.2.3", HERALD_ALLOWED_ORIGINS="https://herald.example"
    )
    node_dir = tmp_path / "node"
    path = render_config(settings, node_dir)
    assert path == node_dir / "config.json"
    text = path.read_text()
    assert settings.require_backend_secret() not in text
    config = json.loads(text)
    transports = _transports(config)
    browser = transports["browser"]
    assert browser["endpoint"]["interface"] == "10.1.2.3"
    assert browser["endpoint"]["port"] == settings.router_port
    assert browser["websocket"]["ws"]["options"]["allowed_origins"] == ["https://herald.example"]
    assert transports["backend"]["endpoint"] == {
        "type": "tcp",
        "interface": "127.0.0.1",
        "port": settings.backend_port,
        "backlog": 128,
    }
    assert list(transports["backend"]["auth"]["wampcra"]["users"]) == [names.BACKEND_AUTHID]
    assert config["workers"][0]["realms"][0]["name"] == names.REALM
    # Key files and rendered configs never land in the committed crossbar/ folder.
    assert sorted(p.name for p in CONFIG_TEMPLATE.parent.iterdir()) == ["config.json"]


def test_env_requires_the_backend_secret(tmp_path: Path) -> None:
    """crossbar_env refuses to run Crossbar without a backend secret and passes it when set."""
    settings = _settings(tmp_path)
    assert crossbar_env(settings)["HERALD_BACKEND_SECRET"] == settings.backend_secret
    with pytest.raises(SettingsError):
        crossbar_env(_settings(tmp_path, HERALD_BACKEND_SECRET=""))


def test_command_and_readiness_probe(tmp_path: Path) -> None:
    """The command runs the venv's crossbar on the node dir; closed ports are not ready."""
    argv = crossbar_command(tmp_path)
    assert Path(argv[0]).is_file()
    assert argv[1:4] == ["start", "--cbdir", str(tmp_path)]
    assert router_ready(_settings(tmp_path)) is False

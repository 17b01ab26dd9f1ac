"""Settings: embedded defaults, production values, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.settings import Settings, SettingsError


def test_embedded_defaults(tmp_path: Path) -> None:
    """With nothing set: SQLite and a private Redis socket under var/, DESIGN.md's ports."""
    settings = Settings.from_env({"HERALD_VAR_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'herald.db'}"
    assert settings.redis_url == f"unix://{tmp_path / 'redis' / 'redis.sock'}"
    assert settings.redis_is_private
    assert (settings.web_port, settings.router_port) == (8000, 8080)
    assert settings.router_public_url == "ws://127.0.0.1:8080/ws"
    assert settings.allowed_origins == ("http://127.0.0.1:8000", "http://localhost:8000")
    assert settings.clamd_url is None and settings.smtp_url is None


def test_production_values_are_taken() -> None:
    """Production URLs and lists are read as given."""
    settings = Settings.from_env(
        {
            "HERALD_DATABASE_URL": "postgresql+asyncpg://h@db/herald",
            "HERALD_REDIS_URL": "redis://queue:6379/0",
            "HERALD_ALLOWED_ORIGINS": "https://herald.example.ac.uk, https://x.example",
            "HERALD_WEB_PORT": "9000",
        }
    )
    assert not settings.redis_is_private
    assert settings.allowed_origins == ("https://herald.example.ac.uk", "https://x.example")
    assert settings.web_port == 9000


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("HERALD_WEB_PORT", "eighty", "HERALD_WEB_PORT='eighty' is not an integer"),
        ("HERALD_ROUTER_PORT", "70000", "HERALD_ROUTER_PORT=70000 is out of range (1..65535)"),
        ("HERALD_DATABASE_URL", "mysql://x/y", "must use one of the schemes"),
        ("HERALD_REDIS_URL", "http://redis", "must use one of the schemes redis, rediss, unix"),
        ("HERALD_MAX_UPLOAD_BYTES", "0", "out of range (>= 1)"),
        ("HERALD_LOG_FORMAT", "xml", "must be one of auto, json, console"),
    ],
)
def test_bad_values_fail_with_a_clear_message(name: str, value: str, message: str) -> None:
    """A bad value names the variable, the value and what would be accepted."""
    with pytest.raises(SettingsError, match="^" + name) as raised:
        Settings.from_env({name: value})
    assert message in str(raised.value)


def test_backend_secret_is_required_and_must_be_long() -> None:
    """Backend processes refuse a missing or short backend secret."""
    with pytest.raises(SettingsError, match="HERALD_BACKEND_SECRET"):
        Settings.from_env({}).require_backend_secret()
    with pytest.raises(SettingsError, match="at least 16"):
        Settings.from_env({"HERALD_BACKEND_SECRET": "short"}).require_backend_secret()
    for placeholder in ("x" * 32, "changeme-changeme", "secretsecretsecret"):
        with pytest.raises(SettingsError, match="random string"):
            Settings.from_env({"HERALD_BACKEND_SECRET": placeholder}).require_backend_secret()


def test_proxy_and_sign_in_limit_settings() -> None:
    """Proxy trust is off and sign-in limits are on by default; both are read from the env."""
    settings = Settings.from_env({})
    assert settings.trust_proxy is False
    assert (settings.login_account_limit, settings.login_address_limit) == (5, 25)
    assert settings.login_window_seconds == 900
    settings = Settings.from_env(
        {
            "HERALD_TRUST_PROXY": "Yes",
            "HERALD_LOGIN_ACCOUNT_LIMIT": "0",
            "HERALD_LOGIN_ADDRESS_LIMIT": "100",
            "HERALD_LOGIN_WINDOW": "3600",
        }
    )
    assert settings.trust_proxy is True
    assert (settings.login_account_limit, settings.login_address_limit) == (0, 100)
    assert settings.login_window_seconds == 3600
    assert Settings.from_env({"HERALD_TRUST_PROXY": "off"}).trust_proxy is False


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("HERALD_TRUST_PROXY", "maybe", "must be one of 1, true, yes, on, 0, false, no, off"),
        ("HERALD_LOGIN_ACCOUNT_LIMIT", "-1", "out of range (0..10000)"),
        ("HERALD_LOGIN_ADDRESS_LIMIT", "many", "is not an integer"),
        ("HERALD_LOGIN_WINDOW", "0", "out of range (1..604800)"),
    ],
)
def test_bad_proxy_and_limit_values_fail_clearly(name: str, value: str, message: str) -> None:
    """Bad proxy and limit values name the variable and what would be accepted."""
    with pytest.raises(SettingsError, match="^" + name) as raised:
        Settings.from_env({name: value})
    assert message in str(raised.value)


WEBHOOK = "https://admin.example.ac.uk/herald/records"


def test_admin_webhook_secret_is_read_and_kept_out_of_repr() -> None:
    """With the webhook URL set, its signing secret is taken and never shown in a repr."""
    secret = "k3Jd9-xQ2v_Lm8pZr4Tw"
    settings = Settings.from_env(
        {"HERALD_ADMIN_WEBHOOK_URL": WEBHOOK, "HERALD_ADMIN_WEBHOOK_SECRET": secret}
    )
    assert (settings.admin_webhook_url, settings.admin_webhook_secret) == (WEBHOOK, secret)
    assert secret not in repr(settings)


def test_admin_webhook_secret_is_optional_without_the_url() -> None:
    """Without a webhook URL the step is skipped, so no secret is needed."""
    settings = Settings.from_env({})
    assert settings.admin_webhook_url is None and settings.admin_webhook_secret is None


@pytest.mark.parametrize("secret", [None, "", "short-secret", "x" * 40, "changeme-changeme"])
def test_admin_webhook_url_requires_a_strong_secret(secret: str | None) -> None:
    """A webhook URL with a missing, short or placeholder secret is refused at start-up."""
    env = {"HERALD_ADMIN_WEBHOOK_URL": WEBHOOK}
    if secret is not None:
        env["HERALD_ADMIN_WEBHOOK_SECRET"] = secret
    with pytest.raises(SettingsError, match=r"^HERALD_ADMIN_WEBHOOK_SECRET") as raised:
        Settings.from_env(env)
    assert "at least 16 characters" in str(raised.value)
    assert "HERALD_ADMIN_WEBHOOK_URL is set" in str(raised.value)


def test_router_public_url_names_one_node_or_several() -> None:
    """One router URL as before; a comma-separated list names every router node of a
    cluster, in order, duplicates dropped, and the first is ``router_public_url``."""
    one = Settings.from_env({"HERALD_ROUTER_PUBLIC_URL": "wss://herald.example.ac.uk/ws"})
    assert one.router_public_urls == ("wss://herald.example.ac.uk/ws",)
    assert one.router_public_url == "wss://herald.example.ac.uk/ws"
    default = Settings.from_env({"HERALD_ROUTER_PORT": "9080"})
    assert default.router_public_urls == ("ws://127.0.0.1:9080/ws",)
    several = Settings.from_env(
        {
            "HERALD_ROUTER_PUBLIC_URL": (
                " wss://r1.example.ac.uk/ws, wss://r2.example.ac.uk:8443/ws,,"
                "wss://r1.example.ac.uk/ws"
            )
        }
    )
    assert several.router_public_urls == (
        "wss://r1.example.ac.uk/ws",
        "wss://r2.example.ac.uk:8443/ws",
    )
    assert several.router_public_url == "wss://r1.example.ac.uk/ws"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("wss://r1.example/ws, https://r2.example/ws", "must use one of the schemes ws, wss"),
        (" , ,", "names no router URL"),
        ("wss://r1.example/ws,wss:///ws", "names no host"),
    ],
)
def test_bad_router_urls_fail_clearly(value: str, message: str) -> None:
    """Every URL of the list is checked; a bad one names the variable."""
    with pytest.raises(SettingsError, match=r"^HERALD_ROUTER_PUBLIC_URL") as raised:
        Settings.from_env({"HERALD_ROUTER_PUBLIC_URL": value})
    assert message in str(raised.value)

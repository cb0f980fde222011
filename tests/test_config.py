from __future__ import annotations

import pytest
from pydantic import ValidationError

from streamchat.config import DEFAULT_DATABASE_URL, AuthMode, Settings, is_loopback


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOST", "PORT", "DATABASE_URL", "BROKER_URL", "AUTH_MODE", "ALLOWED_ORIGINS"):
        monkeypatch.delenv(f"STREAMCHAT_{name}", raising=False)
    settings = Settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.broker_url == "memory://"
    assert settings.auth_mode is AuthMode.DEV
    assert settings.allowed_origins == []


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMCHAT_PORT", "9000")
    monkeypatch.setenv("STREAMCHAT_ALLOWED_ORIGINS", "https://a.example, https://b.example/ ,")
    monkeypatch.setenv("STREAMCHAT_ADMIN_TOKEN", "s3cret-admin-token")
    settings = Settings()
    assert settings.port == 9000
    assert settings.allowed_origins == ["https://a.example", "https://b.example"]
    assert settings.admin_token == "s3cret-admin-token"


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMCHAT_PORT", "70000")
    with pytest.raises(ValueError, match="port"):
        Settings()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("token", ["short", "has some spaces in it", "x"])
def test_weak_admin_tokens_are_refused(token: str) -> None:
    with pytest.raises(ValidationError, match="admin_token"):
        Settings(admin_token=token)


@pytest.mark.parametrize("token", ["", "   "])
def test_a_blank_admin_token_leaves_administration_off(token: str) -> None:
    assert Settings(admin_token=token).admin_token is None

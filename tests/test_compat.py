"""The start-up check of the uvicorn and websockets internals the transport relies on."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from streamchat import compat
from streamchat.cli import app
from streamchat.errors import CannotStart


def test_the_installed_versions_are_supported() -> None:
    assert compat.problems() == []
    for package, minor in compat.SUPPORTED.items():
        assert compat._minor(metadata.version(package)) == minor


def test_another_minor_release_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(compat.SUPPORTED, "uvicorn", "0.30")
    installed = metadata.version("uvicorn")
    assert compat.problems() == [f"uvicorn {installed} is installed; supported is 0.30.x"]
    with pytest.raises(CannotStart, match=r"needs uvicorn 0\.30\.x, websockets"):
        compat.check_server()


def test_a_missing_method_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(WebSocketsSansIOProtocol, "send_receive_event_to_app")
    assert compat.problems() == ["WebSocketsSansIOProtocol has no method send_receive_event_to_app"]


def test_a_missing_attribute_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    init = WebSocketsSansIOProtocol.__init__

    def without_frames(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        del self.frames

    monkeypatch.setattr(WebSocketsSansIOProtocol, "__init__", without_frames)
    assert compat.problems() == ["WebSocketsSansIOProtocol has no attribute frames"]


def test_serve_refuses_to_start_naming_the_supported_versions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(compat.SUPPORTED, "websockets", "13.0")
    monkeypatch.setenv("STREAMCHAT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    result = CliRunner().invoke(app, ["serve", "--port", "1"])
    assert result.exit_code == 2
    output = " ".join(result.output.split())  # the console wraps long lines
    assert "needs uvicorn 0.54.x, websockets 13.0.x" in output
    assert "supported is 13.0.x" in output

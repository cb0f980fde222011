from __future__ import annotations

from tests.ws.conftest import chat_settings, server, server_factory

__all__ = ["chat_settings", "server", "server_factory"]

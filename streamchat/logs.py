"""Logging set-up: text or JSON lines, and the one line each request logs when it starts.

Every HTTP request to the API and every WebSocket request logs a line on the
``streamchat.access`` logger as it starts, with structured fields (``kind``,
``method``/``type``, ``path``/``room``, ``user_id``, ``request_id``). With
``STREAMCHAT_LOG_FORMAT=json`` every log line is one JSON object carrying them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "ACCESS",
    "REQUEST_ID_HEADER",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "log_http",
    "log_ws",
    "new_request_id",
    "request_id_of",
]

#: The logger of the per-request lines; its level can be set on its own.
ACCESS: Final = logging.getLogger("streamchat.access")
#: A request's id, from the client (if it is one we can log safely) or new; echoed back.
REQUEST_ID_HEADER: Final = "x-request-id"
# Ids travel into logs: printable, short, no spaces or quotes.
_SANE_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_of(headers: Mapping[str, str]) -> str:
    """The client's request id when it is one we can log safely, else a new one."""
    given = headers.get(REQUEST_ID_HEADER)
    if given is not None and _SANE_ID.fullmatch(given):
        return given
    return new_request_id()


#: Attributes every LogRecord has; anything else on a record came as ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}

_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

#: Characters that could end a log line early or drive a terminal: C0 and C1 controls and
#: the Unicode line separators. A client's path, room or id is written with them escaped.
_ESCAPES = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
}
#: Fields that uvicorn adds for its coloured console, meaningless in a JSON line.
_NOT_FIELDS = frozenset({"color_message"})


class TextFormatter(logging.Formatter):
    """``time level logger: message``, one line per message whatever the message holds.

    A traceback still spans lines: it comes after the message, from the server.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record).translate(_ESCAPES)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _NOT_FIELDS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(level: str, fmt: str = "text") -> None:
    """Log to stderr at ``level``, as ``text`` or ``json`` lines (uvicorn's loggers included)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own loggers go through the root handler, so they share the format.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Alembic narrates every start at INFO; only its warnings matter to an operator.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))


def log_http(method: str, path: str, user_id: str | None, request_id: str) -> None:
    if ACCESS.isEnabledFor(logging.INFO):
        ACCESS.info(
            "%s %s user=%s request_id=%s",
            method,
            path,
            user_id or "-",
            request_id,
            extra={
                "kind": "http",
                "method": method,
                "path": path,
                "user_id": user_id,
                "request_id": request_id,
            },
        )


def log_ws(
    frame_type: str,
    room: str | None,
    user_id: str | None,
    request_id: str,
    frame_id: int | str | None,
) -> None:
    """One WebSocket request: its connection's request id, and the frame's own ``id``."""
    ACCESS.info(
        "ws %s %s user=%s request_id=%s id=%s",
        frame_type,
        room or "-",
        user_id or "-",
        request_id,
        "-" if frame_id is None else frame_id,
        extra={
            "kind": "ws",
            "type": frame_type,
            "room": room,
            "user_id": user_id,
            "request_id": request_id,
            "id": frame_id,
        },
    )

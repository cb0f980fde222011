"""Log lines: JSON when asked, and the fields every request line carries."""

from __future__ import annotations

import json
import logging

from streamchat.logs import JsonFormatter, log_http


def test_json_lines_carry_the_structured_fields() -> None:
    record = logging.LogRecord(
        "streamchat.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None
    )
    record.kind = "http"
    record.request_id = "r-1"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "GET /x"
    assert line["level"] == "info"
    assert line["logger"] == "streamchat.access"
    assert (line["kind"], line["request_id"]) == ("http", "r-1")
    assert line["time"].endswith("+00:00")


def test_json_lines_carry_tracebacks() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in line["exc"]


def test_request_lines_are_skipped_below_info(caplog: object) -> None:
    logger = logging.getLogger("streamchat.access")
    previous = logger.level
    logger.setLevel(logging.WARNING)
    try:
        handler_records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = handler_records.append  # type: ignore[method-assign]
        logger.addHandler(handler)
        log_http("GET", "/api/me", None, "r")
        logger.removeHandler(handler)
        assert handler_records == []
    finally:
        logger.setLevel(previous)


def test_text_lines_cannot_be_forged_by_what_a_client_sends() -> None:
    from streamchat.logs import TextFormatter

    record = logging.LogRecord(
        "streamchat.access",
        logging.INFO,
        __file__,
        1,
        "GET %s",
        ("/x\n2026-11-30 03:00:00,000 INFO streamchat.access: FORGED\x1b[31m\u2028",),
        None,
    )
    line = TextFormatter("%(name)s: %(message)s").format(record)
    assert "\n" not in line
    assert "\x1b" not in line
    assert "\u2028" not in line
    assert line == (
        "streamchat.access: GET /x\\x0a2026-11-30 03:00:00,000 INFO streamchat.access: "
        "FORGED\\x1b[31m\\u2028"
    )


def test_json_lines_leave_out_console_colours() -> None:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Started", (), None)
    record.color_message = "\x1b[32mStarted\x1b[0m"
    assert "color_message" not in json.loads(JsonFormatter().format(record))

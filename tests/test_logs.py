"""The command's logging: levels and JSON lines a log pipeline can filter on."""

from __future__ import annotations

import logging

import orjson
import pytest

from livesync.logs import JsonFormatter, configure


def test_json_lines_carry_the_extra_fields_and_the_exception() -> None:
    record = logging.makeLogRecord(
        {"name": "livesync.writes", "levelno": logging.ERROR, "levelname": "ERROR",
         "msg": "method %s failed", "args": ("ship",), "request": "w7", "session": "s-1"}
    )  # fmt: skip
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry["level"] == "error" and entry["logger"] == "livesync.writes"
    assert entry["message"] == "method ship failed"
    assert (entry["request"], entry["session"]) == ("w7", "s-1")
    assert "ValueError: boom" in entry["exception"]


def test_level_and_format_come_from_arguments_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        monkeypatch.setenv("LIVESYNC_LOG_LEVEL", "error")
        monkeypatch.setenv("LIVESYNC_LOG_FORMAT", "json")
        configure()
        assert root.level == logging.ERROR
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        configure("debug", "text")
        assert root.level == logging.DEBUG
        assert not isinstance(root.handlers[0].formatter, JsonFormatter)
        with pytest.raises(SystemExit, match="log level"):
            configure("loud")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)

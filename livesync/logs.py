"""Logging for the ``livesync`` command: a level, and plain or JSON lines.

JSON lines (``--log-format json`` or ``LIVESYNC_LOG_FORMAT=json``) carry ``ts``, ``level``,
``logger`` and ``message``, the exception text if any, and every ``extra=`` field a call
passed (for example a write's ``request`` id and ``session``), so a log pipeline can
filter on them without parsing messages.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import Any

import orjson

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str | None = None, fmt: str | None = None, verbose: bool = False) -> None:
    """Set up the root logger from arguments, else ``LIVESYNC_LOG_LEVEL`` /
    ``LIVESYNC_LOG_FORMAT``, else warnings as text (``verbose``: info)."""
    level = level or os.environ.get("LIVESYNC_LOG_LEVEL") or ("info" if verbose else "warning")
    fmt = fmt or os.environ.get("LIVESYNC_LOG_FORMAT") or "text"
    if level.lower() not in LEVELS:
        raise SystemExit(f"livesync: log level {level!r} is not one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise SystemExit(f"livesync: log format {fmt!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

"""Exceptions shared across livesync's layers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

from .protocol import ErrorCode


class LiveSyncError(Exception):
    """Base class of every error livesync raises on purpose."""


class CaptureError(LiveSyncError, RuntimeError):
    """A write cannot be captured exactly; the transaction must not commit as it is.

    Raised inside the transaction (never after COMMIT), so rolling back and retrying is
    always safe. The message says what to change.
    """


Fields = Mapping[str, str] | Iterable[tuple[str, str]]


class WriteError(LiveSyncError):
    """A client write or method call is refused; the client gets a rejected ``ack``.

    Raise a subclass from a method or a write rule. ``message`` is sent to the client as
    is, so it must not contain anything the caller may not see. ``fields`` maps JSON
    Pointers (``"/title"``, ``"/tags/0"``; a bare ``"title"`` is taken as ``"/title"``)
    to what is wrong there; it becomes the ack's ``fields`` list. The transaction is
    rolled back: nothing of the refused request is committed.
    """

    code: ClassVar[ErrorCode]

    def __init__(self, message: str, *, fields: Fields | None = None) -> None:
        super().__init__(message)
        pairs = fields.items() if isinstance(fields, Mapping) else (fields or ())
        self.fields: list[dict[str, str]] = [
            {"path": path if path.startswith("/") or not path else "/" + path, "message": text}
            for path, text in pairs
        ]


class Invalid(WriteError):
    """The request's data is wrong (code ``invalid``); say where in ``fields``."""

    code = ErrorCode.INVALID


class Conflict(WriteError):
    """The request conflicts with the current state (code ``conflict``).

    ``version`` is the document's current version, when there is one document at stake;
    it is sent as the ack's ``v`` so the client can rebase its write.
    """

    code = ErrorCode.CONFLICT

    def __init__(
        self, message: str, *, fields: Fields | None = None, version: int | None = None
    ) -> None:
        super().__init__(message, fields=fields)
        self.version = version


class NotFound(WriteError):
    """What the request names does not exist (code ``not-found``)."""

    code = ErrorCode.NOT_FOUND

"""Exceptions shared across livesync's layers."""

from __future__ import annotations


class LiveSyncError(Exception):
    """Base class of every error livesync raises on purpose."""


class CaptureError(LiveSyncError, RuntimeError):
    """A write cannot be captured exactly; the transaction must not commit as it is.

    Raised inside the transaction (never after COMMIT), so rolling back and retrying is
    always safe. The message says what to change.
    """

"""livesync: live, replicated collections from SQLAlchemy models.

Application code writes through SQLAlchemy as always; livesync captures each committed
transaction as one change set of JSON documents and RFC 6902 patches, stores it in a
transactional outbox, and publishes it through a broker (in-memory or Redis Streams).

The names below load on first use (PEP 562), so that importing a leaf module such as
``livesync.protocol`` does not drag in SQLAlchemy, Redis or asyncio.
"""

from importlib import import_module as _import_module
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from .brokers import Broker, Entry, HistoryLost, Position, connect_broker
    from .changes import Change, ChangeSet
    from .collections import Collection, CollectionError, Versioned
    from .config import Settings
    from .documents import UnsupportedColumnType, decode_id, encode_id
    from .errors import CaptureError, Conflict, Invalid, LiveSyncError, NotFound, WriteError
    from .live import LiveSync
    from .outbox import Relay
    from .publications import Context, Forbidden
    from .push import Target, to_channel, to_session, to_user
    from .worker import Worker
    from .workqueue import QueueModeError
    from .writes import WriteRules

_EXPORTS = {
    "Broker": "brokers",
    "CaptureError": "errors",
    "Change": "changes",
    "ChangeSet": "changes",
    "Collection": "collections",
    "CollectionError": "collections",
    "Conflict": "errors",
    "Context": "publications",
    "Entry": "brokers",
    "Forbidden": "publications",
    "HistoryLost": "brokers",
    "Invalid": "errors",
    "LiveSync": "live",
    "LiveSyncError": "errors",
    "NotFound": "errors",
    "Position": "brokers",
    "QueueModeError": "workqueue",
    "Relay": "outbox",
    "Settings": "config",
    "Target": "push",
    "UnsupportedColumnType": "documents",
    "Versioned": "collections",
    "Worker": "worker",
    "WriteError": "errors",
    "WriteRules": "writes",
    "connect_broker": "brokers",
    "decode_id": "documents",
    "encode_id": "documents",
    "to_channel": "push",
    "to_session": "push",
    "to_user": "push",
}

__all__ = [
    "Broker",
    "CaptureError",
    "Change",
    "ChangeSet",
    "Collection",
    "CollectionError",
    "Conflict",
    "Context",
    "Entry",
    "Forbidden",
    "HistoryLost",
    "Invalid",
    "LiveSync",
    "LiveSyncError",
    "NotFound",
    "Position",
    "QueueModeError",
    "Relay",
    "Settings",
    "Target",
    "UnsupportedColumnType",
    "Versioned",
    "Worker",
    "WriteError",
    "WriteRules",
    "connect_broker",
    "decode_id",
    "encode_id",
    "to_channel",
    "to_session",
    "to_user",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> _Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'livesync' has no attribute {name!r}")
    value = getattr(_import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

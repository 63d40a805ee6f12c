"""livesync: live, replicated collections from SQLAlchemy models.

Application code writes through SQLAlchemy as always; livesync captures each committed
transaction as one change set of JSON documents and RFC 6902 patches, stores it in a
transactional outbox, and publishes it through a broker (in-memory or Redis Streams).
"""

from .brokers import Broker, Entry, HistoryLost, Position, connect_broker
from .changes import Change, ChangeSet
from .collections import Collection, CollectionError, Versioned
from .config import Settings
from .documents import UnsupportedColumnType, decode_id, encode_id
from .errors import CaptureError, LiveSyncError
from .live import LiveSync
from .outbox import Relay

__all__ = [
    "Broker",
    "CaptureError",
    "Change",
    "ChangeSet",
    "Collection",
    "CollectionError",
    "Entry",
    "HistoryLost",
    "LiveSync",
    "LiveSyncError",
    "Position",
    "Relay",
    "Settings",
    "UnsupportedColumnType",
    "Versioned",
    "connect_broker",
    "decode_id",
    "encode_id",
]

__version__ = "0.1.0"

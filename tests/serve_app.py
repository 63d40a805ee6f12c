"""The app ``livesync serve tests.serve_app:live`` runs in the multi-process gateway tests.

Configured entirely from LIVESYNC_* variables set by the test (database, broker, topic).
"""

from __future__ import annotations

from livesync import LiveSync
from tests.models import Item

live = LiveSync()
live.collection(Item, publish=True)

"""A window (``order_by`` + ``limit``) kept in order in memory, so most changes need no query.

Pure logic, no I/O. The window holds at most ``limit`` document ids sorted by the
publication's order (:func:`livesync.ordering.compile_order`). Its invariant: every matching
document *not* in the window sorts after the window's last entry, and ``more`` says whether
such documents may exist at all. From that, one change decides alone whether a document
enters, stays or leaves, and which document a newcomer pushes out. Only when a document
leaves a full window does the gateway not know which document comes next: the window is then
``short`` and the gateway fetches it (re-runs the window query once for the burst).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from typing import Any

from ..ordering import SortKey


class Window:
    """Sorted ids of one window channel. See the module docstring for the invariant."""

    def __init__(self, order: SortKey, limit: int) -> None:
        self.order = order
        self.limit = limit
        self._entries: list[tuple[tuple[Any, ...], str]] = []
        self._sort_keys: dict[str, tuple[Any, ...]] = {}
        self.more = False  # matching documents beyond the window may exist

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._sort_keys

    @property
    def short(self) -> bool:
        """True when documents beyond the window may belong in it: fetch them."""
        return self.more and len(self._entries) < self.limit

    def ids(self) -> list[str]:
        return [doc_id for _, doc_id in self._entries]

    def load(self, docs: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Replace the contents with a fresh result of the window query (in any order)."""
        self._entries = sorted((self.order(doc), doc_id) for doc_id, doc in docs)
        self._sort_keys = {doc_id: sort_key for sort_key, doc_id in self._entries}
        self.more = len(self._entries) >= self.limit

    def discard(self, doc_id: str) -> None:
        sort_key = self._sort_keys.pop(doc_id, None)
        if sort_key is not None:
            self._entries.pop(bisect.bisect_left(self._entries, (sort_key, doc_id)))

    def place(self, doc_id: str, doc: Mapping[str, Any]) -> tuple[bool, str | None]:
        """Offer a matching document, new to the window or one it holds that changed.

        Returns ``(inside, evicted)``: whether it is now in the window, and the id of the
        document it pushed out of a full window, if any. A document that cannot be placed
        (it sorts after the window's last entry while documents beyond may exist) stays out,
        and the window is ``short`` if it has room: the next fetch decides. The window's
        own last document stays where it is as long as it does not move later: every
        document beyond sorts after its old place.
        """
        sort_key = self.order(doc)
        entries = self._entries
        old = self._sort_keys.get(doc_id)
        if old is not None:
            was_last = entries[-1][1] == doc_id
            self.discard(doc_id)
            if was_last and (sort_key, doc_id) <= (old, doc_id):
                self._insert(sort_key, doc_id)
                return True, None
        if not self.more and len(entries) < self.limit:
            self._insert(sort_key, doc_id)
            return True, None
        if entries and (sort_key, doc_id) < entries[-1]:
            self._insert(sort_key, doc_id)
            if len(entries) > self.limit:
                _, evicted = entries.pop()
                del self._sort_keys[evicted]
                self.more = True
                return True, evicted
            return True, None
        self.more = True  # it matches and sorts after the window: it is beyond
        return False, None

    def _insert(self, sort_key: tuple[Any, ...], doc_id: str) -> None:
        bisect.insort(self._entries, (sort_key, doc_id))
        self._sort_keys[doc_id] = sort_key

"""Routing: which change of a change set each subscription key must see, and how.

Pure logic, no I/O. A *channel* is one subscription key: one resolved publication query,
shared by every subscriber asking for the same rows. It remembers which documents it
holds, at which version (never the documents themselves: memory per channel is one small
dict, not a copy of the data per connection). For each change set the router computes,
once per channel, the wire changes:

* a document that matches the channel's filter and is not held -> ``put`` (whole document);
* a held document that still matches -> ``patch`` when the channel holds exactly the
  patch's base version, otherwise ``put``;
* a held document that no longer matches, or was deleted -> ``del``;
* a change not newer than the held version -> nothing (duplicate or out of order).

A *window* channel (``order_by`` + ``limit``, with a filter and an order both evaluated in
Python) also keeps its ids in order (:class:`~livesync.server.window.Window`): a newcomer
that sorts inside a full window enters and pushes the last document out, and only a document
leaving a full window makes the channel *dirty*, so the hub fetches what comes next.

Channels whose query cannot be evaluated in Python (see :mod:`livesync.matching` and
:mod:`livesync.ordering`) are *requery* channels: the router only marks them dirty when
their collection changes. The hub re-runs a dirty channel's query and the router diffs the
result against what the channel held (:meth:`Router.refresh`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..changes import Change, ChangeSet
from ..matching import CompiledFilter, SubscriptionIndex
from ..publications import Query
from .window import Window

WireChange = dict[str, Any]


@dataclass
class Channel:
    """One subscription key and what it holds: document id -> version."""

    key: str
    query: Query
    compiled: CompiledFilter | None  # None: a requery channel
    window: Window | None = None  # a window channel kept in memory
    order: list[dict[str, Any]] | None = None  # ready.order: how clients sort the documents
    held: dict[str, int | None] = field(default_factory=dict)
    ready: bool = False
    pending: list[tuple[int, ChangeSet]] = field(default_factory=list)
    recent: dict[str, Change] = field(default_factory=dict)  # requery: changes since last run

    @property
    def collection(self) -> str:
        return self.query.collection.name


class Router:
    """Channels by key, indexed by the equalities of their filters."""

    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        self._index: SubscriptionIndex[str] = SubscriptionIndex()
        self._requery: dict[str, set[str]] = {}  # collection -> requery channel keys
        # (collection, id) -> keys of compiled channels holding that document, so a change
        # finds the channels it may remove a document from without scanning all channels.
        self._holders: dict[tuple[str, str], set[str]] = {}
        # collection -> compiled channels still reading their snapshot: they keep every
        # change set of their collection, since a document's *leaving* cannot be told from
        # holders they do not have yet (see :meth:`start`).
        self._starting: dict[str, set[str]] = {}

    def add(self, channel: Channel) -> None:
        self.channels[channel.key] = channel
        if channel.compiled is not None and not channel.ready:
            self._starting.setdefault(channel.collection, set()).add(channel.key)
        if channel.compiled is None:
            self._requery.setdefault(channel.collection, set()).add(channel.key)
        else:
            self._index.add(channel.key, channel.collection, channel.compiled)

    def remove(self, key: str) -> None:
        channel = self.channels.pop(key, None)
        if channel is None:
            return
        for doc_id in list(channel.held):
            self._release(channel, doc_id)
        self._index.remove(key)
        self._requery.get(channel.collection, set()).discard(key)
        self._starting.get(channel.collection, set()).discard(key)

    def start(self, key: str, rows: list[Row]) -> list[tuple[int, WireChanges]]:
        """Mark a channel initialised from a snapshot of ``(id, version, doc)`` rows, and route
        the change sets it kept meanwhile. Returns ``(pos, changes)`` to deliver.

        Only the last kept change of each document is routed: an earlier one may predate
        the snapshot (the hub can process a change after the snapshot read that was
        committed before it) and would bring back, say, an order that has since left the
        filter, if the change that made it leave were not routed after it.
        """
        channel = self.channels[key]
        for doc_id, version, _ in rows:
            self._hold(channel, doc_id, version)
        if channel.window is not None:
            channel.window.load((doc_id, doc) for doc_id, _, doc in rows)
        channel.ready = True
        self._starting.get(channel.collection, set()).discard(key)
        pending, channel.pending = channel.pending, []
        last: dict[str, int] = {}
        for index, (_, changeset) in enumerate(pending):
            for change in changeset.changes:
                if change.collection == channel.collection:
                    last[change.id] = index
        out: list[tuple[int, WireChanges]] = []
        for index, (pos, changeset) in enumerate(pending):
            latest = [
                c
                for c in changeset.changes
                if c.collection == channel.collection and last.get(c.id) == index
            ]
            changes = self._route_channel(channel, latest)
            if changes:
                out.append((pos, changes))
        return out

    def route(self, pos: int, changeset: ChangeSet) -> tuple[dict[str, WireChanges], set[str]]:
        """Per-key wire changes for one change set, and the requery keys it made dirty."""
        touched: dict[str, list[Change]] = {}
        dirty: set[str] = set()
        for change in changeset.changes:
            collection = change.collection
            for key in self._requery.get(collection, ()):
                dirty.add(key)
                if change.id:
                    self.channels[key].recent[change.id] = change
            keys = set(self._index.candidates(collection, change.doc))
            keys.update(self._holders.get((collection, change.id), ()))
            for key in keys:
                touched.setdefault(key, []).append(change)
        for collection in {change.collection for change in changeset.changes}:
            for key in self._starting.get(collection, ()):
                self.channels[key].pending.append((pos, changeset))
        out: dict[str, WireChanges] = {}
        for key, changes in touched.items():
            channel = self.channels[key]
            if not channel.ready:
                continue  # kept whole above
            routed = self._route_channel(channel, changes)
            if routed:
                out[key] = routed
            if channel.window is not None and channel.window.short:
                dirty.add(key)
        return out, dirty

    def dirty(self, key: str) -> bool:
        """Whether a channel still needs its query re-run (a window fetches its next rows)."""
        channel = self.channels.get(key)
        if channel is None or not channel.ready:
            return False
        return channel.compiled is None or (channel.window is not None and channel.window.short)

    def refresh(self, key: str, rows: list[Row]) -> WireChanges:
        """Wire changes turning what a channel held into a fresh result of its query.

        A document still in the result whose new version came from a change the channel saw,
        made from exactly the version it held, goes out as that change's patch; anything else
        that changed goes out whole. A window reloads its order from the result.
        """
        channel = self.channels[key]
        collection = channel.collection
        fresh = {doc_id: (version, doc) for doc_id, version, doc in rows}
        recent, channel.recent = channel.recent, {}
        out: WireChanges = []
        for doc_id in [d for d in channel.held if d not in fresh]:
            self._release(channel, doc_id)
            out.append(_delete(collection, doc_id, None))
        for doc_id, (version, doc) in fresh.items():
            held = channel.held.get(doc_id, _ABSENT)
            if held == version:
                continue
            change = recent.get(doc_id)
            if (
                change is not None
                and change.patch is not None
                and change.version == version
                and change.prev_version == held
            ):
                out.append(_patch(change))
            else:
                out.append(_put(collection, doc_id, version, doc))
            self._hold(channel, doc_id, version)
        if channel.window is not None:
            channel.window.load((doc_id, doc) for doc_id, (_, doc) in fresh.items())
        return out

    def _hold(self, channel: Channel, doc_id: str, version: int | None) -> None:
        channel.held[doc_id] = version
        if channel.compiled is not None:
            self._holders.setdefault((channel.collection, doc_id), set()).add(channel.key)

    def _release(self, channel: Channel, doc_id: str) -> None:
        del channel.held[doc_id]
        holders = self._holders.get((channel.collection, doc_id))
        if holders is not None:
            holders.discard(channel.key)
            if not holders:
                del self._holders[(channel.collection, doc_id)]

    def _route_channel(self, channel: Channel, changes: Iterable[Change]) -> WireChanges:
        assert channel.compiled is not None
        out: WireChanges = []
        for change in changes:
            if change.collection != channel.collection:
                continue
            if change.op == "reset":
                continue  # handled by the hub (the channel is re-snapshotted)
            held = channel.held
            had = change.id in held
            base = held.get(change.id)
            if had and base is not None and change.version is not None and change.version <= base:
                continue  # stale or duplicate
            doc = change.doc
            matches = doc is not None and channel.compiled.predicate(doc)
            window = channel.window
            if window is not None:
                if not matches:
                    window.discard(change.id)
                else:
                    assert doc is not None
                    matches, evicted = window.place(change.id, doc)
                    if evicted is not None:
                        self._release(channel, evicted)
                        out.append(_delete(change.collection, evicted, None))
            if matches:
                assert doc is not None
                self._hold(channel, change.id, change.version)
                if had and change.patch is not None and change.prev_version == base:
                    out.append(_patch(change))
                else:
                    out.append(_put(change.collection, change.id, change.version, doc))
            elif had:
                self._release(channel, change.id)
                out.append(_delete(change.collection, change.id, change.version))
        return out


WireChanges = list[WireChange]
Row = tuple[str, int, dict[str, Any]]  # a query result row: id, version, document


def _put(collection: str, doc_id: str, version: int | None, doc: dict[str, Any]) -> WireChange:
    return {"c": collection, "id": doc_id, "op": "put", "v": version, "d": doc}


def _patch(change: Change) -> WireChange:
    return {
        "c": change.collection,
        "id": change.id,
        "op": "patch",
        "v": change.version,
        "pv": change.prev_version,
        "p": change.patch,
    }


def _delete(collection: str, doc_id: str, version: int | None) -> WireChange:
    out: WireChange = {"c": collection, "id": doc_id, "op": "del"}
    if version is not None:
        out["v"] = version
    return out


_ABSENT = object()


def replay(query_filter: CompiledFilter, collection: str, changes: Iterable[Change]) -> WireChanges:
    """Missed changes for a resuming subscriber: whole documents, no patches (the client may
    not hold the base), and deletes for anything that left (harmless if never held)."""
    out: WireChanges = []
    for change in changes:
        if change.collection != collection or change.op == "reset":
            continue
        if change.doc is not None and query_filter.predicate(change.doc):
            out.append(_put(collection, change.id, change.version, change.doc))
        else:
            out.append(_delete(collection, change.id, change.version))
    return out


def encode_part(key: str, changes: WireChanges) -> bytes:
    """One channel's part of a ``tx`` frame, encoded once and shared by its subscribers."""
    return orjson.dumps({"key": key, "ch": changes})


def tx_frame(pos: int, parts: list[bytes]) -> bytes:
    """A whole ``tx`` frame from pre-encoded parts: a join, not a per-connection encode."""
    return b'{"type":"tx","pos":%d,"parts":[%b]}' % (pos, b",".join(parts))

"""A replicated cache that applies change sets by per-document version (pure, no I/O).

This is the reference for how any consumer (the JavaScript client, a Python worker, the
tests' oracle) must apply change sets so that out-of-order and duplicate delivery (the
outbox relay is at-least-once; two writers may publish in the opposite order from their
commits) still converge:

* A change whose version is not newer than the cached one is ignored (stale or duplicate).
* An update made from exactly the cached version is applied as its RFC 6902 patch, and the
  result is checked against the full document it carries; an update from any other
  version (a gap) takes the full document.
* A delete removes the document if it is newer than the cached version.
* An insert of an id the cache already holds at an equal or newer version is either a
  duplicate (same document: ignored) or an id reused after a delete this cache never saw;
  the id is then listed in :attr:`Replica.stale` so the owner can re-read it.
* A ``reset`` drops the whole collection and lists it in :attr:`Replica.resets`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jsonpatch

from .changes import Change, ChangeSet

Key = tuple[str, str]


class PatchMismatch(AssertionError):
    """A patch applied to the version it was made from did not give the published document."""


@dataclass
class Cached:
    version: int | None
    doc: dict[str, Any]


@dataclass
class Replica:
    """Documents by (collection, id), each with the version it was last written at."""

    docs: dict[Key, Cached] = field(default_factory=dict)
    stale: set[Key] = field(default_factory=set)
    resets: set[str] = field(default_factory=set)
    applied_patches: int = 0
    verify_patches: bool = True

    def apply(self, changeset: ChangeSet) -> None:
        """Apply every change of one transaction (a transaction is never split)."""
        for change in changeset.changes:
            self.apply_change(change)

    def apply_change(self, change: Change) -> None:
        if change.op == "reset":
            self.resets.add(change.collection)
            self.docs = {k: v for k, v in self.docs.items() if k[0] != change.collection}
            return
        key = (change.collection, change.id)
        cached = self.docs.get(key)
        if change.op == "delete":
            if cached is not None and _newer(change.version, cached.version):
                del self.docs[key]
            return
        assert change.doc is not None, change
        if cached is None:
            self.docs[key] = Cached(change.version, change.doc)
            return
        if not _newer(change.version, cached.version):
            if change.op == "insert" and change.doc != cached.doc:
                self.stale.add(key)
            return
        if (
            change.op == "update"
            and change.patch is not None
            and change.prev_version == cached.version
            and self.verify_patches
        ):
            patched = jsonpatch.apply_patch(cached.doc, change.patch)
            if patched != change.doc:
                raise PatchMismatch(f"{key}: patch gave {patched}, document is {change.doc}")
            self.applied_patches += 1
        self.docs[key] = Cached(change.version, change.doc)

    def collection(self, name: str) -> dict[str, Cached]:
        """The cached documents of one collection, by id."""
        return {doc_id: c for (coll, doc_id), c in self.docs.items() if coll == name}


def _newer(version: int | None, than: int | None) -> bool:
    if version is None or than is None:
        return True  # unversioned changes (resync deletes) always win
    return version > than

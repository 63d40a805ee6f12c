"""Change sets: what one committed transaction did to the live collections.

Pure data and pure functions, no database access: capture builds :class:`PendingChange`
objects during a transaction, folds them per document, and turns them into one
:class:`ChangeSet` at commit. The encoded change set is the payload of the outbox row and
of the broker entry; its format is specified in ``docs/architecture.md``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from .patches import diff, escape_pointer

Op = Literal["insert", "update", "delete", "reset"]
FORMAT = 1


class _Unknown:
    """Marks a field whose old value was never loaded, so no diff can be computed."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


@dataclass(frozen=True, slots=True)
class Change:
    """The net effect of one committed transaction on one document.

    * ``insert``: ``doc`` is the whole new document. An insert of an id the reader already
      holds replaces it (the id was deleted and reused).
    * ``update``: ``doc`` is the whole document after the change, ``patch`` the RFC 6902
      patch from ``prev_version`` to ``version`` (``None`` when only ``doc`` is known,
      for example after :meth:`LiveSync.resync`).
    * ``delete``: no ``doc``; ``version`` is one past the last version the row had.
    * ``reset``: a collection-wide "re-read everything" (``id`` is empty); emitted by a
      full resync because livesync cannot know which rows changed outside the ORM.
    """

    collection: str
    id: str
    op: Op
    version: int | None = None
    prev_version: int | None = None
    doc: dict[str, Any] | None = None
    patch: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"collection": self.collection, "id": self.id, "op": self.op}
        if self.version is not None:
            out["version"] = self.version
        if self.prev_version is not None:
            out["prev_version"] = self.prev_version
        if self.doc is not None:
            out["doc"] = self.doc
        if self.patch is not None:
            out["patch"] = self.patch
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Change:
        return cls(
            collection=data["collection"],
            id=data["id"],
            op=data["op"],
            version=data.get("version"),
            prev_version=data.get("prev_version"),
            doc=data.get("doc"),
            patch=data.get("patch"),
        )


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """All changes of one committed transaction, published and applied as one unit.

    Capture folds a transaction's writes per document, so a change set holds at most one
    change per document (the gateway's router relies on it)."""

    changes: tuple[Change, ...]
    #: 32 random hex digits (the form of ``uuid4().hex``, at a sixth of its CPU cost).
    id: str = field(default_factory=lambda: os.urandom(16).hex())
    ts: float = field(default_factory=time.time)

    def encode(self) -> bytes:
        """The wire and outbox form: compact JSON, encoded once and reused everywhere."""
        return orjson.dumps(
            {
                "format": FORMAT,
                "id": self.id,
                "ts": self.ts,
                "changes": [change.to_dict() for change in self.changes],
            }
        )

    @classmethod
    def decode(cls, payload: bytes | str) -> ChangeSet:
        """Parse :meth:`encode` output; raises ``ValueError`` on anything else."""
        try:
            data = orjson.loads(payload)
            if data.get("format") != FORMAT:
                raise ValueError(f"unsupported change set format {data.get('format')!r}")
            changes = tuple(Change.from_dict(item) for item in data["changes"])
            return cls(changes=changes, id=str(data["id"]), ts=float(data["ts"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed change set: {exc}") from exc


def field_patch(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """RFC 6902 ops turning ``before`` into ``after`` for the top-level fields in ``before``.

    ``before`` holds only fields that changed, each with its old value or :data:`UNKNOWN`.
    Known old values get a minimal nested diff (so a change deep inside a JSON column is a
    one-op patch); unknown ones get a whole-field ``replace``.
    """
    ops: list[dict[str, Any]] = []
    for key, old in before.items():
        new = after.get(key)
        path = "/" + escape_pointer(key)
        if old is UNKNOWN:
            ops.append({"op": "replace", "path": path, "value": new})
        else:
            ops.extend(diff(old, new, path))
    return ops


@dataclass(slots=True)
class PendingChange:
    """One document's accumulated change inside an open transaction (or savepoint).

    ``before`` keeps the earliest old value of each changed field; ``after`` the latest
    whole document (``None`` once deleted). Folding with :meth:`absorb` in commit order and
    calling :meth:`finish` yields the net :class:`Change`, or ``None`` when nothing is left
    to say (insert then delete, or an update that changed nothing).
    """

    collection: str
    id: str
    existed_before: bool
    after: dict[str, Any] | None
    version: int | None
    prev_version: int | None = None
    before: dict[str, Any] = field(default_factory=dict)
    replaced: bool = False
    full_only: bool = False
    pk: tuple[Any, ...] = ()
    """Primary key values, kept for the rare case capture must write to the row again."""

    def absorb(self, newer: PendingChange) -> None:
        """Fold a later change of the same document into this one."""
        if newer.after is None:
            self.after = None
        elif self.after is None and self.existed_before:
            self.replaced = True  # deleted, then a row with the same key inserted
            self.after = newer.after
            self.pk = newer.pk or self.pk
        else:
            if newer.replaced and self.existed_before:
                self.replaced = True  # a released savepoint deleted and re-inserted it
                self.pk = newer.pk or self.pk
            if self.existed_before and not self.replaced:
                for key, old in newer.before.items():
                    self.before.setdefault(key, old)
            self.after = newer.after
            self.full_only = self.full_only or newer.full_only
        if newer.version is not None:
            self.version = newer.version
        if self.prev_version is None and self.existed_before:
            self.prev_version = newer.prev_version

    def finish(self) -> Change | None:
        if not self.existed_before:
            if self.after is None:
                return None
            return Change(self.collection, self.id, "insert", self.version, None, self.after)
        if self.after is None:
            # After a re-insert in this transaction the row's own version restarted; readers
            # hold prev_version, so the delete must be newer than that.
            version = self.version
            if self.prev_version is not None and (version is None or version <= self.prev_version):
                version = self.prev_version + 1
            return Change(self.collection, self.id, "delete", version, self.prev_version)
        if self.replaced:
            # Deleted and inserted again in one transaction: capture renumbered the row past
            # its old version, so readers see one newer version of the same document.
            return Change(
                self.collection, self.id, "update", self.version, self.prev_version, self.after
            )
        patch = None if self.full_only else field_patch(self.before, self.after)
        if patch == [] and self.version == self.prev_version:
            return None
        return Change(
            self.collection,
            self.id,
            "update",
            self.version,
            self.prev_version,
            self.after,
            patch,
        )


def fold(pending: dict[tuple[str, str], PendingChange], change: PendingChange) -> None:
    """Add ``change`` to a per-transaction buffer keyed by (collection, id)."""
    key = (change.collection, change.id)
    existing = pending.get(key)
    if existing is None:
        pending[key] = change
    else:
        existing.absorb(change)

"""SQLAlchemy session hooks that turn committed ORM writes into one ChangeSet per transaction.

Which hook sees what (see ``docs/architecture.md`` for the full table):

* ``after_flush``: unit-of-work inserts, updates and deletes, ORM cascades included.
  Attribute history is still intact here (it is reset by ``after_flush_postexec``).
* ``do_orm_execute``: ORM-enabled bulk ``insert()``, ``update()`` and ``delete()``
  statements, handled in :mod:`livesync.bulk`.
* ``before_flush``: detects in-place mutation of JSON columns by comparing each value with
  a snapshot taken at load time, and flags it modified so the ORM writes it.
* transaction events: one buffer per root transaction and per SAVEPOINT. A released
  savepoint folds into its parent, a rolled-back one is dropped, and only a committed root
  transaction produces a change set. ``before_commit`` fires for SAVEPOINT releases too, so
  every hook checks which transaction it is looking at.

The change set is sealed in the root's ``before_commit`` (after a final flush) and handed
to the :class:`CommitSink`, which writes the outbox row inside the same transaction; after
the COMMIT it is handed over again for publishing. Nothing here ever publishes a change
of a transaction that did not commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from sqlalchemy import event, inspect, update
from sqlalchemy.orm import Mapper, Session, SessionTransaction
from sqlalchemy.orm.attributes import flag_modified, set_committed_value
from sqlalchemy.orm.state import InstanceState

from .bulk import BulkCapture
from .changes import UNKNOWN, ChangeSet, PendingChange, fold
from .collections import Collection
from .documents import encode_id
from .errors import CaptureError

log = logging.getLogger("livesync.capture")

Buffer = dict[tuple[str, str], PendingChange]
_INFO_KEY = "livesync"
_SNAPSHOT_KEY = "livesync_json"

#: ``session.info`` key: set it to an id (32 hex digits) before COMMIT, and the change set
#: sealed for that transaction carries it as :attr:`ChangeSet.id`. Capture removes the key
#: when it seals a change set, so after COMMIT its presence means the transaction changed
#: no live collection (nothing will be published). Client writes use it to wait for their
#: own change set in the gateway (the ``fence``).
CHANGESET_ID_KEY = "livesync_changeset_id"


class CommitSink(Protocol):
    """Where sealed change sets go: into the transaction, then out after COMMIT."""

    def prepare(self, session: Session, changeset: ChangeSet) -> Any:
        """Runs inside the transaction, before COMMIT; returns a token for :meth:`committed`."""

    def committed(self, changeset: ChangeSet, token: Any) -> None:
        """Runs after COMMIT succeeded. Must not raise: the data is already committed."""


@dataclass
class _SessionState:
    buffers: dict[SessionTransaction, Buffer] = field(default_factory=dict)
    committed: set[SessionTransaction] = field(default_factory=set)
    sealed: dict[SessionTransaction, tuple[ChangeSet, Any]] = field(default_factory=dict)
    pinned: dict[InstanceState[Any], Any] = field(default_factory=dict)
    json_scanned: bool = False


def _state(session: Session) -> _SessionState:
    state = session.info.get(_INFO_KEY)
    if state is None:
        state = session.info[_INFO_KEY] = _SessionState()
    return state


def _is_tracked(txn: SessionTransaction) -> bool:
    """Root transactions and SAVEPOINTs get buffers; internal flush subtransactions do not."""
    return txn.nested or txn.parent is None


def _dump_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


class Capture:
    """Installs capture on Session classes and routes their changes to a :class:`CommitSink`."""

    def __init__(
        self,
        lookup: Callable[[Mapper[Any]], Collection | None],
        lookup_table: Callable[[Any], Collection | None],
        by_name: Callable[[str], Collection],
        sink: CommitSink,
        bulk_limit: int,
    ) -> None:
        self._lookup = lookup
        self._by_name = by_name
        self._sink = sink
        self._bulk = BulkCapture(lookup, lookup_table, self.buffer, bulk_limit)
        self._snapshot_mappers: set[Mapper[Any]] = set()

    # ------------------------------------------------------------------ installation
    def install(self, target: Any) -> None:
        """Listen on a Session subclass (or a sessionmaker, which SQLAlchemy maps to one)."""
        event.listen(target, "after_transaction_create", self._on_transaction_create)
        event.listen(target, "before_flush", self._on_before_flush)
        event.listen(target, "after_flush", self._on_after_flush)
        event.listen(target, "do_orm_execute", self._bulk.on_execute)
        event.listen(target, "before_commit", self._on_before_commit)
        event.listen(target, "after_commit", self._on_after_commit)
        event.listen(target, "after_transaction_end", self._on_transaction_end)

    def watch_json(self, collection: Collection) -> None:
        """Snapshot JSON columns on load, so in-place mutations can be detected and diffed."""
        if not collection.json_keys or collection.mapper in self._snapshot_mappers:
            return
        self._snapshot_mappers.add(collection.mapper)
        keys = collection.json_keys

        def on_load(target: Any, context: Any) -> None:
            state = inspect(target)
            _snapshot(state, keys, state.session)

        def on_refresh(target: Any, context: Any, attrs: Any) -> None:
            # A partial refresh (one expired column) must not re-take the snapshot of a JSON
            # value that was mutated in place meanwhile: only refreshed keys are renewed.
            state = inspect(target)
            refreshed = keys if attrs is None else tuple(k for k in keys if k in attrs)
            _snapshot(state, refreshed, state.session)

        event.listen(collection.mapper, "load", on_load)
        event.listen(collection.mapper, "refresh", on_refresh)

    # ------------------------------------------------------------------ buffers
    def buffer(self, session: Session) -> Buffer:
        """The buffer of the innermost open transaction (a SAVEPOINT, else the root)."""
        txn = session.get_nested_transaction() or session.get_transaction()
        if txn is None:
            raise CaptureError("a write was captured outside any transaction")
        state = _state(session)
        root = txn
        while root.parent is not None:
            root = root.parent
        if root in state.sealed:
            raise CaptureError(
                "a write happened after livesync sealed the transaction's change set in "
                "before_commit; register your own before_commit listeners before livesync's, "
                "or make the write earlier"
            )
        return state.buffers.setdefault(txn, {})

    def _on_transaction_create(self, session: Session, txn: SessionTransaction) -> None:
        if not _is_tracked(txn):
            return
        state = _state(session)
        state.buffers[txn] = {}
        if txn.parent is None and self._snapshot_mappers:
            # Objects kept from an earlier transaction (expire_on_commit=False) may be
            # mutated in place in this one: pin them too (see _snapshot).
            for instance_state in session.identity_map.all_states():
                if instance_state.info.get(_SNAPSHOT_KEY):
                    state.pinned[instance_state] = instance_state.obj()

    def _on_after_commit(self, session: Session) -> None:
        txn = session.get_nested_transaction() or session.get_transaction()
        if txn is not None:
            _state(session).committed.add(txn)

    def _on_before_commit(self, session: Session) -> None:
        # A session whose only change is an in-place JSON mutation looks clean, and a clean
        # session's flush never fires before_flush: look for such mutations here, then flush
        # (before_commit runs before the ORM's own final flush) without scanning twice.
        state = _state(session)
        self._flag_json_mutations(session)
        state.json_scanned = True
        try:
            session.flush()
        finally:
            state.json_scanned = False
        if session.get_nested_transaction() is not None:
            return  # RELEASE SAVEPOINT, not the real COMMIT
        root = session.get_transaction()
        if root is None:
            return
        merged: Buffer = {}
        for txn, buf in state.buffers.items():
            if txn is root or (txn.nested and txn.is_active):
                for change in buf.values():
                    fold(merged, change)
        for pending in merged.values():
            if pending.replaced and pending.after is not None:
                self._renumber(session, pending)
        changes = tuple(c for c in (p.finish() for p in merged.values()) if c is not None)
        if not changes:
            return
        preset = session.info.pop(CHANGESET_ID_KEY, None)
        changeset = ChangeSet(changes) if preset is None else ChangeSet(changes, id=str(preset))
        state.sealed[root] = (changeset, self._sink.prepare(session, changeset))

    def _on_transaction_end(self, session: Session, txn: SessionTransaction) -> None:
        if not _is_tracked(txn):
            return
        state = _state(session)
        buf = state.buffers.pop(txn, {})
        sealed = state.sealed.pop(txn, None)
        if txn.parent is None:
            state.pinned.clear()
        if txn not in state.committed:
            if txn.nested:
                self._expire_bulk_targets(session, buf)
            return  # rolled back: its changes never happened
        state.committed.discard(txn)
        if txn.nested:
            parent = txn.parent
            while parent is not None and not _is_tracked(parent):
                parent = parent.parent
            if parent is not None:
                target = state.buffers.setdefault(parent, {})
                for change in buf.values():
                    fold(target, change)
            return
        if sealed is not None:
            self._sink.committed(*sealed)

    def _renumber(self, session: Session, pending: PendingChange) -> None:
        """Continue a re-inserted row's versions from the deleted row's, so none goes back.

        A row deleted and inserted again under the same key in one transaction would restart
        at version 1, below what readers hold; one UPDATE moves it past the old version.
        """
        collection = self._by_name(pending.collection)
        assert pending.version is not None and pending.prev_version is not None
        new_version = pending.version + pending.prev_version
        identity = pending.pk
        where = collection.key_in([identity])
        session.connection().execute(
            update(collection.table).where(where).values(collection.version_only(new_version))
        )
        obj = session.get(collection.model, tuple(identity))
        if obj is not None:
            set_committed_value(obj, collection.version_key, new_version)
        pending.version = new_version

    def _expire_bulk_targets(self, session: Session, buf: Buffer) -> None:
        """Expire objects a rolled-back SAVEPOINT's bulk statements synchronised in memory.

        SQLAlchemy restores objects the unit of work changed inside a savepoint, but not the
        values bulk statements wrote into loaded objects (including the bumped version),
        which would then fail the next flush with StaleDataError.
        """
        for pending in buf.values():
            if not pending.pk:
                continue
            mapper = self._by_name(pending.collection).mapper
            key = mapper.identity_key_from_primary_key(pending.pk)
            obj = session.identity_map.get(key)
            if obj is not None:
                session.expire(obj)

    # ------------------------------------------------------------------ unit of work
    def _on_before_flush(self, session: Session, flush_context: Any, instances: Any) -> None:
        if not _state(session).json_scanned:
            self._flag_json_mutations(session)

    def _flag_json_mutations(self, session: Session) -> bool:
        """Flag JSON values mutated in place since their snapshot; True if any were found."""
        if not self._snapshot_mappers:
            return False
        found = False
        for state in list(session.identity_map.all_states()):
            snapshot = state.info.get(_SNAPSHOT_KEY)
            if not snapshot:
                continue
            loaded = state.dict
            modified = state.committed_state
            for key, before in snapshot.items():
                if (
                    key in loaded
                    and key not in modified  # already headed for the UPDATE
                    and _dump_json(loaded[key]) != before
                ):
                    flag_modified(state.obj(), key)
                    found = True
        return found

    def _on_after_flush(self, session: Session, flush_context: Any) -> None:
        buf: Buffer | None = None
        for obj in session.new:
            state = inspect(obj)
            collection = self._lookup(state.mapper)
            if collection is None:
                continue
            buf = buf if buf is not None else self.buffer(session)
            version = state.dict.get(collection.version_key)
            pk = tuple(state.mapper.primary_key_from_instance(obj))
            document = collection.document(obj, state.dict)
            change = PendingChange(collection.name, encode_id(pk), False, document, version, pk=pk)
            fold(buf, change)
            _snapshot(state, collection.json_keys, session)
        # flush_context.states also holds orphans the flush itself decided to delete,
        # which session.deleted does not list.
        for state, (is_delete, list_only) in flush_context.states.items():
            if not is_delete or list_only:
                continue
            collection = self._lookup(state.mapper)
            if collection is None or state.identity is None:
                continue
            buf = buf if buf is not None else self.buffer(session)
            old = state.dict.get(collection.version_key)
            change = PendingChange(
                collection.name,
                encode_id(state.identity),
                True,
                None,
                None if old is None else old + 1,
                old,
            )
            fold(buf, change)
        for obj in session.dirty:
            state = inspect(obj)
            collection = self._lookup(state.mapper)
            if collection is None or state.key is None or state.deleted or state.was_deleted:
                continue
            change_or_none = _updated(collection, state, obj)
            if change_or_none is not None:
                buf = buf if buf is not None else self.buffer(session)
                fold(buf, change_or_none)
                _snapshot(state, collection.json_keys, session)


def _updated(collection: Collection, state: InstanceState[Any], obj: Any) -> PendingChange | None:
    """The change a flush wrote for a dirty instance, or None if the ORM emitted no UPDATE.

    The ORM emits an UPDATE exactly when some column attribute has net changes, and the
    version column then grows by one; history cannot show the version itself. Only
    attributes listed in ``committed_state`` (still intact in ``after_flush``) can have
    changed, so history is computed for those alone.
    """
    attrs = state.attrs
    column_keys = collection.column_keys
    histories = [(k, attrs[k].history) for k in state.committed_state if k in column_keys]
    changed = [(k, history) for k, history in histories if history.has_changes()]
    if not changed:
        return None
    snapshot = state.info.get(_SNAPSHOT_KEY) or {}
    before: dict[str, Any] = dict.fromkeys(collection.database_set_keys, UNKNOWN)
    for key, history in changed:
        field = collection.field_by_key.get(key)
        if field is None or key in before:
            continue  # excluded field, or one the database sets
        if key in snapshot:  # before history: its "old" JSON object may be mutated in place
            before[key] = orjson.loads(snapshot[key])
        elif history.deleted:
            before[key] = field.convert(history.deleted[0])
        else:
            before[key] = UNKNOWN  # set while expired: the old value was never loaded
    version = state.dict.get(collection.version_key)
    return PendingChange(
        collection.name,
        collection.id_of(obj),
        True,
        collection.document(obj, state.dict),
        version,
        None if version is None else version - 1,
        before,
    )


def _snapshot(state: InstanceState[Any], keys: tuple[str, ...], session: Session | None) -> None:
    """Remember the JSON values as loaded, and keep the object alive until the transaction ends.

    The identity map holds unmodified objects weakly, and an in-place mutation does not mark
    an object modified: without the pin, ``session.get(M, 1).data["k"] = v`` followed by
    ``commit()`` could lose the object (and the change) to garbage collection first.
    """
    if not keys:
        return
    loaded = state.dict
    snapshot = state.info.setdefault(_SNAPSHOT_KEY, {})
    snapshot.update((k, _dump_json(loaded[k])) for k in keys if k in loaded)
    owner = None if session is None else session.info.get(_INFO_KEY)
    if owner is not None:  # only sessions livesync instruments, which unpin at the end
        owner.pinned[state] = state.obj()

"""Capture of ORM-enabled bulk ``insert()``, ``update()`` and ``delete()`` statements.

These never reach the unit of work, so ``do_orm_execute`` intercepts them:

* **UPDATE / DELETE with a WHERE clause.** The matching rows are read first
  (``SELECT ... FOR UPDATE`` on PostgreSQL, so nobody changes them in between), the
  statement runs with ``version = version + 1`` added, and the changed rows are read
  again by primary key. If the statement touched a different number of rows than were
  locked (a concurrent insert matched the WHERE clause in between), the write cannot be
  described exactly and :class:`CaptureError` aborts it, leaving the transaction to be
  rolled back and retried.
* **UPDATE by primary key** (a list of parameter dicts). SQLAlchemy itself bumps and
  checks the version for these; capture fills in the current version for rows whose
  parameters omit it.
* **INSERT.** When every parameter set carries its primary key, the rows are read back
  by key afterwards (upserts that hit an existing row become updates, and must bump the
  version). Otherwise ``RETURNING`` is added to learn database-assigned keys; the caller
  then gets those rows as its result, and ``rowcount`` is not available.

The caller's result is returned unchanged in every other case.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Mapper, ORMExecuteState, Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql import Select

from .changes import PendingChange, fold
from .collections import Collection
from .documents import encode_id
from .errors import CaptureError

if TYPE_CHECKING:
    from .capture import Buffer

_CHUNK = 5_000


class BulkCapture:
    """The ``do_orm_execute`` listener; see the module docstring for each statement kind."""

    def __init__(
        self,
        lookup: Callable[[Mapper[Any]], Collection | None],
        lookup_table: Callable[[Any], Collection | None],
        buffer: Callable[[Session], Buffer],
        limit: int,
    ) -> None:
        self._lookup = lookup
        self._lookup_table = lookup_table
        self._buffer = buffer
        self._limit = limit

    def on_execute(self, state: ORMExecuteState) -> Any:
        if not (state.is_insert or state.is_update or state.is_delete):
            return None
        collection = self._collection_of(state)
        if collection is None:
            return None
        if state.is_insert:
            return self._insert(state, collection)
        if state.is_delete:
            return self._delete(state, collection)
        return self._update(state, collection)

    def _collection_of(self, state: ORMExecuteState) -> Collection | None:
        mapper = state.bind_mapper
        if mapper is not None:
            return self._lookup(mapper)
        table = getattr(state.statement, "table", None)
        return None if table is None else self._lookup_table(table)

    # ------------------------------------------------------------------ reading rows
    def _read(
        self, state: ORMExecuteState, query: Select[Any], lock: bool = False
    ) -> list[Row[Any]]:
        if lock:
            query = query.with_for_update()
        rows = list(state.session.execute(query, bind_arguments=state.bind_arguments))
        if len(rows) > self._limit:
            raise CaptureError(
                f"a bulk statement on {state.statement} touches {len(rows)} rows, more than "
                f"bulk_capture_limit={self._limit}; split it or raise the limit"
            )
        return rows

    def _read_keys(
        self,
        state: ORMExecuteState,
        collection: Collection,
        keys: Sequence[tuple[Any, ...]],
        lock: bool = False,
    ) -> list[Row[Any]]:
        rows: list[Row[Any]] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            query = select(*collection.columns).where(collection.key_in(chunk))
            rows.extend(self._read(state, query, lock))
        return rows

    # ------------------------------------------------------------------ statements
    def _update(self, state: ORMExecuteState, collection: Collection) -> Any:
        params = state.parameters
        if isinstance(params, list) and state.is_executemany:
            return self._update_by_key(state, collection, params)
        statement: Any = state.statement
        query = select(*collection.columns)
        if statement.whereclause is not None:
            query = query.where(statement.whereclause)
        before = self._read(state, query, lock=True)
        bumped = statement.values({collection.version_column: collection.version_column + 1})
        result = state.invoke_statement(statement=bumped)
        _check_rowcount(result, len(before), collection)
        after = self._read_keys(state, collection, [collection.pk_of_row(r) for r in before])
        self._record_updates(state.session, collection, before, after)
        return result

    def _update_by_key(
        self, state: ORMExecuteState, collection: Collection, params: list[dict[str, Any]]
    ) -> Any:
        keys = [collection.pk_from_params(p) for p in params]
        if any(k is None for k in keys):
            return None  # SQLAlchemy raises its own clear error for a missing primary key
        known = [k for k in keys if k is not None]
        before = self._read_keys(state, collection, known, lock=True)
        versions = {collection.pk_of_row(r): collection.version_of_row(r) for r in before}
        version_key = collection.version_key
        filled = [
            p if version_key in p or k not in versions else {**p, version_key: versions[k]}
            for p, k in zip(params, known, strict=True)
        ]
        result = state.invoke_statement(params=filled)
        after = self._read_keys(state, collection, known)
        self._record_updates(state.session, collection, before, after)
        _synchronize(state.session, collection, before, after)
        return result

    def _delete(self, state: ORMExecuteState, collection: Collection) -> Any:
        statement: Any = state.statement
        query = select(*collection.columns)
        if statement.whereclause is not None:
            query = query.where(statement.whereclause)
        before = self._read(state, query, lock=True)
        result = state.invoke_statement()
        _check_rowcount(result, len(before), collection)
        buf = self._buffer(state.session)
        for row in before:
            old = collection.version_of_row(row)
            pk = collection.pk_of_row(row)
            key = encode_id(pk)
            fold(buf, PendingChange(collection.name, key, True, None, old + 1, old, pk=pk))
        return result

    def _insert(self, state: ORMExecuteState, collection: Collection) -> Any:
        statement: Any = state.statement
        params = state.parameters
        param_list: list[Any] = (
            list(params) if isinstance(params, list) else [params] if params else []
        )
        keys = [collection.pk_from_params(p) for p in param_list]
        if param_list and all(k is not None for k in keys):
            known = [k for k in keys if k is not None]
            existing = self._read_keys(state, collection, known, lock=True)
            result = state.invoke_statement()
            after = self._read_keys(state, collection, known)
            self._record_inserts(state.session, collection, existing, after)
            return result
        if statement.exported_columns:
            raise CaptureError(
                f"livesync cannot capture INSERT ... RETURNING on {collection.name} without "
                "primary key values in the parameters; pass the keys, or drop RETURNING"
            )
        if getattr(statement, "_post_values_clause", None) is not None:
            raise CaptureError(
                f"an upsert on {collection.name} must carry primary key values in its "
                "parameters so livesync can tell inserted rows from updated ones"
            )
        result = state.invoke_statement(statement=statement.returning(*collection.columns))
        frozen = result.freeze()
        self._record_inserts(state.session, collection, [], list(frozen().all()))
        return frozen()

    # ------------------------------------------------------------------ recording
    def _record_updates(
        self,
        session: Session,
        collection: Collection,
        before: Iterable[Row[Any]],
        after: Iterable[Row[Any]],
    ) -> None:
        old_rows = {collection.pk_of_row(r): r for r in before}
        buf = self._buffer(session)
        for row in after:
            pk = collection.pk_of_row(row)
            old_row = old_rows.get(pk)
            if old_row is None:
                continue
            fold(buf, _update_change(collection, pk, old_row, row))

    def _record_inserts(
        self,
        session: Session,
        collection: Collection,
        existing: Iterable[Row[Any]],
        after: Iterable[Row[Any]],
    ) -> None:
        old_rows = {collection.pk_of_row(r): r for r in existing}
        buf = self._buffer(session)
        for row in after:
            pk = collection.pk_of_row(row)
            old_row = old_rows.get(pk)
            if old_row is None:
                doc = collection.document_from_row(row)
                version = collection.version_of_row(row)
                fold(buf, PendingChange(collection.name, encode_id(pk), False, doc, version, pk=pk))
                continue
            change = _update_change(collection, pk, old_row, row)
            if change.version == change.prev_version and change.before:
                raise CaptureError(
                    f"an upsert changed {collection.name} {change.id} without bumping its "
                    f"version; add {collection.version_key}={collection.model.__name__}."
                    f"{collection.version_key} + 1 to the ON CONFLICT update"
                )
            fold(buf, change)


def _update_change(
    collection: Collection, pk: tuple[Any, ...], old_row: Row[Any], new_row: Row[Any]
) -> PendingChange:
    old_doc = collection.document_from_row(old_row)
    new_doc = collection.document_from_row(new_row)
    changed = {k: v for k, v in old_doc.items() if new_doc.get(k) != v}
    return PendingChange(
        collection.name,
        encode_id(pk),
        True,
        new_doc,
        collection.version_of_row(new_row),
        collection.version_of_row(old_row),
        changed,
        pk=pk,
    )


def _check_rowcount(result: Any, expected: int, collection: Collection) -> None:
    rowcount = getattr(result, "rowcount", None)
    if rowcount is not None and rowcount >= 0 and rowcount != expected:
        raise CaptureError(
            f"a bulk statement on {collection.name} changed {rowcount} rows but {expected} "
            "were locked before it ran: a concurrent transaction changed which rows match. "
            "Roll back and retry"
        )


def _synchronize(
    session: Session, collection: Collection, before: list[Row[Any]], after: list[Row[Any]]
) -> None:
    """Refresh loaded objects after an UPDATE by primary key, which SQLAlchemy leaves stale.

    Without this the next unit-of-work UPDATE of such an object would check the old version
    and fail with ``StaleDataError``. Only columns the statement changed are set, so other
    pending in-memory state is kept.
    """
    old_rows = {collection.pk_of_row(r): r._mapping for r in before}
    mapper = collection.mapper
    for row in after:
        pk = collection.pk_of_row(row)
        obj = session.identity_map.get(mapper.identity_key_from_primary_key(tuple(pk)))
        old = old_rows.get(pk)
        if obj is None or old is None:
            continue
        new = row._mapping
        for column in collection.table.columns:
            if column in new and new[column] != old[column]:
                key = mapper.get_property_by_column(column).key
                set_committed_value(obj, key, new[column])

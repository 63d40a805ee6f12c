"""Client writes to collections: what the application allows, and applying one write.

Nothing is writable by default. ``live.allow(Model, schema=..., insert=..., ...)``
declares one collection writable and builds its :class:`WriteRules`. Applying a write
(:func:`insert`, :func:`update`, :func:`remove`) happens inside the caller's open
transaction and either returns what was written or raises a
:class:`~livesync.errors.WriteError` (or :class:`~livesync.publications.Forbidden`);
the caller then rolls the transaction back, so a refused write leaves nothing behind.

The checks, in order:

1. the operation is allowed at all (a rule is set), else ``forbidden``;
2. the document id names a row (``session.get`` by primary key, locked with
   ``FOR UPDATE`` on PostgreSQL), else ``not-found``; an insert of an existing id is a
   ``conflict``;
3. the base version ``v`` is the row's version, unless the collection is
   last-writer-wins, else ``conflict`` (with the current version);
4. the resulting document: every changed field is a field of the schema and not
   immutable, and the whole document validates against the schema, else ``invalid``
   with one entry per faulty field (a JSON Pointer and a message);
5. the values are set through the ORM (converted by the schema, python mode) and
   flushed; the rule sees the documents as clients will (``collection.document``) and
   returns a truthy value, else ``forbidden``.

Client input never becomes SQL text: rows are found with ``session.get`` on primary key
values parsed from the document id, and only fields of the schema are ever assigned.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import jsonpatch
import jsonpointer
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from .collections import Collection, CollectionError
from .documents import decode_id, encode_id
from .errors import Conflict, Invalid, NotFound
from .params import error_locations, pointer
from .patches import escape_pointer, same
from .publications import Context, Forbidden

IdScheme = Literal["uuid", "client", "server"]
ConflictMode = Literal["reject", "last-writer-wins"]
Rule = bool | Callable[..., Any] | None
"""``True`` allows every request, a callable decides per request, ``None``/``False`` denies."""

ID_SCHEMES: tuple[str, ...] = ("uuid", "client", "server")
CONFLICT_MODES: tuple[str, ...] = ("reject", "last-writer-wins")


@dataclass(frozen=True, slots=True)
class Applied:
    """What an accepted write did: the document's id and its version afterwards."""

    doc: str
    version: int | None


@dataclass(frozen=True)
class WriteRules:
    """One writable collection: schema, immutable fields, rules, conflict and id policies.

    Build it with :meth:`build` (``live.allow`` does), which checks the declaration
    against the collection, so a mistake fails at startup instead of at the first write.
    """

    collection: Collection
    schema: type[BaseModel]
    immutable: frozenset[str]
    insert: Rule
    update: Rule
    delete: Rule
    conflicts: ConflictMode
    ids: IdScheme
    key_types: tuple[TypeAdapter[Any], ...]

    @classmethod
    def build(
        cls,
        collection: Collection,
        schema: type[BaseModel],
        *,
        immutable: Iterable[str] = (),
        insert: Rule = None,
        update: Rule = None,
        delete: Rule = None,
        conflicts: str = "reject",
        ids: str = "uuid",
    ) -> WriteRules:
        """Check a declaration; raises :class:`CollectionError` saying what to fix."""
        name = collection.name
        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            raise CollectionError(f"{name}: schema must be a pydantic model class")
        if conflicts not in CONFLICT_MODES:
            raise CollectionError(f"{name}: conflicts must be one of {CONFLICT_MODES}")
        if ids not in ID_SCHEMES:
            raise CollectionError(f"{name}: ids must be one of {ID_SCHEMES}")
        for label, rule in (("insert", insert), ("update", update), ("delete", delete)):
            if not (rule is None or isinstance(rule, bool) or callable(rule)):
                raise CollectionError(f"{name}: {label} must be True, a callable or None")
        fields = set(collection.field_by_key)
        unknown = set(schema.model_fields) - fields
        if unknown:
            raise CollectionError(
                f"{name}: schema fields {sorted(unknown)} are not document fields "
                f"(the document has {sorted(fields)})"
            )
        fixed = set(immutable)
        if fixed - fields:
            raise CollectionError(f"{name}: immutable fields {sorted(fixed - fields)} unknown")
        keys = collection.pk_keys
        if ids == "uuid" and len(keys) != 1:
            raise CollectionError(f"{name}: ids='uuid' needs a single-column primary key")
        if ids in ("uuid", "client") and not set(keys) <= set(schema.model_fields):
            raise CollectionError(
                f"{name}: with ids={ids!r} clients send the key, so the schema must declare {keys}"
            )
        if ids == "server":
            required = [k for k in keys if k in schema.model_fields and _required(schema, k)]
            if required:
                raise CollectionError(
                    f"{name}: with ids='server' the client sends no key; make {required} "
                    "optional in the schema (for example `id: int | None = None`)"
                )
        return cls(
            collection=collection,
            schema=schema,
            immutable=frozenset(fixed | set(keys)),  # a document never changes its id
            insert=insert,
            update=update,
            delete=delete,
            conflicts=conflicts,  # type: ignore[arg-type]  # checked above
            ids=ids,  # type: ignore[arg-type]
            key_types=tuple(TypeAdapter(_python_type(c)) for c in collection.pk_columns),
        )

    @property
    def ops(self) -> list[str]:
        """The operations clients may attempt (their rules are set)."""
        rules = (("insert", self.insert), ("update", self.update), ("remove", self.delete))
        return [op for op, rule in rules if rule is not None and rule is not False]

    def describe(self) -> dict[str, Any]:
        """What the gateway serves at ``<path>/schemas`` for this collection."""
        return {
            "schema": self.schema.model_json_schema(),
            "key": list(self.collection.pk_keys),
            "immutable": sorted(self.immutable),
            "ids": self.ids,
            "conflicts": self.conflicts,
            "ops": self.ops,
        }


def _required(schema: type[BaseModel], key: str) -> bool:
    return bool(schema.model_fields[key].is_required())


def _python_type(column: Any) -> Any:
    try:
        return column.type.python_type
    except NotImplementedError:
        return str


# --------------------------------------------------------------------------- operations
def insert(session: Session, ctx: Context, rules: WriteRules, data: Mapping[str, Any]) -> Applied:
    """Insert the client's document ``data`` (JSON form); the rule sees the stored document."""
    _allowed(rules.insert, "insert into", rules)
    collection = rules.collection
    given = dict(data)
    problems: dict[str, str] = {}
    for key in given:
        if key not in collection.field_by_key:
            problems[key] = f"{collection.name} has no field {key!r}"
        elif key not in rules.schema.model_fields:
            problems[key] = "not writable"
    keys = collection.pk_keys
    if rules.ids == "server":
        for key in keys:
            if given.pop(key, None) is not None:
                problems[key] = "the server assigns ids"
    elif rules.ids == "uuid":
        value = given.get(keys[0])
        if not _canonical_uuid(value):
            problems[keys[0]] = "must be a UUID in canonical form (lowercase, hyphenated)"
    else:
        for key in keys:
            if given.get(key) is None:
                problems[key] = "the client must give the key"
    _refuse_if(problems)
    values = _validated(rules, given)
    if rules.ids == "server":
        for key in keys:
            if values.get(key) is None:
                values.pop(key, None)
    else:
        existing = session.get(collection.model, tuple(values[k] for k in keys))
        if existing is not None:
            raise Conflict(
                f"{collection.name}/{collection.id_of(existing)} already exists",
                version=getattr(existing, collection.version_key),
            )
    obj = collection.model()
    for key, value in values.items():
        setattr(obj, key, value)
    session.add(obj)
    _flush(session, collection)
    new = collection.document(obj)
    _check(rules.insert, "insert into", rules, ctx, new)
    return Applied(collection.id_of(obj), getattr(obj, collection.version_key))


def update(
    session: Session,
    ctx: Context,
    rules: WriteRules,
    doc_id: str,
    version: int | None,
    *,
    patch: Sequence[Mapping[str, Any]] | None = None,
    fields: Mapping[str, Any] | None = None,
) -> Applied:
    """Apply an RFC 6902 ``patch`` or top-level ``fields`` to one document."""
    _allowed(rules.update, "update", rules)
    collection = rules.collection
    obj = _load(session, rules, doc_id)
    _check_version(rules, obj, doc_id, version)
    old = collection.document(obj)
    candidate = _patched(old, patch) if patch is not None else {**old, **(fields or {})}
    changed = [
        key
        for key in [*old, *(k for k in candidate if k not in old)]
        if key not in old or key not in candidate or not same(old[key], candidate[key])
    ]
    problems: dict[str, str] = {}
    for key in changed:
        if key not in collection.field_by_key:
            problems[key] = f"{collection.name} has no field {key!r}"
        elif key not in candidate:
            problems[key] = "a field cannot be removed"
        elif key in rules.immutable:
            problems[key] = "immutable"
        elif key not in rules.schema.model_fields:
            problems[key] = "not writable"
    _refuse_if(problems)
    values = _validated(
        rules, {k: v for k, v in candidate.items() if k in rules.schema.model_fields}
    )
    for key in changed:
        setattr(obj, key, values[key])
    _flush(session, collection, doc_id)
    new = collection.document(obj)
    _check(rules.update, "update", rules, ctx, old, new)
    return Applied(doc_id, getattr(obj, collection.version_key))


def remove(
    session: Session, ctx: Context, rules: WriteRules, doc_id: str, version: int | None
) -> Applied:
    """Delete one document; the rule sees the document being deleted."""
    _allowed(rules.delete, "remove from", rules)
    collection = rules.collection
    obj = _load(session, rules, doc_id)
    current = _check_version(rules, obj, doc_id, version)
    _check(rules.delete, "remove from", rules, ctx, collection.document(obj))
    session.delete(obj)
    _flush(session, collection, doc_id)
    return Applied(doc_id, current + 1)  # a delete is published one past the last version


# --------------------------------------------------------------------------- the checks
def _allowed(rule: Rule, verb: str, rules: WriteRules) -> None:
    if rule is None or rule is False:
        raise Forbidden(f"clients may not {verb} {rules.collection.name}")


def _check(rule: Rule, verb: str, rules: WriteRules, ctx: Context, *docs: Any) -> None:
    if rule is True:
        return
    assert callable(rule)
    if not rule(ctx, *docs):
        raise Forbidden(f"not allowed to {verb} {rules.collection.name}")


def _load(session: Session, rules: WriteRules, doc_id: str) -> Any:
    """The row named by a document id, locked for this transaction, or ``not-found``."""
    collection = rules.collection
    missing = NotFound(f"{collection.name}/{doc_id} does not exist")
    try:
        parts = decode_id(doc_id, len(rules.key_types))
        key = tuple(t.validate_python(p) for t, p in zip(rules.key_types, parts, strict=True))
    except (ValueError, ValidationError):
        raise missing from None
    if encode_id(key) != doc_id:  # "07" parses as 7, but no document is called "07"
        raise missing
    obj = session.get(collection.model, key, with_for_update=True)
    if obj is None:
        raise missing
    return obj


def _check_version(rules: WriteRules, obj: Any, doc_id: str, version: int | None) -> int:
    current = int(getattr(obj, rules.collection.version_key))
    if rules.conflicts == "last-writer-wins":
        return current
    if version is None:
        raise Invalid(
            f"{rules.collection.name} rejects stale writes: give the base version v",
            fields={"v": "required"},
        )
    if version != current:
        raise Conflict(
            f"{rules.collection.name}/{doc_id} is at version {current}, not {version}",
            version=current,
        )
    return current


def _patched(old: dict[str, Any], ops: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``old`` with the RFC 6902 operations applied one by one, naming the failing one."""
    doc: Any = copy.deepcopy(old)
    for index, op in enumerate(ops):
        try:
            doc = jsonpatch.JsonPatch([dict(op)]).apply(doc, in_place=True)
        except (
            jsonpatch.JsonPatchException,
            jsonpointer.JsonPointerException,
            KeyError,
            IndexError,
            TypeError,
            ValueError,
        ) as exc:
            path = str(op.get("path", ""))
            raise Invalid(
                f"patch operation {index} ({op.get('op')} {path}) failed: {exc}",
                fields={path: str(exc)},
            ) from None
    if not isinstance(doc, dict):
        raise Invalid(
            "the patch must leave a document (a JSON object)", fields={"": "not an object"}
        )
    return doc


def _validated(rules: WriteRules, document: dict[str, Any]) -> dict[str, Any]:
    """The schema's python-mode values for a JSON-form document, or ``invalid``."""
    try:
        model = rules.schema.model_validate(document)
    except ValidationError as exc:
        located = error_locations(exc, limit=20)
        fields = [(pointer(loc), message) for loc, message in located]
        summary = "; ".join(f"{path or '/'}: {message}" for path, message in fields[:3])
        raise Invalid(
            f"invalid {rules.collection.name} document: {summary}", fields=fields
        ) from None
    values: dict[str, Any] = model.model_dump(mode="python")
    return values


def _refuse_if(problems: dict[str, str]) -> None:
    if problems:
        summary = "; ".join(f"{key}: {text}" for key, text in problems.items())
        fields = {"/" + escape_pointer(key): text for key, text in problems.items()}
        raise Invalid(summary, fields=fields)


def _flush(session: Session, collection: Collection, doc_id: str | None = None) -> None:
    """Flush, turning database refusals into write errors without leaking their text."""
    try:
        session.flush()
    except StaleDataError:
        # The version check passed under FOR UPDATE; on SQLite BEGIN IMMEDIATE serialises
        # writers. Still, never let a concurrent change through as a success.
        raise Conflict(f"{collection.name}/{doc_id} changed meanwhile") from None
    except IntegrityError as exc:
        if _unique_violation(exc):
            raise Conflict(f"{collection.name}: a unique value is already taken") from None
        raise Invalid(f"{collection.name}: the database refused the document") from None
    except DataError:
        raise Invalid(f"{collection.name}: the database refused a value") from None


def _unique_violation(exc: IntegrityError) -> bool:
    """Unique or primary key violation (PostgreSQL SQLSTATE 23505, SQLite's codes)."""
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == "23505":
        return True
    name = getattr(orig, "sqlite_errorname", "")
    return name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")


def _canonical_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False

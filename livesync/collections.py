"""Live collections: which mapped models livesync watches, and how a row becomes a document.

A collection is registered once per model with :meth:`LiveSync.collection`. Registration
checks everything that could otherwise fail at 3 a.m.: the model must carry an integer
version column (see :class:`Versioned`), every published column must have a JSON
representation, and excluded fields must exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Integer, Row, Select, inspect, select, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Mapper, declared_attr, mapped_column
from sqlalchemy.sql.schema import Column, Table

from .documents import Converter, converter_for, encode_id, is_json_type


class Versioned:
    """Mixin giving a model the per-document ``version`` column livesync requires.

    The column uses SQLAlchemy's ``version_id_col``: every UPDATE through the ORM bumps
    it and checks the old value (``WHERE version = :old``), so versions grow in commit
    order even when two processes update one row at once, and a stale concurrent writer
    fails with ``StaleDataError`` instead of silently overwriting. ORM bulk statements
    are bumped by livesync's capture. ``eager_defaults`` makes the database return
    server-generated values (``onupdate``, ``server_default``) in the same round trip, so
    capture does not need an extra SELECT to publish them.

    A model that defines its own ``__mapper_args__`` must add
    ``"version_id_col": <its version column>`` to them itself.
    """

    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version, "eager_defaults": True}  # type: ignore[attr-defined]


class CollectionError(ValueError):
    """A model cannot be registered as a live collection; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class Field:
    """One document field: the mapped attribute, its column and its JSON converter."""

    key: str
    column: Column[Any]
    convert: Converter


class Collection:
    """A registered live collection: the model, its document shape and its id scheme.

    Later layers (publications, writes) extend this handle; capture only needs
    :meth:`document`, :meth:`document_from_row` and the id helpers.
    """

    def __init__(self, model: type[Any], name: str | None = None, exclude: Iterable[str] = ()):
        mapper: Mapper[Any] = inspect(model)
        table = mapper.local_table
        if not isinstance(table, Table):
            raise CollectionError(f"{model.__name__} is not mapped to a table")
        if mapper.inherits is not None and mapper.inherits.local_table is not table:
            raise CollectionError(
                f"{model.__name__} uses joined-table inheritance, which live collections do "
                "not support yet; register a single-table model"
            )
        self.model = model
        self.mapper = mapper
        self.table: Table = table
        self.name = name or table.name
        version_column = mapper.version_id_col
        if version_column is None or not isinstance(version_column.type, Integer):
            raise CollectionError(
                f"{model.__name__} has no integer version column. Add the mixin "
                "livesync.Versioned (or __mapper_args__ = {'version_id_col': <Integer "
                "column>}) so every document carries a version that grows with each write"
            )
        if mapper.version_id_generator is False:
            raise CollectionError(
                f"{model.__name__} sets version_id_generator=False; livesync needs the "
                "ORM to increment the version on every UPDATE"
            )
        self.version_column: Column[Any] = version_column  # type: ignore[assignment]
        self.version_key = mapper.get_property_by_column(version_column).key

        excluded = set(exclude)
        column_keys = {prop.key for prop in mapper.column_attrs}
        unknown = excluded - column_keys
        if unknown:
            raise CollectionError(f"{model.__name__} has no columns named {sorted(unknown)}")
        self.pk_columns: list[Column[Any]] = list(table.primary_key.columns)
        self.pk_keys = [mapper.get_property_by_column(col).key for col in self.pk_columns]
        hidden_keys = excluded & set(self.pk_keys)
        if hidden_keys:
            raise CollectionError(f"primary key fields {sorted(hidden_keys)} cannot be excluded")

        fields: list[Field] = []
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            if prop.key in excluded or prop.key == self.version_key:
                continue
            if not isinstance(column, Column) or column.table is not table:
                continue  # column_property() expressions and other tables' columns
            fields.append(Field(prop.key, column, converter_for(column)))
        self.fields: tuple[Field, ...] = tuple(fields)
        self.field_by_key = {f.key: f for f in fields}
        #: Every mapped column attribute, excluded ones too: a change to any makes an UPDATE.
        self.column_keys = frozenset(prop.key for prop in mapper.column_attrs)
        #: Fields whose new value the database or ORM computes on UPDATE; history never
        #: shows their old value, so patches replace them whole.
        self.database_set_keys = tuple(
            f.key
            for f in fields
            if f.column.onupdate is not None
            or f.column.server_onupdate is not None
            or f.column.computed is not None
        )
        self.json_keys = tuple(f.key for f in fields if is_json_type(f.column.type))
        #: Every column capture must read from a row: fields, version and key.
        wanted: list[Column[Any]] = [*self.pk_columns, self.version_column]
        wanted += [f.column for f in fields]
        self.columns: tuple[Column[Any], ...] = tuple({id(c): c for c in wanted}.values())

    def __repr__(self) -> str:
        return f"<Collection {self.name!r} of {self.model.__name__}>"

    def document(self, obj: Any, loaded: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON document of a mapped instance (loads expired attributes if needed).

        ``loaded`` is the instance's ``__dict__`` (its ``InstanceState.dict``) when the
        caller has it: values present there are read directly, which skips the attribute
        machinery on capture's hot path; missing (expired) ones still go through it.
        """
        if loaded is None:
            return {f.key: f.convert(getattr(obj, f.key)) for f in self.fields}
        return {
            f.key: f.convert(loaded[f.key] if f.key in loaded else getattr(obj, f.key))
            for f in self.fields
        }

    def document_from_row(self, row: Row[Any]) -> dict[str, Any]:
        """The JSON document of a Core row selected over :attr:`columns`."""
        mapping = row._mapping
        return {f.key: f.convert(mapping[f.column]) for f in self.fields}

    def id_of(self, obj: Any) -> str:
        return encode_id(self.mapper.primary_key_from_instance(obj))

    def pk_of_row(self, row: Row[Any]) -> tuple[Any, ...]:
        mapping = row._mapping
        return tuple(mapping[col] for col in self.pk_columns)

    def version_of_row(self, row: Row[Any]) -> int:
        return int(row._mapping[self.version_column])

    def pk_from_params(self, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """Primary key values found in one bulk parameter dict (by attribute or column name)."""
        values = []
        for key, column in zip(self.pk_keys, self.pk_columns, strict=True):
            if key in params:
                values.append(params[key])
            elif column.name in params:
                values.append(params[column.name])
            else:
                return None
        return tuple(values)

    def ids(self, pks: Sequence[tuple[Any, ...]]) -> list[str]:
        return [encode_id(pk) for pk in pks]

    def key_in(self, keys: Sequence[tuple[Any, ...]]) -> ColumnElement[bool]:
        """A WHERE clause matching the rows with these primary key tuples."""
        if len(self.pk_columns) == 1:
            return self.pk_columns[0].in_([k[0] for k in keys])
        return tuple_(*self.pk_columns).in_(keys)

    def version_only(self, new_version: Any) -> dict[Any, Any]:
        """UPDATE values that set the version and nothing else.

        Core applies ``onupdate`` defaults to every column a statement does not set, so a
        plain ``SET version = ...`` would also touch ``updated_at``-style columns; setting
        those to themselves keeps the row's data unchanged.
        """
        values: dict[Any, Any] = {c: c for c in self.table.columns if c.onupdate is not None}
        values[self.version_column] = new_version
        return values

    def read(
        self, connection: Connection, statement: Select[Any] | None = None
    ) -> list[tuple[str, int, dict[str, Any]]]:
        """``(id, version, document)`` of every row (of ``statement``, a ``select()`` over
        this model, keeping its where, order and limit), built as capture builds them: what
        a fully caught-up reader must hold."""
        query = (
            select(*self.columns)
            if statement is None
            else statement.with_only_columns(*self.columns)
        )
        return [
            (encode_id(self.pk_of_row(row)), self.version_of_row(row), self.document_from_row(row))
            for row in connection.execute(query)
        ]

"""Row values to JSON documents, and primary keys to document ids.

Each column gets its converter once, when its collection is registered, so a column type
that cannot be represented in JSON fails at startup rather than at the first write. The
representations are part of the wire contract (``docs/architecture.md``):

=================  ==========================================================
Python value       JSON
=================  ==========================================================
str, int, float,   as is
bool, None
datetime           ISO 8601 text; ``DateTime(timezone=True)`` in UTC with
                   ``+00:00``, naive ``DateTime`` as stored (aware input -> UTC)
date, time         ISO 8601 text
timedelta          seconds as a number
Decimal            text at the column's scale (``Numeric(10, 2)``: ``"19.30"``)
UUID               text
Enum               its ``value``
bytes              base64 text
JSON column        a deep copy of the value (dicts, lists, scalars)
ARRAY              a list of the element type's representation
=================  ==========================================================
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import enum
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, unquote

import orjson
from sqlalchemy import types as sqltypes
from sqlalchemy.sql.schema import Column

Converter = Callable[[Any], Any]


class UnsupportedColumnType(TypeError):
    """A column's Python type has no JSON representation livesync knows."""


def _identity(value: Any) -> Any:
    return value


def _isoformat(value: Any) -> Any:
    return None if value is None else value.isoformat()


def _utc_aware(value: Any) -> Any:
    """Aware instants in UTC; naive ones are taken to be UTC already (SQLite drops zones)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC).isoformat()
    return value.astimezone(dt.UTC).isoformat()


def _utc_naive(value: Any) -> Any:
    """Naive wall time; an aware value is converted to UTC first, as PostgreSQL stores it."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat()


def _decimal_text(scale: int | None) -> Converter:
    """Decimal text that reads the same before and after a database round trip.

    With a known scale the value is quantized to it (``Numeric(10, 2)``: ``19.3`` ->
    ``"19.30"``, as the database returns it); without one, trailing zeros are dropped.
    """
    exponent = None if scale is None else decimal.Decimal(1).scaleb(-scale)

    def convert(value: Any) -> Any:
        if value is None:
            return None
        number = value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value))
        if exponent is not None:
            return str(number.quantize(exponent))
        normalized = number.normalize()
        return (
            format(normalized, "f") if normalized == normalized.to_integral() else str(normalized)
        )

    return convert


def _seconds(value: Any) -> Any:
    return None if value is None else value.total_seconds()


def _text(value: Any) -> Any:
    return None if value is None else str(value)


def _enum_value(value: Any) -> Any:
    if value is None:
        return None
    return value.value if isinstance(value, enum.Enum) else value


def _base64(value: Any) -> Any:
    return None if value is None else base64.b64encode(bytes(value)).decode("ascii")


def _json_copy(value: Any) -> Any:
    # A copy, so later in-place mutation of the live object cannot alter a captured change.
    return None if value is None else orjson.loads(orjson.dumps(value))


_BY_PYTHON_TYPE: list[tuple[type, Converter]] = [
    (bool, _identity),
    (int, _identity),
    (float, _identity),
    (str, _identity),
    (dt.datetime, _isoformat),
    (dt.date, _isoformat),
    (dt.time, _isoformat),
    (dt.timedelta, _seconds),
    (decimal.Decimal, _text),
    (uuid.UUID, _text),
    (enum.Enum, _enum_value),
    (bytes, _base64),
    (dict, _json_copy),
    (list, _json_copy),
]


def is_json_type(type_: sqltypes.TypeEngine[Any]) -> bool:
    """True for JSON-like columns, whose values can be mutated in place."""
    impl = getattr(type_, "impl_instance", None)
    return isinstance(type_, sqltypes.JSON) or isinstance(impl, sqltypes.JSON)


def converter_for(column: Column[Any]) -> Converter:
    """The JSON converter for ``column``; raises :class:`UnsupportedColumnType` if none."""
    type_ = column.type
    if is_json_type(type_):
        return _json_copy
    if isinstance(type_, sqltypes.ARRAY):
        item = converter_for(Column(column.name, type_.item_type))

        def _array(value: Any) -> Any:
            return None if value is None else [item(v) for v in value]

        return _array
    try:
        python_type = type_.python_type
    except NotImplementedError:
        python_type = None
    base = getattr(type_, "impl_instance", type_)  # a TypeDecorator's underlying type
    if python_type is dt.datetime:
        timezone = isinstance(base, sqltypes.DateTime) and base.timezone
        return _utc_aware if timezone else _utc_naive
    if python_type is decimal.Decimal:
        return _decimal_text(base.scale if isinstance(base, sqltypes.Numeric) else None)
    if python_type is not None:
        for known, converter in _BY_PYTHON_TYPE:
            if issubclass(python_type, known):
                return converter
    raise UnsupportedColumnType(
        f"column {column.table.name if column.table is not None else '?'}.{column.name} "
        f"has type {type_!r}, which livesync cannot turn into JSON. Exclude it with "
        f"collection(..., exclude=[{column.key!r}]) or give it a TypeDecorator whose "
        f"python_type is str, int, float, bool, datetime, Decimal, UUID, Enum, bytes, "
        f"dict or list."
    )


def encode_id(values: Sequence[Any]) -> str:
    """A document id from primary key values.

    A single-column key is its JSON representation as text (``7`` -> ``"7"``). A composite
    key joins its parts with ``/``, each part percent-encoded so that ``/`` and ``%`` inside
    values cannot be confused with the separator: ``("acme/eu", 7)`` -> ``"acme%2Feu/7"``.
    """
    if len(values) == 1:
        return _id_part(values[0])
    return "/".join(quote(_id_part(value), safe="") for value in values)


def decode_id(doc_id: str, parts: int) -> list[str]:
    """The textual primary key parts of an id made by :func:`encode_id`."""
    if parts == 1:
        return [doc_id]
    pieces = doc_id.split("/")
    if len(pieces) != parts:
        raise ValueError(f"document id {doc_id!r} does not have {parts} parts")
    return [unquote(piece) for piece in pieces]


def _id_part(value: Any) -> str:
    for known, converter in _BY_PYTHON_TYPE:
        if isinstance(value, known):
            return str(converter(value))
    return str(value)

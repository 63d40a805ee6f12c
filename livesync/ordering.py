"""``ORDER BY`` as a Python sort key, so windows (``order_by`` + ``limit``) are kept in memory.

:func:`compile_order` turns a publication's ``order_by`` clauses into ``key(doc)`` such that
``key(a) < key(b)`` exactly when the database returns ``a`` before ``b``. Like
:mod:`livesync.matching` it reproduces the database's semantics or refuses:

* values compare in the column's domain (the document value parsed back, as the filters do);
* NULLs sort as the dialect sorts them: PostgreSQL treats NULL as larger than any value
  (``ASC NULLS LAST``, ``DESC NULLS FIRST``), SQLite as smaller; explicit ``nulls_first()`` /
  ``nulls_last()`` win;
* text orders only where the collation is code-point order (see :mod:`livesync.matching`);
* only plain columns of the collection, ascending or descending: expressions, functions and
  enums (PostgreSQL orders them by declaration) raise :class:`NotCompilable`, and the gateway
  falls back to re-running the query.

The key ends with the primary key, and :func:`livesync.publications.analyse` appends the
primary key to a window's ``ORDER BY`` too, so ties have one order on both sides and "the next
document after the window" is well defined.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import total_ordering
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import elements, operators

from .collections import Collection
from .matching import NotCompilable, domain_of

__all__ = ["SortKey", "compile_order", "wire_order"]

Doc = Mapping[str, Any]
SortKey = Callable[[Doc], tuple[Any, ...]]


@total_ordering
class _Descending:
    """Wraps a value so that it sorts in reverse."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.value == other.value

    def __lt__(self, other: _Descending) -> bool:
        return bool(other.value < self.value)

    def __hash__(self) -> int:
        return hash(self.value)


def _unwrap(clause: Any) -> tuple[Any, bool, bool | None]:
    """``(column, descending, nulls_first or None)`` of one ``ORDER BY`` entry."""
    descending, nulls_first = False, None
    while isinstance(clause, elements.UnaryExpression):
        modifier = clause.modifier
        if modifier is operators.desc_op:
            descending = True
        elif modifier is operators.asc_op:
            pass
        elif modifier is operators.nulls_first_op:
            nulls_first = True
        elif modifier is operators.nulls_last_op:
            nulls_first = False
        else:
            raise NotCompilable(f"ORDER BY {clause} is not a plain column")
        clause = clause.element
    if hasattr(clause, "__clause_element__"):
        clause = clause.__clause_element__()
    if isinstance(clause, elements.Label):
        clause = clause.element
    return clause, descending, nulls_first


def compile_order(
    order_by: tuple[Any, ...],
    collection: Collection,
    dialect: str | Dialect,
    *,
    text_ordering_safe: bool | None = None,
) -> SortKey:
    """A sort key reproducing ``ORDER BY order_by, <primary key>`` on ``dialect``.

    Raises :class:`NotCompilable` for anything the database might order differently.
    """
    name = dialect if isinstance(dialect, str) else dialect.name
    if name not in ("postgresql", "sqlite"):
        raise NotCompilable(f"dialect {name!r} is not one livesync orders in Python")
    pg = name == "postgresql"
    fields = {f.column.key: f for f in collection.fields}
    parts: list[Callable[[Doc], Any]] = []
    seen: set[str] = set()
    entries = [_unwrap(c) for c in order_by]
    entries += [(column, False, None) for column in collection.pk_columns]
    for column, descending, nulls_first in entries:
        if getattr(column, "table", None) is not collection.table:
            raise NotCompilable(f"ORDER BY {column} is not a column of {collection.name!r}")
        found = fields.get(column.key)
        if found is None:
            raise NotCompilable(f"ORDER BY {column.key!r}: not in {collection.name!r} documents")
        if found.key in seen:
            continue  # a later repeat of a column never changes the order
        seen.add(found.key)
        domain = domain_of(found.column, pg, text_ordering_safe)
        if not domain.ordered:
            raise NotCompilable(f"ORDER BY {column.key!r}: the database orders it differently")
        if nulls_first is None:  # PostgreSQL: NULL is the largest value; SQLite: the smallest
            nulls_first = descending if pg else not descending
        parts.append(_part(found.key, domain.from_doc, descending, nulls_first))

    def key(doc: Doc) -> tuple[Any, ...]:
        return tuple(part(doc) for part in parts)

    return key


def wire_order(
    order_by: tuple[Any, ...], collection: Collection, dialect: str | Dialect
) -> list[dict[str, Any]] | None:
    """The order a client should show documents in (``ready.order`` in docs/protocol.md):
    ``[{"f": field, "desc": bool, "nulls": "first"|"last"}, ...]``, or ``None`` when the
    publication has no order or orders by something other than plain fields."""
    name = dialect if isinstance(dialect, str) else dialect.name
    fields = {f.column.key: f for f in collection.fields}
    out: list[dict[str, Any]] = []
    for clause in order_by:
        try:
            column, descending, nulls_first = _unwrap(clause)
        except NotCompilable:
            return None
        found = fields.get(getattr(column, "key", None) or "")
        if found is None or getattr(column, "table", None) is not collection.table:
            return None
        if nulls_first is None:
            nulls_first = descending if name == "postgresql" else not descending
        out.append(
            {"f": found.key, "desc": descending, "nulls": "first" if nulls_first else "last"}
        )
    return out or None


def _part(
    field: str, from_doc: Callable[[Any], Any], descending: bool, nulls_first: bool
) -> Callable[[Doc], Any]:
    """One column's place in the key: ``(rank, value)``, rank putting NULLs first or last."""
    null = (0, None) if nulls_first else (2, None)

    def part(doc: Doc) -> Any:
        raw = doc.get(field)
        if raw is None:
            return null
        value = from_doc(raw)
        return (1, _Descending(value) if descending else value)

    return part

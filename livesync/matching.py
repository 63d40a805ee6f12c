"""Where clauses as Python predicates, and an index that routes changes to subscriptions.

A publication is a ``select()`` over one live collection. When a change set arrives, the
gateway must decide which subscriptions should hold each after-image document without a
database round trip per subscription. :func:`compile_predicate` turns the WHERE clause into
a predicate over the change's JSON document; :class:`SubscriptionIndex` finds the
subscriptions a document may match in time proportional to the matches, not to all.

The contract: ``compiled.predicate(doc)`` is true exactly when the document's row is in the
query's result *on that database*. So the predicate reproduces SQL semantics, not Python's:

* values compare in the column's domain (``Decimal``, ``datetime``, ``UUID``...), with the
  literal normalized as the driver binds it and the document value parsed back;
* NULL follows three-valued logic: a comparison with NULL is *unknown*, ``NOT unknown`` is
  unknown, and WHERE keeps only *true* rows;
* ``LIKE`` is case-sensitive on PostgreSQL, ASCII-case-insensitive on SQLite (its default,
  ``PRAGMA case_sensitive_like=OFF``); ``ILIKE`` ignores case on both. PostgreSQL's default
  escape character is ``\\``, SQLite has none;
* ordering on text (``<``, ``BETWEEN``) is compiled only where the collation is known to
  order by code point as Python does: SQLite's ``BINARY``; on PostgreSQL a column declared
  ``collation="C"``/``"POSIX"``, or any text column when the caller passes
  ``text_ordering_safe=True`` (a database whose ``LC_COLLATE`` is ``C`` or ``C.UTF-8``).
  Linguistic collations (``en_US.UTF-8``, ICU) sort differently, so there it is refused.

Anything else raises :class:`NotCompilable` instead of guessing: re-running the query is
slow but right, a wrong predicate silently diverges. Assumptions shared with
:mod:`livesync.documents`: the PostgreSQL session time zone is UTC (naive literals for
``timestamptz`` are UTC), SQLite ``Numeric`` values are stored at the column's scale, and
PostgreSQL's ``LC_CTYPE`` is a UTF-8 one (``ILIKE`` folds non-ASCII letters per character;
under ``LC_CTYPE=C`` the server folds ASCII only).
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import math
import operator
import re
import string
import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import elements, operators
from sqlalchemy.sql.schema import Column

from .collections import Collection

__all__ = ["CompiledFilter", "NotCompilable", "Predicate", "SubscriptionIndex", "compile_predicate"]

Doc = Mapping[str, Any]
Predicate = Callable[[Doc], bool]
Truth = bool | None  # SQL three-valued logic: None is "unknown"
_Node = Callable[[Doc], Truth]
_Hints = dict[str, frozenset[Any]]
_Convert = Callable[[Any], Any]


class NotCompilable(ValueError):
    """The clause is outside the subset evaluated in Python; the message names the part.

    The gateway then falls back to re-running the publication's query.
    """


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    """A compiled where clause.

    ``predicate(doc)`` is true iff the document's row satisfies the clause. ``equalities``
    maps a field to the only values (in the field's comparison domain) a matching document
    can hold there, from top-level ``field == literal`` / ``field IN (...)`` conjuncts;
    ``keys`` maps each such field to the function turning a document value into that domain.
    """

    predicate: Predicate
    equalities: Mapping[str, frozenset[Any]]
    keys: Mapping[str, _Convert]

    def __call__(self, doc: Doc) -> bool:
        return self.predicate(doc)


MATCH_ALL = CompiledFilter(lambda doc: True, {}, {})


def compile_predicate(
    where: Any,
    collection: Collection,
    dialect: str | Dialect,
    *,
    params: Mapping[str, Any] | None = None,
    text_ordering_safe: bool | None = None,
) -> CompiledFilter:
    """Compile ``where`` (a boolean expression over ``collection``'s model; ``None`` means
    "every document") with the semantics of ``dialect`` (``"postgresql"``, ``"sqlite"`` or
    an engine's ``Dialect``).

    For a ``select()``, pass ``stmt.whereclause`` and, if it has ``.params(...)``,
    ``params=stmt.compile().params`` (values by bound parameter name, overriding the clause's
    own). ``text_ordering_safe``: whether the database orders text by code point (see the
    module docstring); ``None`` means yes on SQLite, no on PostgreSQL except C-collated
    columns. Raises :class:`NotCompilable` for anything outside the supported subset.
    """
    name = dialect if isinstance(dialect, str) else dialect.name
    if name not in ("postgresql", "sqlite"):
        raise NotCompilable(f"dialect {name!r} is not one livesync evaluates in Python")
    if where is None:
        return MATCH_ALL
    compiler = _Compiler(collection, name == "postgresql", text_ordering_safe, params or {})
    node, hints = compiler.compile(where)
    keys = {key: compiler.domains[key].from_doc for key in hints}
    return CompiledFilter(lambda doc: node(doc) is True, hints, keys)


# --------------------------------------------------------------------------- domains


@dataclass(frozen=True, slots=True)
class _Domain:
    """How a field compares: document value -> comparable, literal -> comparable.

    ``from_doc`` functions are module-level, so the index can group subscriptions by them.
    """

    from_doc: _Convert
    from_literal: _Convert
    ordered: bool = True
    text: bool = False
    boolean: bool = False


def _identity(value: Any) -> Any:
    return value


def domain_of(column: Column[Any], pg: bool, ordering_safe: bool | None) -> _Domain:
    type_ = column.type

    def of(*kinds: type, exclude: tuple[type, ...] = (), then: _Convert = _identity) -> _Convert:
        def convert(value: Any) -> Any:
            if isinstance(value, kinds) and not isinstance(value, exclude):
                result = then(value)
                if result is not None:
                    return result
            raise NotCompilable(f"literal {value!r} does not fit {column.key!r} ({type_})")

        return convert

    if isinstance(type_, sqltypes.TypeDecorator):
        raise NotCompilable(f"column {column.key!r} has a custom type; its binds are opaque")
    if isinstance(type_, sqltypes.Enum):  # PostgreSQL orders enums by declaration: no <, >
        return _Domain(_identity, _enum_literal(type_, column), ordered=False)
    if isinstance(type_, sqltypes.Boolean):
        return _Domain(_identity, of(bool), boolean=True)
    if isinstance(type_, sqltypes.Integer):
        return _Domain(_identity, of(int, exclude=(bool,)))
    if isinstance(type_, sqltypes.Float):
        single = isinstance(type_, sqltypes.REAL) or (type_.precision or 53) <= 24
        if type_.asdecimal or (pg and single):  # float4 = float8 literal is not Python's ==
            raise NotCompilable(f"column {column.key!r}: single-precision or decimal floats")
        return _Domain(float, of(int, float, exclude=(bool,), then=_finite(float)))
    if isinstance(type_, sqltypes.Numeric):
        if not type_.asdecimal:
            raise NotCompilable(f"column {column.key!r}: Numeric(asdecimal=False)")
        # SQLite has no decimal type: the driver binds float() and compares REALs.
        to = decimal.Decimal if pg else float
        return _Domain(_decimal if pg else float, of(int, decimal.Decimal, then=_finite(to)))
    if isinstance(type_, sqltypes.String):
        if isinstance(type_, sqltypes.CHAR | sqltypes.NCHAR):
            raise NotCompilable(f"column {column.key!r}: CHAR pads and compares with blanks")
        collation = type_.collation
        if collation is not None and collation not in (("C", "POSIX") if pg else ("BINARY",)):
            raise NotCompilable(f"column {column.key!r} has collation {collation!r}")
        ordered = (not pg or collation is not None) if ordering_safe is None else ordering_safe
        return _Domain(_identity, of(str), ordered=ordered, text=True)
    if isinstance(type_, sqltypes.DateTime):
        tz = bool(type_.timezone)
        then = _datetime_literal(tz, pg)
        return _Domain(
            _aware_datetime if tz else dt.datetime.fromisoformat, of(dt.datetime, then=then)
        )
    if isinstance(type_, sqltypes.Date):
        return _Domain(dt.date.fromisoformat, of(dt.date, exclude=(dt.datetime,)))
    if isinstance(type_, sqltypes.Time) and not type_.timezone:
        return _Domain(dt.time.fromisoformat, of(dt.time, then=_naive_time))
    if isinstance(type_, sqltypes.Uuid) and type_.as_uuid:
        return _Domain(uuid.UUID, of(uuid.UUID))
    raise NotCompilable(f"column {column.key!r} of type {type_} is not compared in Python")


def _finite(to: _Convert) -> _Convert:
    """NaN, infinities and overflowing values compare differently in SQL: refused (None)."""

    def convert(value: Any) -> Any:
        try:
            finite = (
                math.isfinite(value)
                if isinstance(value, float)
                else decimal.Decimal(value).is_finite()
            )
            return to(value) if finite else None
        except (ArithmeticError, ValueError):
            return None

    return convert


def _decimal(text: Any) -> Any:
    value = decimal.Decimal(text)
    return None if value.is_nan() else value  # a NaN in the document compares as unknown


def _naive_time(value: dt.time) -> dt.time | None:
    return value if value.tzinfo is None else None


def _aware_datetime(text: Any) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _datetime_literal(timezone: bool, pg: bool) -> _Convert:
    """PostgreSQL compares instants: an aware literal is converted to UTC, a naive one taken
    as UTC (the session zone). SQLite binds wall-clock text with the zone dropped. The result
    has the shape of the document's value: UTC-aware for ``timezone=True``, else naive."""

    def convert(value: dt.datetime) -> dt.datetime:
        if pg and value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        value = value.replace(tzinfo=None)
        return value.replace(tzinfo=dt.UTC) if timezone else value

    return convert


def _enum_literal(type_: sqltypes.Enum, column: Column[Any]) -> _Convert:
    """A literal as SQLAlchemy binds it (a member, or the persisted name) -> the document's
    representation (the member's ``value``). Strings the type does not know reach the
    database unchanged and fail or match nothing there: refused."""

    def convert(value: Any) -> Any:
        try:
            obj = type_._object_lookup[type_._valid_lookup[value]]
        except (KeyError, TypeError):
            raise NotCompilable(f"{value!r} is not a value of {column.key!r}") from None
        return obj.value if isinstance(obj, enum.Enum) else obj

    return convert


_NATURAL: list[tuple[Any, sqltypes.TypeEngine[Any]]] = [
    (bool, sqltypes.Boolean()),
    (int, sqltypes.Integer()),
    (float, sqltypes.Float()),
    (decimal.Decimal, sqltypes.Numeric()),
    (str | enum.Enum, sqltypes.String()),
    (dt.datetime, sqltypes.DateTime()),
    (dt.date, sqltypes.Date()),
    (dt.time, sqltypes.Time()),
    (uuid.UUID, sqltypes.Uuid()),
]


def _bind_fits(
    bind: sqltypes.TypeEngine[Any], column: sqltypes.TypeEngine[Any], value: Any
) -> bool:
    """Whether a bound value reaches the database as itself.

    SQLAlchemy types a literal after the column unless the value suggests another type:
    ``price IN (5, 19.30)`` binds both as INTEGER, and PostgreSQL casts ``19.30`` to ``19``.
    A bind typed unlike its column is accepted only if every value has the bind's type.
    """
    affinity = bind._type_affinity
    if isinstance(bind, sqltypes.NullType) or affinity is column._type_affinity:
        return True
    for item in value if isinstance(value, list | tuple) else [value]:
        natural = next((t for kind, t in _NATURAL if isinstance(item, kind)), None)
        if item is not None and (natural is None or natural._type_affinity is not affinity):
            return False
    return True


# --------------------------------------------------------------------------- LIKE


class _UnicodeLower(dict[int, str]):
    """A ``str.translate`` table lowering one character at a time, as PostgreSQL's
    ``lower()`` does under a UTF-8 ``LC_CTYPE`` (``towlower``): no final-sigma context, and
    ``İ`` becomes ``i`` rather than Python's two characters."""

    def __missing__(self, code: int) -> str:
        self[code] = lowered = chr(code).lower()[0]
        return lowered


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_UNICODE_LOWER = _UnicodeLower()
_AFFIXES = {
    "like": ("", ""),
    "startswith": ("", "%"),
    "endswith": ("%", ""),
    "contains": ("%", "%"),
}
#: LIKE-family operator -> (pattern prefix, suffix, case-insensitive, negated), as SQLAlchemy
#: compiles them (``startswith(p)`` is ``LIKE :p || '%'``).
_LIKE_OPS: dict[Any, tuple[str, str, bool, bool]] = {
    getattr(operators, f"{'not_' * negated}{'i' * folded}{name}_op"): (*affix, folded, negated)
    for name, affix in _AFFIXES.items()
    for folded in (False, True)
    for negated in (False, True)
}


def like_regex(pattern: str, escape: str | None) -> re.Pattern[str]:
    """The regular expression (for ``fullmatch``) equivalent to a LIKE pattern: ``%`` is
    any run of characters, ``_`` one character (newlines included), and the escape character
    makes the next one literal. A trailing escape character (an error on PostgreSQL) is
    refused."""
    out: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == escape:
            literal = next(chars, None)
            if literal is None:
                raise NotCompilable(f"LIKE pattern {pattern!r} ends with its escape character")
            out.append(re.escape(literal))
        else:
            out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
    return re.compile("".join(out), re.DOTALL)


# --------------------------------------------------------------------------- compiler

_NAMES = ("eq", "ne", "lt", "le", "gt", "ge")
_COMPARISONS = {getattr(operators, name): getattr(operator, name) for name in _NAMES}
#: ``literal < column`` is ``column > literal``
_MIRROR = {
    getattr(operators, a): getattr(operators, b)
    for a, b in zip(_NAMES, ("eq", "ne", "gt", "ge", "lt", "le"), strict=True)
}


def _const(value: Truth) -> _Node:
    return lambda doc: value


def _all(nodes: list[_Node], stop: bool = False) -> _Node:
    """AND (or, with ``stop=True``, OR): the first ``stop`` value decides, else any unknown."""

    def node(doc: Doc) -> Truth:
        result: Truth = not stop
        for child in nodes:
            value = child(doc)
            if value is stop:
                return stop
            if value is None:
                result = None
        return result

    return node


def _not(child: _Node) -> _Node:
    def node(doc: Doc) -> Truth:
        value = child(doc)
        return None if value is None else not value

    return node


class _Compiler:
    """Walks a SQLAlchemy expression into a three-valued node plus equality hints."""

    def __init__(
        self, collection: Collection, pg: bool, ordering_safe: bool | None, params: Doc
    ) -> None:
        self.collection = collection
        self.pg = pg
        self.ordering_safe = ordering_safe
        self.params = params
        self.fields = {f.column.key: f for f in collection.fields}
        self.domains: dict[str, _Domain] = {}

    def compile(self, elem: Any) -> tuple[_Node, _Hints]:
        if hasattr(elem, "__clause_element__"):  # a mapped attribute such as Model.active
            elem = elem.__clause_element__()
        if isinstance(elem, elements.Grouping):
            return self.compile(elem.element)
        if isinstance(elem, elements.BooleanClauseList):
            parts = [self.compile(clause) for clause in elem.clauses]
            nodes = [node for node, _ in parts]
            if elem.operator is operators.or_:
                return _all(nodes, stop=True), {}
            hints: _Hints = {}
            for _, child in parts:  # an AND: each conjunct narrows the possible values
                for key, values in child.items():
                    hints[key] = hints[key] & values if key in hints else values
            return _all(nodes), hints
        if isinstance(elem, elements.AsBoolean):  # ~Model.flag, or not_() of some clauses
            node, hints = self.compile(elem.element)
            return (_not(node), {}) if elem.operator is operators.is_false else (node, hints)
        if isinstance(elem, elements.UnaryExpression):
            if elem.operator is operators.inv and elem.modifier is None:
                return _not(self.compile(elem.element)[0]), {}
            raise NotCompilable(f"unary expression {elem}")
        if isinstance(elem, elements.BinaryExpression):
            return self._binary(elem)
        if isinstance(elem, elements.ColumnClause):
            key, domain = self._field(elem)
            if not domain.boolean:
                raise NotCompilable(f"{elem} is not a boolean column")
            return (lambda doc: doc.get(key)), {}
        value = self._literal(elem)  # true(), false(), null(), literal(True)
        if value is None or isinstance(value, bool):
            return _const(value), {}
        raise NotCompilable(f"{value!r} is not a condition")

    def _literal(self, elem: Any, key: str | None = None) -> Any:
        """The value of a literal element, checked to reach the database as compared with
        field ``key``."""
        if isinstance(elem, elements.Grouping):
            return self._literal(elem.element, key)
        if isinstance(elem, elements.Null):
            return None
        if isinstance(elem, elements.True_ | elements.False_):
            return isinstance(elem, elements.True_)
        if not isinstance(elem, elements.BindParameter):
            raise NotCompilable(f"{type(elem).__name__} {elem} is not a literal or bound value")
        if isinstance(elem.type, sqltypes.TypeDecorator):
            raise NotCompilable(f"a bound value has the custom type {elem.type}")
        if elem.key in self.params:
            value = self.params[elem.key]
        elif elem.required and elem.callable is None:
            raise NotCompilable(f"bound parameter {elem.key!r} has no value yet")
        else:
            value = elem.effective_value
        if key is not None and not _bind_fits(elem.type, self._type_of(key), value):
            raise NotCompilable(f"a value compared with {key!r} is bound as {elem.type}")
        return value

    def _type_of(self, key: str) -> sqltypes.TypeEngine[Any]:
        return self.collection.field_by_key[key].column.type

    def _field(self, elem: Any) -> tuple[str, _Domain]:
        """The document field and domain of a column of the collection's own table."""
        if getattr(elem, "table", None) is not self.collection.table:
            raise NotCompilable(f"{elem} is not a column of {self.collection.name!r}")
        found = self.fields.get(elem.key)
        if found is None:
            raise NotCompilable(f"{elem.key!r} is not in {self.collection.name!r} documents")
        if found.key not in self.domains:
            domain = domain_of(found.column, self.pg, self.ordering_safe)
            self.domains[found.key] = domain
        return found.key, self.domains[found.key]

    def _binary(self, elem: elements.BinaryExpression[Any]) -> tuple[_Node, _Hints]:
        op, left, right = elem.operator, elem.left, elem.right
        if not isinstance(left, elements.ColumnClause) and op in _COMPARISONS:
            left, right, op = right, left, _MIRROR[op]
        if not isinstance(left, elements.ColumnClause):
            raise NotCompilable(f"{elem} does not compare a column with a value")
        key, domain = self._field(left)
        if op in _COMPARISONS:
            if op not in (operators.eq, operators.ne) and not domain.ordered:
                raise NotCompilable(f"ordering on {key!r} differs between Python and SQL")
            return self._compare(key, domain, _COMPARISONS[op], self._literal(right, key))
        if op in (operators.is_, operators.is_not):
            value = self._literal(right)
            if value is None:
                node: _Node = lambda doc: doc.get(key) is None  # noqa: E731
            elif isinstance(value, bool) and domain.boolean:
                node = lambda doc: doc.get(key) is value  # noqa: E731
            else:
                raise NotCompilable(f"IS {value!r} on {key!r}")
            return (_not(node) if op is operators.is_not else node), {}
        if op in (operators.is_distinct_from, operators.is_not_distinct_from):
            value = self._convert(domain, self._literal(right, key))
            from_doc = domain.from_doc
            node = lambda doc: (  # noqa: E731
                doc.get(key) is None and value is None
                if doc.get(key) is None or value is None
                else from_doc(doc[key]) == value
            )
            return (_not(node) if op is operators.is_distinct_from else node), {}
        if op in (operators.in_op, operators.not_in_op):
            return self._in(key, domain, right, negate=op is operators.not_in_op)
        if op in (operators.between_op, operators.not_between_op):
            bounds = list(getattr(right, "clauses", ()))
            if elem.modifiers.get("symmetric") or len(bounds) != 2 or not domain.ordered:
                raise NotCompilable(f"BETWEEN on {key!r}")
            low = self._compare(key, domain, operator.ge, self._literal(bounds[0], key))[0]
            high = self._compare(key, domain, operator.le, self._literal(bounds[1], key))[0]
            node = _all([low, high])
            return (_not(node) if op is operators.not_between_op else node), {}
        if op in _LIKE_OPS and domain.text:
            return self._like(key, elem), {}
        raise NotCompilable(f"operator {getattr(op, '__name__', op)!r} on {key!r}")

    def _convert(self, domain: _Domain, value: Any) -> Any:
        return None if value is None else domain.from_literal(value)

    def _compare(
        self, key: str, domain: _Domain, compare: Callable[[Any, Any], bool], value: Any
    ) -> tuple[_Node, _Hints]:
        literal = self._convert(domain, value)
        if literal is None:
            return _const(None), {}  # anything compared with NULL is unknown
        from_doc = domain.from_doc

        def node(doc: Doc) -> Truth:
            raw = doc.get(key)
            current = None if raw is None else from_doc(raw)
            return None if current is None else compare(current, literal)

        return node, ({key: frozenset([literal])} if compare is operator.eq else {})

    def _in(self, key: str, domain: _Domain, right: Any, negate: bool) -> tuple[_Node, _Hints]:
        values = self._literal(right, key)
        if not getattr(right, "expanding", False) or not isinstance(values, list | tuple):
            raise NotCompilable(f"IN on {key!r} needs a list of literals")
        converted = [self._convert(domain, v) for v in values]
        members = frozenset(v for v in converted if v is not None)
        has_null, from_doc = None in converted, domain.from_doc

        def node(doc: Doc) -> Truth:
            if not converted:  # SQLAlchemy renders an empty IN as false (NOT IN: true)
                return negate
            raw = doc.get(key)
            current = None if raw is None else from_doc(raw)
            if current is None:
                return None
            if current in members:
                return not negate
            return None if has_null else negate

        return node, ({} if negate else {key: members})

    def _like(self, key: str, elem: elements.BinaryExpression[Any]) -> _Node:
        prefix, suffix, folded, negate = _LIKE_OPS[elem.operator]
        value = self._literal(elem.right, key)
        if value is None:
            return _const(None)
        if not isinstance(value, str):
            raise NotCompilable(f"LIKE pattern {value!r} is not a string")
        escape = elem.modifiers.get("escape")
        if escape is None and self.pg:
            escape = "\\"
        if escape is not None and (len(escape) != 1 or escape in "%_" or escape.isalpha()):
            raise NotCompilable(f"LIKE escape character {escape!r}")
        # SQLite's LIKE and lower() fold ASCII only; PostgreSQL folds for ILIKE alone.
        table = _ASCII_LOWER if not self.pg else _UNICODE_LOWER if folded else None
        pattern = prefix + value + suffix
        regex = like_regex(pattern if table is None else pattern.translate(table), escape)

        def node(doc: Doc) -> Truth:
            raw = doc.get(key)
            if raw is None:
                return None
            found = regex.fullmatch(raw if table is None else raw.translate(table))
            return (found is None) if negate else (found is not None)

        return node


# --------------------------------------------------------------------------- index

K = TypeVar("K", bound=Hashable)
_Slot = tuple[str, _Convert] | None  # (field, from_doc) a subscription is indexed by; None: scan


@dataclass(frozen=True, slots=True)
class _Entry:
    collection: str
    compiled: CompiledFilter
    slot: _Slot
    values: frozenset[Any]


class SubscriptionIndex(Generic[K]):
    """Subscriptions per collection, routed by the equalities their filters imply.

    A filter with equality hints (``owner_id == 7``, ``status IN (...)``, alone or as a
    top-level AND conjunct) is filed under one such field, the one with the fewest values, in
    a ``value -> keys`` dict; other filters go to the collection's scan list (the slot
    ``None``). :meth:`candidates` costs one dict lookup per distinct indexed field plus the
    hits plus the scan list, never a pass over every subscription; :meth:`matching` then
    evaluates the full predicates of those candidates only.

    The index answers "which subscriptions should hold this after-image". Documents that
    *left* a subscription's result are the gateway's to notice, since it knows what each
    subscription holds: a held document that is no longer matched (or deleted) is removed.
    """

    def __init__(self) -> None:
        self._entries: dict[K, _Entry] = {}
        self._slots: dict[str, dict[_Slot, dict[Any, dict[K, None]]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def keys(self) -> Iterable[K]:
        return self._entries.keys()

    def filter_of(self, key: K) -> CompiledFilter:
        return self._entries[key].compiled

    def add(self, key: K, collection: str, compiled: CompiledFilter) -> None:
        """Add subscription ``key`` over ``collection``, replacing any earlier filter."""
        self.remove(key)
        hints = compiled.equalities
        slot: _Slot = None
        values: frozenset[Any] = frozenset([None])
        if hints:
            field = min(hints, key=lambda name: len(hints[name]))
            slot, values = (field, compiled.keys[field]), hints[field]
        self._entries[key] = _Entry(collection, compiled, slot, values)
        by_value = self._slots.setdefault(collection, {}).setdefault(slot, {})
        for value in values:
            by_value.setdefault(value, {})[key] = None

    def remove(self, key: K) -> None:
        """Forget subscription ``key``; unknown keys are ignored."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        slots = self._slots[entry.collection]
        by_value = slots[entry.slot]
        for value in entry.values:
            del by_value[value][key]
            if not by_value[value]:
                del by_value[value]
        if not by_value:
            del slots[entry.slot]
            if not slots:
                del self._slots[entry.collection]

    def candidates(self, collection: str, doc: Doc | None) -> list[K]:
        """Every subscription whose filter may be true for ``doc``, each once (a superset of
        :meth:`matching`). ``doc is None`` (a delete) has none."""
        out: list[K] = []
        if doc is None:
            return out
        for slot, by_value in self._slots.get(collection, {}).items():
            if slot is None:
                out.extend(by_value[None])
            elif (raw := doc.get(slot[0])) is not None:
                out.extend(by_value.get(slot[1](raw), ()))
        return out

    def matching(self, collection: str, doc: Doc | None) -> list[K]:
        """The subscriptions whose filter is true for ``doc``."""
        if doc is None:
            return []
        entries = self._entries
        return [k for k in self.candidates(collection, doc) if entries[k].compiled.predicate(doc)]

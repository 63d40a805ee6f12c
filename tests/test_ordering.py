"""ORDER BY as a Python sort key, checked against the real databases' own ordering."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from livesync import Versioned
from livesync.collections import Collection
from livesync.matching import NotCompilable
from livesync.ordering import compile_order, wire_order
from tests.test_matching import (
    ROWS,
    Db,
    Row,
    UnitBase,
    db,  # noqa: F401 (a fixture, used by matching_db)
)

ORDERABLE = ["n", "name", "flag", "price", "at", "naive", "day", "clock", "key", "ratio"]


@st.composite
def orderings(draw: st.DrawFn) -> list[Any]:
    """One to three columns, each ascending or descending, NULLs placed by default or not."""
    fields = draw(st.lists(st.sampled_from(ORDERABLE), min_size=1, max_size=3, unique=True))
    clauses = []
    for name in fields:
        clause = getattr(Row, name)
        clause = clause.desc() if draw(st.booleans()) else clause.asc()
        nulls = draw(st.sampled_from(["default", "first", "last"]))
        if nulls != "default":
            clause = clause.nulls_first() if nulls == "first" else clause.nulls_last()
        clauses.append(clause)
    return clauses


@pytest.fixture
def matching_db(db: Db) -> Db:  # noqa: F811 (the imported fixture)
    """test_matching's table of awkward values, on SQLite and on PostgreSQL."""
    return db


def database_order(database: Db, clauses: list[Any]) -> list[int]:
    return list(database.conn.execute(select(Row.id).order_by(*clauses, Row.id)).scalars())


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(clauses=orderings())
def test_sort_key_orders_as_the_database_does(matching_db: Db, clauses: list[Any]) -> None:
    try:
        key = compile_order(
            tuple(clauses), ROWS, matching_db.dialect, text_ordering_safe=matching_db.ordering_safe
        )
    except NotCompilable:
        assert not matching_db.ordering_safe  # only text on a linguistic collation is refused here
        return
    ours = [d["id"] for d in sorted(matching_db.docs, key=key)]
    assert ours == database_order(matching_db, clauses), [str(c) for c in clauses]


def test_null_placement_defaults_per_dialect() -> None:
    docs = [{"id": 1, "n": None}, {"id": 2, "n": 5}, {"id": 3, "n": -1}]

    def ids(clause: Any, dialect: str) -> list[int]:
        return [d["id"] for d in sorted(docs, key=compile_order((clause,), ROWS, dialect))]

    assert ids(Row.n, "postgresql") == [3, 2, 1]  # NULL is the largest value
    assert ids(Row.n.desc(), "postgresql") == [1, 2, 3]
    assert ids(Row.n, "sqlite") == [1, 3, 2]  # NULL is the smallest value
    assert ids(Row.n.desc(), "sqlite") == [2, 3, 1]
    assert ids(Row.n.desc().nulls_last(), "postgresql") == [2, 3, 1]
    assert ids(Row.n.nulls_first(), "postgresql") == [1, 3, 2]


def test_ties_are_broken_by_the_primary_key() -> None:
    docs = [{"id": 3, "n": 1}, {"id": 1, "n": 1}, {"id": 2, "n": 0}]
    key = compile_order((Row.n.desc(),), ROWS, "sqlite")
    assert [d["id"] for d in sorted(docs, key=key)] == [1, 3, 2]


class Unordered(Versioned, UnitBase):
    __tablename__ = "o_unordered"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(20))


@pytest.mark.parametrize(
    "clause",
    [
        lambda: func.lower(Row.name),
        lambda: Row.n + 1,
        lambda: Row.color,  # PostgreSQL orders enums by declaration, not by value
        lambda: Unordered.label,  # another table's column
    ],
)
def test_not_compilable(clause: Any) -> None:
    with pytest.raises(NotCompilable):
        compile_order((clause(),), ROWS, "sqlite")


def test_text_order_needs_a_code_point_collation() -> None:
    with pytest.raises(NotCompilable):
        compile_order((Row.name,), ROWS, "postgresql")
    assert compile_order((Row.name,), ROWS, "sqlite")({"id": 1, "name": "b"})[0] == (1, "b")
    collection = Collection(Unordered)
    assert compile_order((Unordered.label,), collection, "postgresql", text_ordering_safe=True)


def test_wire_order_tells_clients_how_to_sort() -> None:
    assert wire_order((Row.n.desc(), Row.id), ROWS, "postgresql") == [
        {"f": "n", "desc": True, "nulls": "first"},
        {"f": "id", "desc": False, "nulls": "last"},
    ]
    assert wire_order((Row.n.desc(),), ROWS, "sqlite") == [
        {"f": "n", "desc": True, "nulls": "last"}
    ]
    assert wire_order((func.lower(Row.name),), ROWS, "sqlite") is None
    assert wire_order((), ROWS, "sqlite") is None

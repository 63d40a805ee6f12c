"""Where clauses compiled to Python predicates, and the subscription index.

The central test is differential: every clause (hand-picked and hypothesis-generated) runs
as ``SELECT id ... WHERE clause`` on SQLite and PostgreSQL, and the ids the compiled
predicate accepts (over documents built exactly as capture builds them) must be the same.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import operator
import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    CHAR,
    JSON,
    REAL,
    Date,
    DateTime,
    Engine,
    Enum,
    Float,
    ForeignKey,
    LargeBinary,
    Numeric,
    Select,
    String,
    Time,
    Uuid,
    and_,
    bindparam,
    cast,
    create_engine,
    false,
    func,
    insert,
    literal,
    literal_column,
    not_,
    null,
    or_,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, aliased, mapped_column

from livesync import Collection, Versioned
from livesync.matching import (
    MATCH_ALL,
    CompiledFilter,
    NotCompilable,
    SubscriptionIndex,
    compile_predicate,
)

D = decimal.Decimal
UTC = dt.UTC
PLUS2 = dt.timezone(dt.timedelta(hours=2))
MINUS5 = dt.timezone(dt.timedelta(hours=-5))


class MBase(DeclarativeBase):
    pass


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Row(Versioned, MBase):
    __tablename__ = "m_rows"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    owner_id: Mapped[int]
    n: Mapped[int | None]
    name: Mapped[str | None] = mapped_column(String(40))
    flag: Mapped[bool | None]
    price: Mapped[D | None] = mapped_column(Numeric(10, 2))
    at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    naive: Mapped[dt.datetime | None] = mapped_column(DateTime)
    day: Mapped[dt.date | None] = mapped_column(Date)
    clock: Mapped[dt.time | None] = mapped_column(Time)
    color: Mapped[Color | None] = mapped_column(Enum(Color, name="m_color"))
    key: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    ratio: Mapped[float | None] = mapped_column(Float)
    data: Mapped[Any] = mapped_column(JSON, nullable=True)
    secret: Mapped[str | None] = mapped_column(String(20))


class Other(Versioned, MBase):
    __tablename__ = "m_other"

    id: Mapped[int] = mapped_column(primary_key=True)
    row_id: Mapped[int | None] = mapped_column(ForeignKey("m_rows.id"))
    n: Mapped[int | None]


ROWS = Collection(Row, exclude=["secret"])


class UnitBase(DeclarativeBase):
    pass


class Odd(Versioned, UnitBase):
    """Column types the predicate compiler refuses (never created in a database)."""

    __tablename__ = "m_odd"

    id: Mapped[int] = mapped_column(primary_key=True)
    nocase: Mapped[str] = mapped_column(String(20, collation="NOCASE"))
    c_text: Mapped[str] = mapped_column(String(20, collation="C"))
    fixed: Mapped[str] = mapped_column(CHAR(3))
    single: Mapped[float] = mapped_column(REAL)
    blob: Mapped[bytes] = mapped_column(LargeBinary)
    named: Mapped[str] = mapped_column(Enum("x", "y", name="m_named"))


ODD = Collection(Odd)

# --------------------------------------------------------------------------- data

AT = dt.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
WALL = dt.datetime(2026, 1, 1, 12, 0)
U1, U2, U3 = (
    uuid.UUID(int=1),
    uuid.UUID(int=2**127),
    uuid.UUID("7c9e6679-7425-40de-944b-e07fc1f90ae7"),
)
NAMES = [
    "", "alice", "Alice", "ALICE", "bob", "a%b", "a_b", "ab", "a\\b", "a/b", "a!b", "50%",
    "Émile", "émile", "straße", "ΟΔΟΣ", "οδοσ", "İstanbul", "istanbul", "x\ny", "Zoë", "zoe",
]  # fmt: skip
POOLS: dict[str, list[Any]] = {
    "owner_id": [1, 2, 3],
    "n": [None, -5, 0, 1, 2, 3, 7, 100],
    "name": [None, *NAMES],
    "flag": [None, True, False],
    "price": [None, D("0.00"), D("19.30"), D("19.31"), D("-1.50"), D("12345678.99"), D("5")],
    "at": [
        None,
        AT,
        AT.astimezone(PLUS2),
        AT - dt.timedelta(microseconds=1),
        dt.datetime(2025, 12, 31, 20, 0, tzinfo=MINUS5),
        dt.datetime(2026, 1, 1, 14, 0, tzinfo=PLUS2),
    ],
    "naive": [None, WALL, WALL + dt.timedelta(microseconds=1), WALL.replace(hour=10)],
    "day": [None, dt.date(2026, 1, 1), dt.date(2025, 12, 31), dt.date(2026, 2, 28)],
    "clock": [None, dt.time(9, 30), dt.time(9, 30, 0, 1), dt.time(23, 59, 59), dt.time(0, 0)],
    "color": [None, Color.RED, Color.GREEN, Color.BLUE],
    "key": [None, U1, U2, U3],
    "ratio": [None, 0.1, 1.5, -2.25, 0.0, 1e10],
}
LITERALS: dict[str, list[Any]] = {
    **POOLS,
    "n": [*POOLS["n"], 4, -6],
    "name": [*POOLS["name"], "zzz", "alicE", "b", "É"],
    "price": [*POOLS["price"], D("19.3"), D("19.305"), 5, 0, -2],
    "at": [*POOLS["at"], WALL, WALL.replace(hour=14), AT.astimezone(MINUS5).replace(tzinfo=None)],
    "naive": [*POOLS["naive"], WALL.replace(tzinfo=PLUS2), WALL.replace(tzinfo=UTC)],
    "day": [*POOLS["day"], dt.date(2026, 1, 2)],
    "clock": [*POOLS["clock"], dt.time(12, 0)],
    "color": [*POOLS["color"], "RED", "BLUE"],  # SQLAlchemy persists (and accepts) names
    "key": [*POOLS["key"], uuid.UUID(int=3)],
    "ratio": [*POOLS["ratio"], 1, 0.1 + 0.2, -3],
}


def make_rows() -> list[dict[str, Any]]:
    rng = random.Random(20260101)
    rows = []
    for i in range(1, 71):
        row = {name: rng.choice(pool) for name, pool in POOLS.items()}
        row["name"] = NAMES[i % len(NAMES)] if i <= 2 * len(NAMES) else row["name"]
        rows.append({"id": i, **row, "data": {"i": i}, "secret": "s"})
    return rows


@dataclasses.dataclass
class Db:
    dialect: str
    conn: Connection
    docs: list[dict[str, Any]]
    ordering_safe: bool


@pytest.fixture
def db(database_url: str) -> Iterator[Db]:
    pg = database_url.startswith("postgresql")
    engine: Engine = create_engine(
        database_url, connect_args={"options": "-c timezone=UTC"} if pg else {}
    )
    with engine.begin() as conn:
        MBase.metadata.drop_all(conn)
        MBase.metadata.create_all(conn)
        conn.execute(insert(Row), make_rows())
    with engine.connect() as conn:
        safe = True
        if pg:  # only a code-point collation orders text as Python does
            collate = conn.execute(text("SHOW lc_collate")).scalar_one()
            safe = collate.lower() in ("c", "posix", "c.utf-8", "c.utf8")
        docs = [ROWS.document_from_row(row) for row in conn.execute(select(*ROWS.columns))]
        yield Db(engine.dialect.name, conn, docs, safe)
    with engine.begin() as conn:
        MBase.metadata.drop_all(conn)
    engine.dispose()


def differs(db: Db, clause: Any) -> str | None:
    """None if predicate and database agree on ``clause`` (or a whole ``Select``), else why."""
    if isinstance(clause, Select):
        query, params = clause.with_only_columns(Row.id), clause.compile().params
        clause = clause.whereclause
    else:
        query, params = select(Row.id).where(clause), None
    try:
        compiled = compile_predicate(
            clause, ROWS, db.dialect, params=params, text_ordering_safe=db.ordering_safe
        )
    except NotCompilable as exc:
        if "ends with its escape character" in str(exc):
            return None  # an error in PostgreSQL; nothing to compare
        if "is bound as" in str(exc):
            return None  # e.g. price IN (5, 19.30): PostgreSQL casts 19.30 to INTEGER
        if "ordering on" in str(exc) and not db.ordering_safe:
            return None  # a linguistic collation: text ordering is refused on purpose
        return f"{clause}: not compilable: {exc}"
    expected = set(db.conn.scalars(query))
    got = {doc["id"] for doc in db.docs if compiled(doc)}
    if got == expected:
        return None
    params = clause.compile().params if hasattr(clause, "compile") else {}
    return f"{clause} {params}: only python {got - expected}, only db {expected - got}"


# --------------------------------------------------------------------------- differential

HAND_PICKED: list[Callable[[], Any]] = [
    lambda: Row.n == 3,
    lambda: Row.n != 3,
    lambda: ~(Row.n == 3),
    lambda: not_(Row.n > 2),
    lambda: 3 < Row.n,  # noqa: SIM300
    lambda: literal(3) >= Row.n,
    lambda: Row.n.between(0, 3),
    lambda: ~Row.n.between(0, 3),
    lambda: Row.n.in_([1, 2, None]),
    lambda: Row.n.not_in([1, 2, None]),
    lambda: Row.n.not_in([1, 2]),
    lambda: Row.n.in_([]),
    lambda: Row.n.not_in([]),
    lambda: ~Row.n.in_([]),
    lambda: ~or_(Row.n.in_([]), Row.n == 1),
    lambda: Row.n == None,  # noqa: E711
    lambda: Row.n != None,  # noqa: E711
    lambda: Row.n.is_distinct_from(3),
    lambda: Row.n.is_not_distinct_from(None),
    lambda: Row.n > bindparam("x", 2),
    lambda: Row.n.in_(bindparam("xs", [0, 7], expanding=True)),
    lambda: Row.n == bindparam("v", None),
    lambda: select(Row).where(Row.n > bindparam("x")).params(x=1),
    lambda: Row.flag,
    lambda: ~Row.flag,
    lambda: not_(~Row.flag),
    lambda: Row.flag == True,  # noqa: E712
    lambda: Row.flag != False,  # noqa: E712
    lambda: Row.flag.is_(True),
    lambda: Row.flag.is_not(False),
    lambda: Row.flag.is_(False),
    lambda: and_(Row.flag, Row.n > 0),
    lambda: or_(~Row.flag, Row.n == None),  # noqa: E711
    lambda: ~and_(Row.n == 1, Row.name == "bob"),
    lambda: ~or_(Row.n == 1, Row.name == "bob"),
    lambda: true(),
    lambda: false(),
    lambda: and_(true(), Row.n > 1),
    lambda: or_(false(), null(), Row.n > 1),
    lambda: not_(or_(null(), Row.n > 1)),
    lambda: Row.price == D("19.3"),
    lambda: Row.price > 19,
    lambda: Row.price <= D("19.305"),
    lambda: Row.price.in_([D("19.30"), D("-1.5")]),
    lambda: Row.at == AT,
    lambda: Row.at == AT.astimezone(PLUS2),
    lambda: Row.at < dt.datetime(2026, 1, 1, 13, 0, tzinfo=PLUS2),
    lambda: Row.at >= WALL,
    lambda: Row.naive == WALL.replace(tzinfo=PLUS2),
    lambda: Row.naive > WALL,
    lambda: Row.day > dt.date(2025, 12, 31),
    lambda: Row.color == Color.RED,
    lambda: Row.color == "RED",
    lambda: Row.color != Color.BLUE,
    lambda: Row.color.in_([Color.GREEN, "BLUE"]),
    lambda: Row.key == U2,
    lambda: Row.key > U1,
    lambda: Row.ratio > 0.1,
    lambda: Row.ratio == 1.5,
    lambda: Row.name == "alice",
    lambda: Row.name < "b",
    lambda: Row.name >= "É",
    lambda: Row.name.like("a%"),
    lambda: Row.name.like("A%"),
    lambda: Row.name.ilike("a%"),
    lambda: Row.name.not_like("a%"),
    lambda: Row.name.like("a\\%"),
    lambda: Row.name.like("a!%", escape="!"),
    lambda: Row.name.like("a/_b", escape="/"),
    lambda: Row.name.like("_"),
    lambda: Row.name.like("%"),
    lambda: Row.name.like(""),
    lambda: Row.name.like("x_y"),
    lambda: Row.name.ilike("émile"),
    lambda: Row.name.ilike("%ΣΤ%") | Row.name.ilike("οδοσ"),
    lambda: Row.name.ilike("i%"),
    lambda: Row.name.startswith("a%", autoescape=True),
    lambda: Row.name.startswith("a%"),
    lambda: Row.name.startswith("a", escape="!"),
    lambda: Row.name.endswith("b"),
    lambda: Row.name.contains("%"),
    lambda: Row.name.contains("%", autoescape=True),
    lambda: Row.name.contains("/", autoescape=True),
    lambda: Row.name.icontains("LI"),
    lambda: Row.name.istartswith("É"),
    lambda: Row.name.iendswith("E"),
    lambda: ~Row.name.startswith("a"),
    lambda: Row.name.not_ilike("%e"),
]


def test_hand_picked_clauses_match_the_database(db: Db) -> None:
    failures = [d for make in HAND_PICKED if (d := differs(db, make())) is not None]
    assert failures == []


COMPARE = [operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge]
SCALARS = [k for k in LITERALS if k != "owner_id"]
LIKE_CHARS = ["a", "A", "b", "e", "é", "É", "i", "İ", "\u03c3", "Σ", "ς", "%", "_", "\\", "/", "!"]


@st.composite
def comparisons(draw: st.DrawFn) -> Any:
    key = draw(st.sampled_from(SCALARS))
    column = getattr(Row, key)
    value = draw(st.sampled_from(LITERALS[key]))
    op = draw(st.sampled_from(COMPARE[:2] if key == "color" else COMPARE))
    if (value is None or isinstance(value, bool)) and op not in (operator.eq, operator.ne):
        return op(column, bindparam(None, value, type_=column.type))  # e.g. SQL "x < NULL"
    if draw(st.booleans()):
        return op(column, value)
    return op(literal(value, column.type), column)


@st.composite
def memberships(draw: st.DrawFn) -> Any:
    key = draw(st.sampled_from(SCALARS))
    column = getattr(Row, key)
    values = draw(st.lists(st.sampled_from(LITERALS[key]), max_size=3))
    return column.in_(values) if draw(st.booleans()) else column.not_in(values)


@st.composite
def null_tests(draw: st.DrawFn) -> Any:
    column = getattr(Row, draw(st.sampled_from(SCALARS)))
    kind = draw(st.sampled_from([column.is_, column.is_not]))
    return kind(None)


@st.composite
def booleans(draw: st.DrawFn) -> Any:
    forms = [Row.flag, ~Row.flag, Row.flag.is_(True), Row.flag.is_(False)]
    forms += [Row.flag.is_not(True), Row.flag.is_not(False), Row.flag == True]  # noqa: E712
    return draw(st.sampled_from(forms))


@st.composite
def likes(draw: st.DrawFn) -> Any:
    value = "".join(draw(st.lists(st.sampled_from(LIKE_CHARS), max_size=4)))
    method = draw(
        st.sampled_from(
            [
                *("like", "not_like", "ilike", "not_ilike", "startswith", "endswith"),
                *("contains", "istartswith", "iendswith", "icontains"),
            ]
        )
    )
    escape = draw(st.sampled_from([None, "!", "/", "\\"]))
    if method.endswith(("like", "ilike")):
        return getattr(Row.name, method)(value, escape=escape)
    autoescape = draw(st.booleans())
    return getattr(Row.name, method)(value, escape=escape, autoescape=autoescape)


@st.composite
def betweens(draw: st.DrawFn) -> Any:
    key = draw(st.sampled_from([k for k in SCALARS if k != "color"]))
    low, high = draw(st.lists(st.sampled_from(LITERALS[key]), min_size=2, max_size=2))
    clause = getattr(Row, key).between(low, high)
    return ~clause if draw(st.booleans()) else clause


ATOMS = st.one_of(comparisons(), memberships(), null_tests(), booleans(), likes(), betweens())
CLAUSES = st.recursive(
    ATOMS,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda cs: and_(*cs)),
        st.lists(children, min_size=1, max_size=3).map(lambda cs: or_(*cs)),
        children.map(not_),
    ),
    max_leaves=5,
)
FAST = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FAST
@given(clause=ATOMS)
def test_generated_atoms_match_the_database(db: Db, clause: Any) -> None:
    assert differs(db, clause) is None


@FAST
@given(clause=CLAUSES)
def test_generated_clauses_match_the_database(db: Db, clause: Any) -> None:
    assert differs(db, clause) is None


# --------------------------------------------------------------------------- unit tests


def doc(**values: Any) -> dict[str, Any]:
    """A document as capture builds it from these column values (others NULL)."""
    return {f.key: f.convert(values.get(f.key)) for f in ROWS.fields}


def matches(where: Any, dialect: str = "postgresql", **values: Any) -> bool:
    return compile_predicate(where, ROWS, dialect)(doc(**values))


OTHER = aliased(Row)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Other.n == 1,  # another table
        lambda: and_(Row.n == 1, Other.row_id == Row.id),  # a join condition
        lambda: OTHER.n == 1,  # an aliased entity is another FROM
        lambda: func.lower(Row.name) == "x",
        lambda: func.coalesce(Row.n, 0) > 1,
        lambda: Row.n == func.abs(-1),
        lambda: Row.n == Row.owner_id,
        lambda: Row.n + 1 > 3,
        lambda: Row.n.in_(select(Other.n)),
        lambda: Row.n == select(Other.n).scalar_subquery(),
        lambda: Row.secret == "s",  # excluded from documents
        lambda: Row.version > 1,  # not a document field
        lambda: Row.data.is_(None),  # JSON null vs SQL NULL
        lambda: text("n > 1"),
        lambda: literal_column("n") > 1,
        lambda: cast(Row.n, String) == "1",
        lambda: Row.n.op("%")(2) == 0,
        lambda: Row.name.regexp_match("a"),
        lambda: tuple_(Row.n, Row.owner_id).in_([(1, 1)]),
        lambda: Row.n > bindparam("x"),  # no value yet
        lambda: Row.n == "5",
        lambda: Row.n == True,  # noqa: E712
        lambda: Row.flag == 1,
        lambda: Row.day == dt.datetime(2026, 1, 1),
        lambda: Row.price == 1.5,
        lambda: Row.price == D("NaN"),
        lambda: Row.ratio == 10**400,  # no float is that large
        lambda: Row.ratio == float("nan"),
        lambda: Row.ratio > float("inf"),
        lambda: Row.clock == dt.time(9, 30, tzinfo=UTC),
        lambda: Row.price.in_([5, D("19.30")]),  # bound as INTEGER, like its first value
        lambda: Row.key == str(U1),
        lambda: Row.color == "red",  # a value, but SQLAlchemy persists names
        lambda: Row.color < Color.RED,
        lambda: Row.color.like("R%"),
        lambda: Row.n.is_(True),
        lambda: Row.n,  # not boolean
        lambda: literal(5),
        lambda: Row.name.like("a!", escape="!"),
        lambda: Row.name.like("a\\"),  # PostgreSQL's default escape at the end
        lambda: Row.name.like("ax", escape="x"),
        lambda: Row.name.like(Row.name),
        lambda: Row.name < "b",  # linguistic collations order differently
    ],
)
def test_not_compilable(make: Callable[[], Any]) -> None:
    with pytest.raises(NotCompilable):
        compile_predicate(make(), ROWS, "postgresql")


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: Odd.nocase == "x",  # a collation Python does not reproduce
        lambda: Odd.fixed == "ab",  # CHAR pads with blanks
        lambda: Odd.blob == b"x",
        lambda: Odd.named < "y",  # enum order is declaration order on PostgreSQL
    ],
)
def test_not_compilable_column_types(make: Callable[[], Any], dialect: str) -> None:
    with pytest.raises(NotCompilable):
        compile_predicate(make(), ODD, dialect)


def test_column_types_by_dialect() -> None:
    with pytest.raises(NotCompilable):
        compile_predicate(Odd.single == 1.5, ODD, "postgresql")  # float4 vs float8 literal
    assert compile_predicate(Odd.single == 1.5, ODD, "sqlite")({"single": 1.5})
    assert compile_predicate(Odd.c_text < "b", ODD, "postgresql")({"c_text": "B"})
    assert compile_predicate(Odd.named == "x", ODD, "postgresql")({"named": "x"})


def test_dialect_and_text_ordering_options() -> None:
    with pytest.raises(NotCompilable, match="mysql"):
        compile_predicate(Row.n == 1, ROWS, "mysql")
    assert compile_predicate(Row.name < "b", ROWS, "sqlite")(doc(name="a"))
    assert compile_predicate(Row.name < "b", ROWS, "postgresql", text_ordering_safe=True)(
        doc(name="a")
    )
    with pytest.raises(NotCompilable):
        compile_predicate(Row.name < "b", ROWS, "sqlite", text_ordering_safe=False)
    assert compile_predicate(None, ROWS, create_engine("sqlite://").dialect) is MATCH_ALL
    assert MATCH_ALL(doc())


def test_three_valued_logic() -> None:
    assert not matches(Row.n == 5)
    assert not matches(~(Row.n == 5))
    assert not matches(or_(Row.n == 5, Row.n != 5))
    assert not matches(~or_(Row.n == 5, Row.name == "x"), name="y")
    assert matches(~and_(Row.n == 5, Row.name == "x"), name="y")  # NOT(unknown AND false)
    assert not matches(~and_(Row.n == 5, Row.name == "x"), name="x")
    assert matches(or_(Row.n == 5, Row.name == "x"), name="x")
    assert not matches(Row.n.in_([1, None]), n=2)
    assert matches(Row.n.in_([1, None]), n=1)
    assert not matches(Row.n.not_in([1, None]), n=2)
    assert not matches(Row.n.not_in([1, None]), n=1)
    assert not matches(Row.n.in_([]))
    assert matches(Row.n.not_in([]))
    assert matches(Row.n == None)  # noqa: E711
    assert not matches(Row.n == bindparam("v", None), n=None)
    assert matches(Row.n.is_not_distinct_from(None))
    assert matches(Row.n.is_distinct_from(3))
    assert not matches(Row.flag) and not matches(~Row.flag)
    assert matches(Row.flag.is_not(False)) and not matches(Row.flag.is_(False))
    assert matches(~Row.flag, flag=False) and not matches(Row.flag, flag=False)
    assert not matches(null()) and not matches(not_(null()))
    assert not matches(Row.n.between(1, None), n=5)
    assert matches(~Row.n.between(1, None), n=0)  # NOT(false AND unknown)


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_like_escapes_and_case_per_dialect(dialect: str) -> None:
    pg = dialect == "postgresql"

    def like(where: Any, name: str) -> bool:
        return matches(where, dialect, name=name)

    assert like(Row.name.like("a!%", escape="!"), "a%")
    assert not like(Row.name.like("a!%", escape="!"), "ab")
    assert like(Row.name.like("a\\%"), "a\\bc") is not pg  # PostgreSQL escapes with \ by default
    assert like(Row.name.like("a\\%"), "a%") is pg
    assert like(Row.name.like("a_c"), "a\nc")
    assert like(Row.name.like("A%"), "alice") is not pg  # SQLite LIKE ignores ASCII case
    assert like(Row.name.ilike("A%"), "alice")
    assert like(Row.name.like("É%"), "émile") is False  # ...but only ASCII case
    assert like(Row.name.ilike("É%"), "émile") is pg
    assert like(Row.name.ilike("οδοσ"), "ΟΔΟΣ") is pg  # per-character, no final sigma
    assert like(Row.name.ilike("i%"), "İstanbul") is pg
    assert like(Row.name.startswith("a%", autoescape=True), "a%b")
    assert not like(Row.name.startswith("a%", autoescape=True), "ab")
    assert like(Row.name.startswith("a%"), "ab")
    assert like(Row.name.contains("a/", autoescape=True), "xa/y")
    assert not like(Row.name.contains("_", autoescape=True), "abc")
    assert like(Row.name.startswith("!", escape="!"), "!x") is False  # '!' escapes the '%'
    assert like(Row.name.startswith("!", escape="!"), "%")
    assert like(Row.name.not_like("a%"), "b")
    assert not matches(Row.name.not_like("a%"), dialect)  # NULL NOT LIKE -> unknown


def test_bound_parameters() -> None:
    assert matches(Row.n > bindparam("x", 3), n=4)
    assert matches(literal(3) < Row.n, n=4) and not matches(literal(3) < Row.n, n=3)
    stmt = select(Row).where(Row.n > bindparam("x"), Row.n < 10).params(x=3)
    compiled = compile_predicate(stmt.whereclause, ROWS, "sqlite", params=stmt.compile().params)
    assert compiled(doc(n=4)) and not compiled(doc(n=3))
    assert matches(Row.n.in_(bindparam("xs", [1, 2], expanding=True)), n=2)
    assert matches(Row.n == bindparam("c", callable_=lambda: 9), n=9)


def test_domains() -> None:
    assert matches(Row.price == D("19.3"), price=D("19.30"))
    assert not matches(Row.price == D("19.301"), price=D("19.30"))
    assert matches(Row.price > 19, "sqlite", price=D("19.30"))
    instant = dt.datetime(2026, 1, 1, 14, 0, tzinfo=PLUS2)
    assert matches(Row.at == instant, "postgresql", at=AT)  # the same instant
    # SQLite drops zones: it stored 12:00 (from AT) and binds the literal's wall time 14:00
    assert not matches(Row.at == instant, "sqlite", at=AT)
    assert matches(Row.at == WALL.replace(hour=14), "sqlite", at=WALL.replace(hour=14))
    assert matches(Row.naive == instant, "postgresql", naive=WALL)
    assert matches(Row.naive == instant, "sqlite", naive=WALL.replace(hour=14))
    assert matches(Row.color == Color.RED, color=Color.RED)
    assert matches(Row.color == "RED", color=Color.RED)
    assert doc(color=Color.RED)["color"] == "red"
    assert matches(Row.key == U3, key=U3) and matches(Row.key > U1, key=U2)
    assert matches(Row.day >= dt.date(2026, 1, 1), day=dt.date(2026, 1, 1))
    assert matches(Row.ratio == 1, ratio=1.0)


def test_equality_hints() -> None:
    def hints(where: Any) -> dict[str, frozenset[Any]]:
        return dict(compile_predicate(where, ROWS, "postgresql").equalities)

    assert hints(Row.owner_id == 5) == {"owner_id": {5}}
    assert hints(and_(Row.owner_id == 5, Row.n > 1)) == {"owner_id": {5}}
    assert hints(Row.color.in_([Color.RED, "GREEN"])) == {"color": {"red", "green"}}
    assert hints(and_(Row.n.in_([1, 2, None]), Row.n == 2)) == {"n": {2}}
    assert hints(Row.price == D("19.3")) == {"price": {D("19.30")}}
    assert hints(or_(Row.owner_id == 5, Row.owner_id == 6)) == {}
    assert hints(~(Row.owner_id == 5)) == {}
    assert hints(Row.n.not_in([1])) == {}
    assert hints(Row.n.in_([])) == {"n": frozenset()}
    assert hints(Row.n == None) == {}  # noqa: E711


# --------------------------------------------------------------------------- index


def counting(compiled: CompiledFilter, counter: list[int]) -> CompiledFilter:
    inner = compiled.predicate

    def predicate(document: Any) -> bool:
        counter[0] += 1
        return inner(document)

    return dataclasses.replace(compiled, predicate=predicate)


def test_index_routes_ten_thousand_subscriptions_in_constant_work() -> None:
    calls = [0]
    index: SubscriptionIndex[str] = SubscriptionIndex()
    for owner in range(10_000):
        compiled = compile_predicate(Row.owner_id == owner, ROWS, "postgresql")
        index.add(f"sub{owner}", "m_rows", counting(compiled, calls))
    assert len(index) == 10_000
    assert index.candidates("m_rows", doc(owner_id=1234)) == ["sub1234"]
    assert index.matching("m_rows", doc(owner_id=1234)) == ["sub1234"]
    assert calls[0] == 1
    assert index.matching("m_rows", doc(owner_id=99_999)) == []
    assert index.matching("other", doc(owner_id=1234)) == []
    assert index.matching("m_rows", None) == []
    assert calls[0] == 1


def test_index_mixes_indexed_and_scanned_subscriptions() -> None:
    calls = [0]
    index: SubscriptionIndex[str] = SubscriptionIndex()
    wheres: dict[str, Any] = {f"own{i}": Row.owner_id == i for i in range(1000)}
    wheres |= {
        "own7-big": and_(Row.owner_id == 7, Row.n > 10),
        "colors": and_(Row.color.in_([Color.RED, Color.GREEN]), Row.owner_id.in_([7, 8, 9])),
        "empty": Row.owner_id.in_([]),
        "scan-n": Row.n > 10,
        "scan-or": or_(Row.owner_id == 7, Row.flag),
        "all": None,
        "price": Row.price == D("19.3"),
    }
    for key, where in wheres.items():
        index.add(key, "m_rows", counting(compile_predicate(where, ROWS, "postgresql"), calls))
    scans = 3
    document = doc(owner_id=7, n=11, color=Color.RED, price=D("19.30"))
    found = index.matching("m_rows", document)
    assert sorted(found) == sorted(
        ["own7", "own7-big", "colors", "scan-n", "scan-or", "all", "price"]
    )
    assert calls[0] <= 4 + scans
    brute = {k for k, w in wheres.items() if compile_predicate(w, ROWS, "postgresql")(document)}
    assert set(found) == brute

    index.remove("own7")
    index.remove("scan-n")
    index.remove("never-added")
    assert "own7" not in index and "scan-n" not in index
    assert set(index.matching("m_rows", document)) == brute - {"own7", "scan-n"}
    index.add("colors", "m_rows", compile_predicate(Row.owner_id == 8, ROWS, "postgresql"))
    assert "colors" not in index.matching("m_rows", document)
    assert index.matching("m_rows", doc(owner_id=8)) == ["own8", "colors", "all"]
    for key in list(index.keys()):
        index.remove(key)
    assert len(index) == 0 and index.candidates("m_rows", document) == []

"""Documents: JSON representations, ids, and registration-time errors."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    Interval,
    MetaData,
    Numeric,
    PickleType,
    String,
    Table,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from livesync import (
    Collection,
    CollectionError,
    LiveSync,
    UnsupportedColumnType,
    Versioned,
    decode_id,
    encode_id,
)
from livesync.documents import converter_for
from tests.conftest import published
from tests.models import Status, Typed


def test_every_supported_type_round_trips_through_the_database(live: LiveSync) -> None:
    key = uuid.UUID("12345678-1234-5678-1234-567812345678")
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 678)
    with live.sessionmaker() as s:
        s.add(
            Typed(
                id=key,
                when=when,
                day=dt.date(2026, 1, 2),
                price=decimal.Decimal("19.3"),
                status=Status.DONE,
                blob=b"\x00\xff",
            )
        )
        s.commit()
    (changeset,) = published(live)
    doc = changeset.changes[0].doc
    assert doc is not None
    assert changeset.changes[0].id == str(key)
    assert doc["id"] == str(key)
    assert doc["when"] == "2026-01-02T03:04:05.000678"
    assert doc["day"] == "2026-01-02"
    assert doc["price"] == "19.30"  # the column's scale, as the database returns it
    assert doc["status"] == "done"
    assert doc["blob"] == "AP8="
    assert isinstance(doc["stamp"], str)  # server default, fetched by eager_defaults
    collection = live.collections["t_typed"]
    with live.engine.connect() as conn:
        row = conn.execute(select(*collection.columns)).one()
    assert collection.document_from_row(row) == doc  # same text before and after storage


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        (Column("d", Integer), 5, 5),
        (Column("t", String), "x", "x"),
        (Column("n", Numeric(8, 3)), decimal.Decimal("1.5"), "1.500"),
        (Column("n", Numeric()), decimal.Decimal("1.500"), "1.5"),
        (Column("n", Numeric()), decimal.Decimal("100"), "100"),
        (
            Column("w", DateTime(timezone=True)),
            dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2026-01-01T10:00:00+00:00",
        ),
        (
            Column("w", DateTime(timezone=True)),
            dt.datetime(2026, 1, 1, 12),
            "2026-01-01T12:00:00+00:00",
        ),
        (
            Column("w", DateTime()),
            dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-1))),
            "2026-01-01T13:00:00",
        ),
        (Column("i", Interval()), dt.timedelta(minutes=1), 60.0),
        (Column("j", JSON()), {"a": [1]}, {"a": [1]}),
        (Column("n", Integer), None, None),
    ],
)
def test_converters(column: Column[Any], value: Any, expected: Any) -> None:
    Table("conv", MetaData(), column)
    assert converter_for(column)(value) == expected


def test_json_values_are_copied_so_later_mutation_cannot_leak() -> None:
    column = Column("j", JSON())
    Table("copy", MetaData(), column)
    original = {"a": [1]}
    converted = converter_for(column)(original)
    original["a"].append(2)
    assert converted == {"a": [1]}


def test_ids() -> None:
    assert encode_id([7]) == "7"
    assert encode_id(["a/b"]) == "a/b"  # single keys are not escaped
    assert encode_id(["acme/eu", 7]) == "acme%2Feu/7"
    assert encode_id(["100%", "x"]) == "100%25/x"
    assert decode_id("acme%2Feu/7", 2) == ["acme/eu", "7"]
    assert decode_id("a/b", 1) == ["a/b"]
    with pytest.raises(ValueError, match="2 parts"):
        decode_id("a/b/c", 2)


class OtherBase(DeclarativeBase):
    pass


class Unversioned(OtherBase):
    __tablename__ = "u_unversioned"
    id: Mapped[int] = mapped_column(primary_key=True)


class Pickled(Versioned, OtherBase):
    __tablename__ = "u_pickled"
    id: Mapped[int] = mapped_column(primary_key=True)
    blob: Mapped[Any] = mapped_column(PickleType)


class Named(Versioned, OtherBase):
    __tablename__ = "u_named"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(10))


def test_unversioned_models_are_refused_with_the_fix() -> None:
    with pytest.raises(CollectionError, match=r"livesync\.Versioned"):
        Collection(Unversioned)


def test_unserializable_columns_fail_at_registration_not_at_write_time() -> None:
    with pytest.raises(UnsupportedColumnType, match=r"u_pickled\.blob.*exclude"):
        Collection(Pickled)
    assert "blob" not in {f.key for f in Collection(Pickled, exclude=["blob"]).fields}


def test_exclude_checks_names_and_keeps_the_primary_key() -> None:
    with pytest.raises(CollectionError, match="no columns named"):
        Collection(Named, exclude=["nope"])
    with pytest.raises(CollectionError, match="cannot be excluded"):
        Collection(Named, exclude=["id"])


def test_duplicate_registration_is_refused(tmp_path: Any) -> None:
    live = LiveSync(f"sqlite:///{tmp_path / 'x.db'}", f"memory://{uuid.uuid4().hex}")
    try:
        live.collection(Named)
        with pytest.raises(CollectionError, match="already registered"):
            live.collection(Named, name="other")
        with pytest.raises(CollectionError, match="already registered"):
            live.collection(Pickled, name="u_named", exclude=["blob"])
    finally:
        live.close()


def test_excluded_fields_are_not_published_but_versions_stay_contiguous(
    database_url: str,
) -> None:
    from tests.conftest import make_live
    from tests.models import Item

    live = make_live(database_url)
    try:
        live.collection(Item, exclude=["secret"])
        with live.sessionmaker() as s:
            s.add(Item(id=1, title="a", secret="s1"))
            s.commit()
            item = s.get(Item, 1)
            assert item is not None
            item.secret = "s2"
            s.commit()
        insert, update = (cs.changes[0] for cs in published(live))
        assert insert.doc is not None and "secret" not in insert.doc
        assert (update.prev_version, update.version) == (1, 2)
        assert update.patch == [{"op": "replace", "path": "/touched", "value": 7}]
    finally:
        live.close()

"""Property: replaying every published change set onto an empty cache reproduces the table.

Hypothesis generates random transactions mixing unit-of-work writes, in-place JSON
mutation, ORM bulk statements, flushes, savepoints (released or rolled back) and
rollbacks. Whatever it generates, the cache built from the change sets alone must equal
the table: the same documents at the same versions, with every patch checked against the
document it claims to produce.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, text, update
from sqlalchemy.orm import Session

from livesync import LiveSync
from livesync.replica import Replica
from tests.conftest import database_docs, make_live, published, replica_docs
from tests.models import Item, Member

IDS = st.integers(min_value=1, max_value=6)
TITLES = st.sampled_from(["a", "b", "c", "d/e", "~x"])
JSON_VALUES = st.one_of(st.integers(-3, 3), st.text(max_size=3), st.lists(st.integers(0, 3)))

Op = tuple[Any, ...]

ops: st.SearchStrategy[Op] = st.one_of(
    st.tuples(st.just("insert"), IDS, TITLES, st.integers(0, 5)),
    st.tuples(st.just("set_title"), IDS, TITLES),
    st.tuples(st.just("json_in_place"), IDS, st.sampled_from(["k", "a/b", "n"]), JSON_VALUES),
    st.tuples(st.just("json_replace"), IDS, st.dictionaries(st.sampled_from("xyz"), JSON_VALUES)),
    st.tuples(st.just("delete"), IDS),
    st.tuples(st.just("bulk_update"), st.integers(0, 6), st.integers(1, 3)),
    st.tuples(st.just("bulk_update_by_key"), st.lists(IDS, max_size=3, unique=True), TITLES),
    st.tuples(st.just("bulk_delete"), IDS),
    st.tuples(st.just("bulk_insert"), st.lists(IDS, min_size=1, max_size=3, unique=True)),
    st.tuples(st.just("member"), st.sampled_from(["acme/eu", "b%2F", "c"]), IDS),
    st.tuples(st.just("flush")),
)

step = st.one_of(
    ops,
    st.tuples(st.just("savepoint"), st.lists(ops, max_size=4), st.booleans()),
)

transactions = st.lists(
    st.tuples(st.lists(step, min_size=1, max_size=6), st.sampled_from(["commit", "rollback"])),
    min_size=1,
    max_size=5,
)


@pytest.fixture
def property_live(database_url: str) -> Iterator[LiveSync]:
    live = make_live(database_url)
    live.collection(Item)
    live.collection(Member)
    yield live
    live.close()


def existing(session: Session, key: int) -> Item | None:
    item = session.get(Item, key)
    return None if item is None or item in session.deleted else item


def run_op(session: Session, op: Op) -> None:
    kind = op[0]
    if kind == "insert":
        if session.get(Item, op[1]) is None:
            session.add(Item(id=op[1], title=op[2], qty=op[3], data={}))
            session.flush()
    elif kind == "set_title":
        if (item := existing(session, op[1])) is not None:
            item.title = op[2]
    elif kind == "json_in_place":
        if (item := existing(session, op[1])) is not None:
            item.data.setdefault("nested", {})[op[2]] = op[3]
    elif kind == "json_replace":
        if (item := existing(session, op[1])) is not None:
            item.data = {"nested": op[2]}
    elif kind == "delete":
        if (item := existing(session, op[1])) is not None:
            session.delete(item)
            session.flush()
    elif kind == "bulk_update":
        session.execute(update(Item).where(Item.qty < op[1]).values(qty=Item.qty + op[2]))
    elif kind == "bulk_update_by_key":
        present = [k for k in op[1] if existing(session, k) is not None]
        if present:
            session.execute(update(Item), [{"id": k, "title": op[2]} for k in present])
    elif kind == "bulk_delete":
        session.execute(delete(Item).where(Item.id >= op[1]))
    elif kind == "bulk_insert":
        fresh = [k for k in op[1] if session.get(Item, k) is None]
        if fresh:
            session.execute(insert(Item), [{"id": k, "title": "bulk", "data": {}} for k in fresh])
    elif kind == "member":
        member = session.get(Member, (op[1], op[2]))
        if member is None:
            session.add(Member(org=op[1], user_id=op[2], role="new"))
        else:
            member.role = member.role + "+"
        session.flush()
    elif kind == "flush":
        session.flush()
    else:  # pragma: no cover - the strategy only produces the kinds above
        raise AssertionError(kind)


def run_step(session: Session, item: Op) -> None:
    if item[0] != "savepoint":
        run_op(session, item)
        return
    nested = session.begin_nested()
    for op in item[1]:
        run_op(session, op)
    if item[2]:
        nested.commit()
    else:
        nested.rollback()


@settings(
    max_examples=int(os.environ.get("LIVESYNC_PROPERTY_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=transactions)
def test_replaying_change_sets_reproduces_the_table(
    property_live: LiveSync, plan: list[tuple[list[Op], str]]
) -> None:
    live = property_live
    live.settings.topic = f"prop-{uuid.uuid4().hex}"
    with live.engine.begin() as conn:  # raw SQL: invisible to capture, which is the point
        conn.execute(text("DELETE FROM t_items"))
        conn.execute(text("DELETE FROM t_members"))

    for steps, ending in plan:
        with live.sessionmaker() as session:
            for item in steps:
                run_step(session, item)
            if ending == "commit":
                session.commit()
            else:
                session.rollback()

    replica = Replica()
    for changeset in published(live):
        replica.apply(changeset)
    assert not replica.stale
    assert replica_docs(replica) == database_docs(live)

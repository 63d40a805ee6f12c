"""Capture: every ORM write path, on SQLite and on PostgreSQL, becomes exactly one change set."""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from livesync import Change, ChangeSet, LiveSync
from tests.conftest import published
from tests.models import File, Folder, Item, Member, Plain, Tracked


def only_change(live: LiveSync) -> Change:
    sets = published(live)
    assert len(sets) == 1, sets
    assert len(sets[0].changes) == 1, sets[0]
    return sets[0].changes[0]


def ops(live: LiveSync) -> list[list[tuple[str, str, str]]]:
    return [[(c.collection, c.id, c.op) for c in s.changes] for s in published(live)]


def data_ops(change: Change) -> list[dict[str, Any]]:
    return [op for op in change.patch or [] if op["path"].startswith("/data")]


def seed(live: LiveSync, *items: Item) -> None:
    with live.sessionmaker() as s:
        s.add_all(items)
        s.commit()
    drain(live)


def drain(live: LiveSync) -> None:
    """Forget what was published so far (tests look only at what follows)."""
    live.settings.topic = live.settings.topic + "+"


# --------------------------------------------------------------------------- unit of work
def test_insert_publishes_the_whole_document_with_server_defaults(live: LiveSync) -> None:
    with live.sessionmaker() as s:
        s.add(Item(id=1, title="a", data={"k": [1, 2]}))
        s.commit()
    change = only_change(live)
    assert change.op == "insert"
    assert (change.collection, change.id, change.version) == ("t_items", "1", 1)
    assert change.doc == {
        "id": 1,
        "title": "a",
        "qty": 0,
        "data": {"k": [1, 2]},
        "created": "born",
        "touched": 0,
        "secret": None,
    }


def test_update_publishes_patch_from_previous_version_and_onupdate_values(
    live: LiveSync,
) -> None:
    seed(live, Item(id=1, title="a"))
    with live.sessionmaker() as s:
        item = s.get(Item, 1)
        assert item is not None
        item.title = "b"
        s.commit()
    change = only_change(live)
    assert (change.op, change.prev_version, change.version) == ("update", 1, 2)
    assert change.doc is not None
    assert change.doc["title"] == "b"
    assert change.doc["touched"] == 7  # onupdate value, fetched by eager_defaults
    assert {"op": "replace", "path": "/title", "value": "b"} in (change.patch or [])
    assert {"op": "replace", "path": "/touched", "value": 7} in (change.patch or [])


def test_update_of_an_expired_object_still_publishes_the_new_value(live: LiveSync) -> None:
    seed(live, Item(id=1, title="a"))
    with live.sessionmaker() as s:
        item = s.get(Item, 1)
        assert item is not None
        s.commit()  # expires item: the old title is not known when it is set
        item.title = "z"
        s.commit()
    change = only_change(live)
    assert change.doc is not None and change.doc["title"] == "z"
    applied = jsonpatch.apply_patch({"title": "a", "touched": 0}, change.patch or [])
    assert applied["title"] == "z"


def test_delete_publishes_a_delete_one_version_past_the_last(live: LiveSync) -> None:
    seed(live, Item(id=1, title="a"))
    with live.sessionmaker() as s:
        item = s.get(Item, 1)
        s.delete(item)
        s.commit()
    change = only_change(live)
    assert (change.op, change.id, change.prev_version, change.version) == ("delete", "1", 1, 2)
    assert change.doc is None


def test_orm_cascades_are_captured(live: LiveSync) -> None:
    with live.sessionmaker() as s:
        s.add(Folder(id=1, name="f", files=[File(id=1, name="a"), File(id=2, name="b")]))
        s.commit()
    assert sorted(ops(live)[0]) == [
        ("t_files", "1", "insert"),
        ("t_files", "2", "insert"),
        ("t_folders", "1", "insert"),
    ]
    drain(live)
    with live.sessionmaker() as s:
        folder = s.get(Folder, 1)
        assert folder is not None
        folder.files.pop(0)  # delete-orphan
        s.commit()
        assert ops(live) == [[("t_files", "1", "delete")]]
        drain(live)
        s.delete(folder)
        s.commit()
    assert sorted(ops(live)[0]) == [("t_files", "2", "delete"), ("t_folders", "1", "delete")]


def test_moving_a_child_publishes_its_foreign_key_change(live: LiveSync) -> None:
    with live.sessionmaker() as s:
        s.add_all([Folder(id=1, name="a"), Folder(id=2, name="b"), File(id=1, name="x")])
        s.commit()
        drain(live)
        file = s.get(File, 1)
        folder = s.get(Folder, 2)
        assert file is not None and folder is not None
        folder.files.append(file)
        s.commit()
    change = only_change(live)
    assert change.patch == [{"op": "replace", "path": "/folder_id", "value": 2}]


def test_writes_to_unregistered_models_publish_nothing(live: LiveSync) -> None:
    with live.sessionmaker() as s:
        s.add(Plain(id=1, name="x"))
        s.commit()
        s.execute(update(Plain).values(name="y"))
        s.commit()
    assert published(live) == []


# --------------------------------------------------------------------------- bulk statements
def test_bulk_insert_with_keys_keeps_the_callers_result(live: LiveSync) -> None:
    with live.sessionmaker() as s:
        s.execute(insert(Item), [{"id": 1, "title": "a"}, {"id": 2, "title": "b"}])
        s.commit()
    (changes,) = published(live)
    docs = {c.id: c.doc for c in changes.changes}
    assert {c.op for c in changes.changes} == {"insert"}
    assert docs["2"] is not None and docs["2"]["created"] == "born"
    assert all(c.version == 1 for c in changes.changes)


def test_bulk_insert_with_database_keys_uses_returning(live: LiveSync) -> None:
    with live.sessionmaker() as s:
        s.execute(insert(Item).values([{"title": "a"}, {"title": "b"}]))
        s.commit()
        keys = sorted(str(k) for k in s.scalars(select(Item.id)))
    (changes,) = published(live)
    assert sorted(c.id for c in changes.changes) == keys


def test_bulk_update_bumps_versions_and_publishes_patches(live: LiveSync) -> None:
    seed(live, Item(id=1, title="a", qty=1), Item(id=2, title="b", qty=1), Item(id=3, title="c"))
    with live.sessionmaker() as s:
        result = s.execute(update(Item).where(Item.qty == 1).values(qty=Item.qty + 5))
        assert result.rowcount == 2  # type: ignore[attr-defined]
        s.commit()
        versions = {row.id: row.version for row in s.execute(select(Item.id, Item.version))}
    assert versions == {1: 2, 2: 2, 3: 1}
    (changes,) = published(live)
    assert sorted(c.id for c in changes.changes) == ["1", "2"]
    for change in changes.changes:
        assert (change.prev_version, change.version) == (1, 2)
        assert {"op": "replace", "path": "/qty", "value": 6} in (change.patch or [])


def test_bulk_update_by_primary_key(live: LiveSync) -> None:
    seed(live, Item(id=1, title="a"), Item(id=2, title="b"))
    with live.sessionmaker() as s:
        s.execute(update(Item), [{"id": 1, "title": "A"}, {"id": 2, "title": "B"}])
        s.commit()
    (changes,) = published(live)
    by_id = {c.id: c for c in changes.changes}
    assert by_id["1"].doc is not None and by_id["1"].doc["title"] == "A"
    assert (by_id["2"].prev_version, by_id["2"].version) == (1, 2)


def test_bulk_delete(live: LiveSync) -> None:
    seed(live, Item(id=1, title="a"), Item(id=2, title="b"))
    with live.sessionmaker() as s:
        s.execute(delete(Item).where(Item.id == 2))
        s.commit()
    change = only_change(live)
    assert (change.op, change.id, change.version) == ("delete", "2", 2)


def test_core_table_statement_through_a_session(live: LiveSync) -> None:
    seed(live, Item(id=1, title="a"))
    table = Item.__table__
    with live.sessionmaker() as s:
        s.execute(update(table).where(table.c.id == 1).values(title="t"))
        s.commit()
    change = only_change(live)
    assert change.patch == [
        {"op": "replace", "path": "/title", "value": "t"},
        {"op": "replace", "path": "/touched", "value": 7},  # onupdate runs for Core too
    ]
    assert change.version == 2


def test_bulk_then_unit_of_work_in_one_transaction_merge(live: LiveSync) -> None:
    seed(live, Item(id=1, title="a"))
    with live.sessionmaker() as s:
        s.execute(update(Item).where(Item.id == 1).values(title="b"))
        item = s.get(Item, 1)
        assert item is not None
        item.qty = 9
        s.commit()
    change = only_change(live)
    assert (change.prev_version, change.version) == (1, 3)
    result = jsonpatch.apply_patch(
        {
            "id": 1,
            "title": "a",
            "qty": 0,
            "data": {},
            "created": "born",
            "touched": 0,
            "secret": None,
        },
        change.patch or [],
    )
    assert result == change.doc


# --------------------------------------------------------------------------- JSON columns
def test_json_reassignment_gives_a_minimal_nested_patch(live: LiveSync) -> None:
    seed(live, Item(id=1, title="a", data={"a": {"b": 1, "c": 2}}))
    with live.sessionmaker() as s:
        item = s.get(Item, 1)
        assert item is not None
        item.data = {"a": {"b": 1, "c": 3}}
        s.commit()
    change = only_change(live)
    assert {"op": "replace", "path": "/data/a/c", "value": 3} in (change.patch or [])


def test_json_in_place_nested_mutation_is_captured(live: LiveSync) -> None:
    seed(live, Item(id=1, title="a", data={"a": {"list": [1]}}))
    with live.sessionmaker() as s:
        item = s.get(Item, 1)
        assert item is not None
        item.data["a"]["list"].append(2)
        s.commit()
        s.expire_all()
        reloaded = s.get(Item, 1)
        assert reloaded is not None and reloaded.data == {"a": {"list": [1, 2]}}
    change = only_change(live)
    assert data_ops(change) == [{"op": "add", "path": "/data/a/list/1", "value": 2}]
    assert change.version == 2


def test_in_place_mutation_of_an_unreferenced_object_is_not_lost(live: LiveSync) -> None:
    """The identity map holds clean objects weakly; livesync pins them until commit."""
    import gc

    seed(live, Item(id=1, title="a", data={}))

    def tag(session: Session) -> None:
        item = session.get(Item, 1)
        assert item is not None
        item.data["tag"] = "x"

    with live.sessionmaker() as s:
        tag(s)  # nothing refers to the Item once this returns
        gc.collect()
        s.commit()
        assert s.scalar(select(Item.data).where(Item.id == 1)) == {"tag": "x"}
    assert data_ops(only_change(live)) == [{"op": "add", "path": "/data/tag", "value": "x"}]


def test_mutable_dict_nested_mutation_is_captured(live: LiveSync) -> None:
    with live.sessionmaker() as s:
        s.add(Tracked(id=1, data={"x": {"y": 1}}))
        s.commit()
        drain(live)
        tracked = s.get(Tracked, 1)
        assert tracked is not None
        tracked.data["x"]["y"] = 5  # nested: MutableDict alone would miss this
        s.commit()
    change = only_change(live)
    assert change.patch == [{"op": "replace", "path": "/data/x/y", "value": 5}]


def test_json_mutation_after_an_earlier_flush_in_the_same_transaction(live: LiveSync) -> None:
    seed(live, Item(id=1, title="a", data={"n": 1}))
    with live.sessionmaker() as s:
        item = s.get(Item, 1)
        assert item is not None
        item.data["n"] = 2
        s.flush()
        item.data["n"] = 3
        s.commit()
    change = only_change(live)
    assert data_ops(change) == [{"op": "replace", "path": "/data/n", "value": 3}]
    # The session looked clean at the explicit flush (SQLAlchemy cannot see in-place
    # mutation); livesync found it at commit, so the database saw exactly one UPDATE.
    assert (change.prev_version, change.version) == (1, 2)


# --------------------------------------------------------------------------- transactions
def test_several_flushes_publish_one_change_per_document(live: LiveSync) -> None:
    with live.sessionmaker() as s:
        item = Item(id=1, title="a")
        s.add(item)
        s.flush()
        item.title = "b"
        s.flush()
        item.qty = 3
        s.commit()
    change = only_change(live)
    assert change.op == "insert"
    assert change.doc is not None and (change.doc["title"], change.doc["qty"]) == ("b", 3)
    assert change.version == 3


def test_insert_then_delete_publishes_nothing(live: LiveSync) -> None:
    with live.sessionmaker() as s:
        item = Item(id=1, title="a")
        s.add(item)
        s.flush()
        s.delete(item)
        s.commit()
    assert published(live) == []


def test_rollback_publishes_nothing_and_leaves_no_outbox_row(live: LiveSync) -> None:
    with live.sessionmaker() as s:
        s.add(Item(id=1, title="a"))
        s.flush()
        s.rollback()
    assert published(live) == []
    with live.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM livesync_outbox")).scalar() == 0


def test_savepoints_released_merge_and_rolled_back_drop_only_their_part(
    live: LiveSync,
) -> None:
    seed(live, Item(id=1, title="a"), Item(id=2, title="b"), Item(id=3, title="c"))
    with live.sessionmaker() as s:
        one = s.get(Item, 1)
        assert one is not None
        one.title = "outer"
        with s.begin_nested():
            two = s.get(Item, 2)
            assert two is not None
            two.title = "released"
        nested = s.begin_nested()
        three = s.get(Item, 3)
        assert three is not None
        three.title = "rolled back"
        s.add(Item(id=4, title="rolled back too"))
        s.flush()
        nested.rollback()
        s.commit()
    (changes,) = published(live)
    titles = {c.id: (c.doc or {}).get("title") for c in changes.changes}
    assert titles == {"1": "outer", "2": "released"}


def test_integrity_error_inside_a_savepoint_keeps_the_outer_change(live: LiveSync) -> None:
    seed(live, Item(id=1, title="a"))
    with live.sessionmaker() as s:
        s.add(Item(id=2, title="outer"))
        try:
            with s.begin_nested():
                s.add(Item(id=1, title="duplicate"))
        except IntegrityError:
            pass
        s.commit()
    assert ops(live) == [[("t_items", "2", "insert")]]


def test_one_transaction_over_several_collections_is_one_change_set(live: LiveSync) -> None:
    with live.sessionmaker() as s:
        s.add_all([Item(id=1, title="a"), Member(org="o", user_id=1, role="r")])
        s.commit()
    assert sorted(ops(live)[0]) == [("t_items", "1", "insert"), ("t_members", "o/1", "insert")]


def test_write_after_the_change_set_is_sealed_is_refused(live: LiveSync) -> None:
    from sqlalchemy import event

    def late_write(session: Session) -> None:
        if session.get_nested_transaction() is None:
            session.add(Item(id=99, title="late"))
            session.flush()

    with live.sessionmaker() as s:
        event.listen(s, "before_commit", late_write)
        s.add(Item(id=1, title="a"))
        with pytest.raises(Exception, match="sealed"):
            s.commit()
        s.rollback()
    assert published(live) == []


async def test_async_session_publishes_on_commit(live: LiveSync) -> None:
    async with live.async_sessionmaker() as s:
        s.add(Item(id=1, title="async"))
        await s.commit()
        item = await s.get(Item, 1)
        assert item is not None
        item.title = "async 2"
        await s.commit()
    await live.async_engine.dispose()
    topic = live.settings.topic
    from livesync import Position

    start = Position((await live.broker.position(topic)).epoch, 0)
    entries = await live.broker.read(topic, start)
    changes = [ChangeSet.decode(e.payload).changes[0] for e in entries]
    assert [(c.op, c.version) for c in changes] == [("insert", 1), ("update", 2)]


# --------------------------------------------------------------------------- outbox
def test_published_outbox_rows_are_cleaned_up(live: LiveSync) -> None:
    seed(live, Item(id=1, title="a"))
    live._janitor.flush()
    with live.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM livesync_outbox")).scalar() == 0


def test_the_outbox_row_holds_the_published_payload(live: LiveSync) -> None:
    live._janitor.close()  # keep the row so it can be inspected
    seed_item = Item(id=1, title="a")
    with live.sessionmaker() as s:
        s.add(seed_item)
        s.commit()
    with live.engine.connect() as conn:
        rows = conn.execute(text("SELECT changeset_id, payload FROM livesync_outbox")).all()
    (sent,) = published(live)
    assert [(r[0], ChangeSet.decode(r[1])) for r in rows] == [(sent.id, sent)]


def test_failed_publish_is_delivered_by_the_relay(live: LiveSync, monkeypatch: Any) -> None:
    def broken(topic: str, payload: bytes) -> Any:
        raise ConnectionError("broker down")

    real_publish = live.broker.publish
    monkeypatch.setattr(live.broker, "publish", broken)
    with live.sessionmaker() as s:
        s.add(Item(id=1, title="a"))
        s.commit()  # must not raise: the row is committed
        assert s.get(Item, 1) is not None
    monkeypatch.setattr(live.broker, "publish", real_publish)
    assert published(live) == []
    relay = live.relay()
    assert relay.run_once() == 0  # still within the writer's grace period
    import time

    assert relay.run_once(now=time.time() + live.settings.outbox_grace + 1) == 1
    assert ops(live) == [[("t_items", "1", "insert")]]
    assert relay.backlog() == 0


# --------------------------------------------------------------------------- resync
def test_resync_publishes_rows_changed_outside_the_orm(live: LiveSync) -> None:
    seed(live, Item(id=1, title="a"), Item(id=2, title="b"))
    with live.engine.begin() as conn:
        conn.execute(text("UPDATE t_items SET title = 'raw' WHERE id = 1"))
        conn.execute(text("DELETE FROM t_items WHERE id = 2"))
    assert published(live) == []  # invisible to the ORM, as documented
    changeset = live.resync(Item, ids=[1, 2])
    assert published(live) == [changeset]
    by_id = {c.id: c for c in changeset.changes}
    assert by_id["1"].op == "update" and by_id["1"].patch is None
    assert by_id["1"].doc is not None and by_id["1"].doc["title"] == "raw"
    assert (by_id["1"].prev_version, by_id["1"].version) == (1, 2)
    assert by_id["2"].op == "delete"


def test_resync_without_ids_publishes_a_collection_reset(live: LiveSync) -> None:
    changeset = live.resync("t_items")
    assert [(c.collection, c.op) for c in changeset.changes] == [("t_items", "reset")]
    assert published(live) == [changeset]


# --------------------------------------------------------------------------- upserts
def test_upsert_of_an_existing_row_is_an_update(live: LiveSync) -> None:
    seed(live, Item(id=1, title="a"))
    dialect = live.engine.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert
    statement = upsert(Item)
    statement = statement.on_conflict_do_update(
        index_elements=[Item.id],
        set_={"title": statement.excluded.title, "version": Item.version + 1},
    )
    with live.sessionmaker() as s:
        s.execute(statement, [{"id": 1, "title": "up"}, {"id": 2, "title": "new"}])
        s.commit()
    (changes,) = published(live)
    by_id = {c.id: c for c in changes.changes}
    assert by_id["1"].op == "update" and by_id["1"].version == 2
    assert by_id["1"].patch == [{"op": "replace", "path": "/title", "value": "up"}]
    assert by_id["2"].op == "insert"

    unbumped = upsert(Item)
    unbumped = unbumped.on_conflict_do_update(
        index_elements=[Item.id], set_={"title": unbumped.excluded.title}
    )
    with live.sessionmaker() as s:
        with pytest.raises(Exception, match="without bumping its version"):
            s.execute(unbumped, [{"id": 1, "title": "silent"}])
        s.rollback()


def test_changesets_roundtrip_through_their_encoding() -> None:
    changeset = ChangeSet(
        (
            Change("c", "1", "insert", 1, None, {"a": 1}),
            Change(
                "c", "2", "update", 3, 2, {"a": 2}, [{"op": "replace", "path": "/a", "value": 2}]
            ),
            Change("c", "3", "delete", 2, 1),
        )
    )
    assert ChangeSet.decode(changeset.encode()) == changeset
    with pytest.raises(ValueError, match="malformed"):
        ChangeSet.decode(b"not json")
    with pytest.raises(ValueError, match="malformed"):
        ChangeSet.decode(b'{"format": 1, "id": "x"}')
    with pytest.raises(ValueError, match="format"):
        ChangeSet.decode(b'{"format": 99}')


def test_delete_and_reinsert_in_one_transaction_keeps_versions_growing(live: LiveSync) -> None:
    seed(live, Item(id=1, title="old", qty=1))
    with live.sessionmaker() as s:
        old = s.get(Item, 1)
        assert old is not None
        old.qty = 2
        s.flush()  # version 2
        s.delete(old)
        s.flush()
        s.add(Item(id=1, title="new"))
        s.commit()
        reloaded = s.get(Item, 1)
        assert reloaded is not None
        reloaded.title = "newer"
        s.commit()  # the identity map knew the renumbered version: no StaleDataError
    first, second = (s.changes[0] for s in published(live))
    assert (first.op, first.prev_version, first.patch) == ("update", 1, None)
    assert first.version is not None and first.version > 1  # past what readers saw
    assert first.doc is not None and first.doc["title"] == "new"
    assert (second.prev_version, second.version) == (first.version, first.version + 1)


def test_delete_reinsert_delete_in_one_transaction_is_a_newer_delete(live: LiveSync) -> None:
    seed(live, Item(id=1, title="a"))
    with live.sessionmaker() as s:
        s.delete(s.get(Item, 1))
        s.flush()
        again = Item(id=1, title="again")
        s.add(again)
        s.flush()
        s.delete(again)
        s.commit()
    change = only_change(live)
    assert (change.op, change.prev_version) == ("delete", 1)
    assert change.version is not None and change.version > 1

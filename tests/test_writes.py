"""Client writes and methods against real databases, without the network.

Every rejection is checked for leaks: the tables, the outbox, the broker and the stored
acks are exactly as before.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from livesync import (
    CollectionError,
    Conflict,
    Context,
    Forbidden,
    Invalid,
    LiveSync,
    NotFound,
)
from livesync.dispatch import Outcome
from tests.conftest import make_live, published
from tests.models import Folder, Item, Member, Todo
from tests.write_support import (
    ItemDoc,
    TodoDoc,
    allow_items,
    allow_todos,
    assert_untouched,
    message,
    new_id,
    snapshot,
)

ALICE = Context(1, "s-alice")
BOB = Context(2, "s-bob")


@pytest.fixture
def live(database_url: str) -> Iterator[LiveSync]:
    live = make_live(database_url)
    live.collection(Todo, exclude=["note"])
    for model in (Item, Folder, Member):
        live.collection(model)
    allow_todos(live)
    allow_items(live)
    yield live
    live.close()


def run(live: LiveSync, ctx: Context = ALICE, client: str = "client-a", **fields: Any) -> Outcome:
    fields.setdefault("id", uuid.uuid4().hex[:8])
    return live.execute(ctx, message(**fields), client=client)


def insert_todo(live: LiveSync, ctx: Context = ALICE, **doc: Any) -> str:
    doc_id = doc.setdefault("id", new_id())
    doc.setdefault("owner_id", ctx.identity)
    doc.setdefault("title", "write tests")
    outcome = run(live, ctx, type="insert", c="t_todos", d=doc)
    assert outcome.ok, outcome.ack
    return str(doc_id)


def stored_todo(live: LiveSync, doc_id: str) -> tuple[int, dict[str, Any]] | None:
    with live.engine.connect() as conn:
        rows = live.collections["t_todos"].read(
            conn, select(Todo).where(Todo.id == uuid.UUID(doc_id))
        )
    return None if not rows else (rows[0][1], rows[0][2])


def rejected(live: LiveSync, code: str, ctx: Context = ALICE, **fields: Any) -> dict[str, Any]:
    """Run a write that must be refused with ``code`` and leave nothing behind."""
    before = snapshot(live)
    outcome = run(live, ctx, **fields)
    assert not outcome.ok and outcome.ack["code"] == code, outcome.ack
    assert not outcome.changed
    assert_untouched(live, before)
    return outcome.ack


def paths(ack: dict[str, Any]) -> dict[str, str]:
    return {f["path"]: f["message"] for f in ack.get("fields", [])}


# --------------------------------------------------------------------------- accepted writes
def test_insert_patch_set_and_remove_are_applied_and_published(live: LiveSync) -> None:
    doc_id = new_id()
    changeset_id = uuid.uuid4().hex
    outcome = live.execute(
        ALICE,
        message(type="insert", id="r1", c="t_todos", d={"id": doc_id, "owner_id": 1, "title": "a"}),
        client="client-a",
        changeset_id=changeset_id,
    )
    assert outcome.ack == {"id": "r1", "ok": True, "doc": doc_id, "v": 1}
    assert outcome.changed and not outcome.replayed
    # Schema defaults and the server default are in the stored document.
    assert stored_todo(live, doc_id) == (
        1,
        {"id": doc_id, "owner_id": 1, "title": "a", "done": False, "tags": [], "created": "born"},
    )
    assert published(live)[-1].id == changeset_id  # the id the gateway waits for

    patch = [
        {"op": "test", "path": "/title", "value": "a"},
        {"op": "replace", "path": "/title", "value": "b"},
        {"op": "add", "path": "/tags/-", "value": "x"},
    ]
    outcome = run(live, type="update", c="t_todos", doc=doc_id, v=1, patch=patch)
    assert (outcome.ack["v"], outcome.ack["doc"], outcome.changed) == (2, doc_id, True)
    outcome = run(live, type="update", c="t_todos", doc=doc_id, v=2, set={"done": True})
    assert outcome.ack["v"] == 3
    version, doc = stored_todo(live, doc_id) or (0, {})
    assert (version, doc["title"], doc["tags"], doc["done"]) == (3, "b", ["x"], True)
    change = published(live)[-1].changes[0]
    assert change.patch == [{"op": "replace", "path": "/done", "value": True}]

    outcome = run(live, type="remove", c="t_todos", doc=doc_id, v=3)
    assert outcome.ack == {"id": outcome.ack["id"], "ok": True, "doc": doc_id, "v": 4}
    assert stored_todo(live, doc_id) is None
    assert published(live)[-1].changes[0].op == "delete"
    assert published(live)[-1].changes[0].version == 4
    assert len(snapshot(live).requests) == 4  # one stored ack per accepted write


def test_an_update_that_changes_nothing_commits_no_change_set(live: LiveSync) -> None:
    doc_id = insert_todo(live, title="same")
    before = len(published(live))
    # Sending unchanged immutable fields back is fine: only changes are checked.
    outcome = run(
        live, type="update", c="t_todos", doc=doc_id, v=1, set={"title": "same", "owner_id": 1}
    )
    assert outcome.ok and outcome.ack["v"] == 1
    assert not outcome.changed  # nothing to wait for: the gateway fences at once
    assert len(published(live)) == before


def test_server_assigned_ids_come_back_in_the_ack(live: LiveSync) -> None:
    outcome = run(live, type="insert", c="t_items", d={"title": "first", "qty": "3"})
    assert outcome.ok
    item_id = outcome.ack["doc"]
    with Session(live.engine) as s:
        item = s.get(Item, int(item_id))
        assert item is not None and (item.title, item.qty) == ("first", 3)  # "3" coerced
    ack = rejected(live, "invalid", type="insert", c="t_items", d={"id": 99, "title": "x"})
    assert paths(ack) == {"/id": "the server assigns ids"}


def test_last_writer_wins_ignores_versions(live: LiveSync) -> None:
    item_id = run(live, type="insert", c="t_items", d={"title": "a"}).ack["doc"]
    run(live, type="update", c="t_items", doc=item_id, set={"title": "b"})
    stale = run(live, type="update", c="t_items", doc=item_id, v=1, set={"title": "c"})
    assert stale.ok and stale.ack["v"] == 3


def test_composite_keys_are_named_by_their_document_id(live: LiveSync) -> None:
    class MemberDoc(BaseModel):
        org: str
        user_id: int
        role: str

    live.allow(Member, schema=MemberDoc, ids="client", insert=True, update=True)
    ack = run(
        live, type="insert", c="t_members", d={"org": "acme/eu", "user_id": 7, "role": "dev"}
    ).ack
    assert ack["doc"] == "acme%2Feu/7"
    assert run(live, type="update", c="t_members", doc="acme%2Feu/7", v=1, set={"role": "ops"}).ok
    rejected(live, "not-found", type="update", c="t_members", doc="acme/eu/7", v=2, set={})
    missing_key = rejected(
        live, "invalid", type="insert", c="t_members", d={"org": "x", "role": "r"}
    )
    assert paths(missing_key) == {"/user_id": "the client must give the key"}


# --------------------------------------------------------------------------- rejections
def test_schema_violations_are_invalid_with_field_paths(live: LiveSync) -> None:
    ack = rejected(
        live,
        "invalid",
        type="insert",
        c="t_todos",
        d={"id": new_id(), "owner_id": 1, "title": "", "tags": ["ok", "far too long a tag"]},
    )
    assert set(paths(ack)) == {"/title", "/tags/1"}
    assert "at least 1 character" in paths(ack)["/title"]
    doc_id = insert_todo(live)
    ack = rejected(
        live, "invalid", type="update", c="t_todos", doc=doc_id, v=1, set={"done": "maybe"}
    )
    assert set(paths(ack)) == {"/done"}
    # The whole resulting document is validated, not just the fields sent.
    too_many = [{"op": "add", "path": "/tags/-", "value": str(i)} for i in range(6)]
    ack = rejected(live, "invalid", type="update", c="t_todos", doc=doc_id, v=1, patch=too_many)
    assert set(paths(ack)) == {"/tags"}


def test_fields_outside_the_schema_cannot_be_written(live: LiveSync) -> None:
    doc_id = insert_todo(live)
    for change, path, reason in [
        ({"owner_id": 2}, "/owner_id", "immutable"),
        ({"id": new_id()}, "/id", "immutable"),
        ({"created": "forged"}, "/created", "not writable"),
        ({"version": 99}, "/version", "t_todos has no field 'version'"),
        ({"note": "excluded from documents"}, "/note", "t_todos has no field 'note'"),
    ]:
        ack = rejected(live, "invalid", type="update", c="t_todos", doc=doc_id, v=1, set=change)
        assert paths(ack) == {path: reason}, change
    ack = rejected(
        live,
        "invalid",
        type="insert",
        c="t_todos",
        d={"id": new_id(), "owner_id": 1, "title": "t", "created": "forged"},
    )
    assert paths(ack) == {"/created": "not writable"}


def test_rules_that_say_no_are_forbidden(live: LiveSync) -> None:
    doc_id = insert_todo(live)
    rejected(
        live, "forbidden", BOB, type="update", c="t_todos", doc=doc_id, v=1, set={"title": "x"}
    )
    rejected(live, "forbidden", BOB, type="remove", c="t_todos", doc=doc_id, v=1)
    # The insert rule runs after the flush, on the stored document: still nothing leaks.
    rejected(
        live,
        "forbidden",
        BOB,
        type="insert",
        c="t_todos",
        d={"id": new_id(), "owner_id": 1, "title": "in alice's name"},
    )


def test_operations_and_collections_not_allowed_are_forbidden(live: LiveSync) -> None:
    item_id = run(live, type="insert", c="t_items", d={"title": "a"}).ack["doc"]
    rejected(live, "forbidden", type="remove", c="t_items", doc=item_id)  # no delete rule
    rejected(live, "forbidden", type="insert", c="t_folders", d={"id": 1, "name": "x"})
    rejected(live, "forbidden", type="insert", c="no_such_collection", d={})


def test_stale_versions_conflict_and_report_the_current_one(live: LiveSync) -> None:
    doc_id = insert_todo(live)
    run(live, type="update", c="t_todos", doc=doc_id, v=1, set={"title": "v2"})
    ack = rejected(
        live, "conflict", type="update", c="t_todos", doc=doc_id, v=1, set={"done": True}
    )
    assert ack["v"] == 2 and "version 2" in ack["message"]
    assert rejected(live, "conflict", type="remove", c="t_todos", doc=doc_id, v=1)["v"] == 2
    ack = rejected(live, "invalid", type="update", c="t_todos", doc=doc_id, set={"done": True})
    assert paths(ack) == {"/v": "required"}


def test_missing_documents_are_not_found(live: LiveSync) -> None:
    for doc in (new_id(), "not-a-uuid", str(uuid.uuid4()).upper()):
        rejected(live, "not-found", type="update", c="t_todos", doc=doc, v=1, set={"done": True})
    rejected(live, "not-found", type="remove", c="t_todos", doc=new_id(), v=1)
    item_id = run(live, type="insert", c="t_items", d={"title": "a"}).ack["doc"]
    rejected(live, "not-found", type="update", c="t_items", doc=f"0{item_id}", set={"qty": 1})


def test_inserting_an_existing_id_conflicts(live: LiveSync) -> None:
    doc_id = insert_todo(live)
    ack = rejected(
        live, "conflict", type="insert", c="t_todos", d={"id": doc_id, "owner_id": 1, "title": "b"}
    )
    assert ack["v"] == 1


def test_client_ids_must_be_canonical_uuids(live: LiveSync) -> None:
    for bad in (str(uuid.uuid4()).upper(), "12", 12, None):
        ack = rejected(
            live, "invalid", type="insert", c="t_todos", d={"id": bad, "owner_id": 1, "title": "t"}
        )
        assert set(paths(ack)) == {"/id"}


@pytest.mark.parametrize(
    ("op", "path"),
    [
        ({"op": "test", "path": "/title", "value": "not the title"}, "/title"),
        ({"op": "replace", "path": "/missing/deep", "value": 1}, "/missing/deep"),
        ({"op": "remove", "path": "/tags/5"}, "/tags/5"),
        ({"op": "move", "from": "/nope", "path": "/title"}, "/title"),
    ],
)
def test_patches_that_do_not_apply_are_invalid(
    live: LiveSync, op: dict[str, Any], path: str
) -> None:
    doc_id = insert_todo(live)
    first = {"op": "replace", "path": "/done", "value": True}  # applied, then rolled back
    ack = rejected(live, "invalid", type="update", c="t_todos", doc=doc_id, v=1, patch=[first, op])
    assert list(paths(ack)) == [path]
    assert "operation 1" in ack["message"]


def test_a_patch_cannot_remove_or_add_fields(live: LiveSync) -> None:
    doc_id = insert_todo(live)
    remove = [{"op": "remove", "path": "/title"}]
    ack = rejected(live, "invalid", type="update", c="t_todos", doc=doc_id, v=1, patch=remove)
    assert paths(ack) == {"/title": "a field cannot be removed"}
    add = [{"op": "add", "path": "/colour", "value": "red"}]
    ack = rejected(live, "invalid", type="update", c="t_todos", doc=doc_id, v=1, patch=add)
    assert paths(ack) == {"/colour": "t_todos has no field 'colour'"}


# --------------------------------------------------------------------------- idempotency
def test_a_resent_write_is_applied_once_and_answered_the_same(live: LiveSync) -> None:
    d = {"id": new_id(), "owner_id": 1, "title": "once"}
    first = run(live, id="req-1", type="insert", c="t_todos", d=d)
    again = run(live, id="req-1", type="insert", c="t_todos", d=d)
    assert again.ack == first.ack and again.replayed and not again.changed
    other_client = run(live, id="req-1", client="client-b", type="insert", c="t_todos", d=d)
    assert other_client.ack["code"] == "conflict"  # a different scope: evaluated, refused
    assert len(published(live)) == 1


def test_rejections_are_not_stored_so_a_resend_is_evaluated_again(live: LiveSync) -> None:
    doc_id = insert_todo(live)
    run(live, type="update", c="t_todos", doc=doc_id, v=1, set={"title": "v2"})
    stale = {"id": "req-9", "type": "update", "c": "t_todos", "doc": doc_id, "v": 1}
    assert run(live, **stale, set={"done": True}).ack["code"] == "conflict"
    # The client resends the same request id (say, after a reconnect): evaluated again.
    with live.sessionmaker() as s:
        todo = s.get(Todo, uuid.UUID(doc_id))
        assert todo is not None
        s.delete(todo)
        s.commit()
    assert run(live, **stale, set={"done": True}).ack["code"] == "not-found"


def test_concurrent_duplicates_apply_once(live: LiveSync) -> None:
    entered = threading.Event()

    @live.method("slow_insert")
    def slow_insert(ctx: Context, session: Session, title: str) -> int:
        item = Item(title=title)
        session.add(item)
        session.flush()
        entered.set()
        time.sleep(0.3)  # the duplicate arrives while this one is still running
        return item.id

    results: list[Outcome] = []

    def attempt() -> None:
        results.append(run(live, id="dup", type="call", m="slow_insert", params={"title": "x"}))

    first = threading.Thread(target=attempt)
    first.start()
    assert entered.wait(5)
    attempt()
    first.join(5)
    assert [r.ack for r in results] == [results[0].ack, results[0].ack]
    assert results[0].ack["ok"] is True
    assert sorted(r.replayed for r in results) == [False, True]
    with live.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t_items")).scalar_one() == 1
    assert len(published(live)) == 1


def test_a_duplicate_refused_because_of_the_first_attempt_gets_its_answer(
    live: LiveSync,
) -> None:
    """The duplicate of a running insert fails on the document's key (PostgreSQL waits for
    the first to commit, then reports a unique violation): it must answer the stored ack,
    not ``conflict``."""
    entered = threading.Event()

    class FolderDoc(BaseModel):
        id: int
        name: str

    def slow_rule(ctx: Context, new: dict[str, Any]) -> bool:
        entered.set()
        time.sleep(0.3)  # after the flush, before COMMIT
        return True

    live.allow(Folder, schema=FolderDoc, ids="client", insert=slow_rule)
    results: list[Outcome] = []

    def attempt() -> None:
        results.append(run(live, id="f1", type="insert", c="t_folders", d={"id": 1, "name": "x"}))

    first = threading.Thread(target=attempt)
    first.start()
    assert entered.wait(5)
    attempt()
    first.join(5)
    assert results[0].ack == results[1].ack == {"id": "f1", "ok": True, "doc": "1", "v": 1}
    assert sorted(r.replayed for r in results) == [False, True]
    assert len(published(live)) == 1


def test_the_janitor_deletes_only_expired_answers(live: LiveSync) -> None:
    run(live, id="old", type="insert", c="t_items", d={"title": "a"})
    run(live, id="new", type="insert", c="t_items", d={"title": "b"})
    with live.engine.begin() as conn:
        conn.execute(text("UPDATE livesync_requests SET created_at = 0 WHERE request = 'old'"))
    janitor = live.request_janitor()
    assert janitor.run_once() == 1
    assert {r for _, r in snapshot(live).requests} == {"new"}
    # An expired request is evaluated again (here: a fresh insert).
    assert run(live, id="old", type="insert", c="t_items", d={"title": "a"}).changed


# --------------------------------------------------------------------------- methods
@pytest.fixture
def methods(live: LiveSync) -> LiveSync:
    @live.method("add_items")
    def add_items(ctx: Context, session: Session, title: str, count: int = 1) -> dict[str, Any]:
        items = [Item(title=title) for _ in range(count)]
        session.add_all(items)
        session.flush()
        return {"ids": [i.id for i in items], "by": ctx.identity}

    @live.method("refuse")
    def refuse(ctx: Context, session: Session, how: str) -> None:
        session.add(Item(title="must not survive"))
        session.flush()
        errors: dict[str, Exception] = {
            "forbidden": Forbidden("admins only"),
            "conflict": Conflict("already archived", version=4),
            "not-found": NotFound("no such project"),
            "invalid": Invalid("bad dates", fields={"end": "before start"}),
            "validation": _validation_error(),
            "bug": KeyError("secret-internal-detail"),
            "commit": RuntimeError("unused"),
        }
        if how == "commit":
            session.commit()  # refused: livesync owns the transaction
        raise errors[how]

    return live


def _validation_error() -> Exception:
    try:
        TodoDoc.model_validate({"id": "x"})
    except Exception as exc:
        return exc
    raise AssertionError


def test_methods_run_in_one_transaction_and_return_their_result(methods: LiveSync) -> None:
    outcome = run(methods, type="call", m="add_items", params={"title": "m", "count": "2"})
    assert outcome.ack["ok"] and outcome.changed
    assert outcome.ack["result"] == {"ids": [1, 2], "by": 1}
    (changeset,) = published(methods)
    assert sorted(c.id for c in changeset.changes) == ["1", "2"]  # one transaction


def test_method_params_are_validated(methods: LiveSync) -> None:
    ack = rejected(methods, "invalid", type="call", m="add_items", params={"count": "many"})
    assert set(paths(ack)) == {"/title", "/count"}
    ack = rejected(methods, "invalid", type="call", m="add_items", params={"title": "t", "x": 1})
    assert set(paths(ack)) == {"/x"}
    rejected(methods, "not-found", type="call", m="no_such_method", params={})


@pytest.mark.parametrize(
    ("how", "code"),
    [
        ("forbidden", "forbidden"),
        ("conflict", "conflict"),
        ("not-found", "not-found"),
        ("invalid", "invalid"),
        ("validation", "invalid"),
        ("bug", "internal"),
        ("commit", "internal"),
    ],
)
def test_method_exceptions_map_to_codes_and_roll_back(
    methods: LiveSync, how: str, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="livesync"):
        ack = rejected(methods, code, id=f"req-{how}", type="call", m="refuse", params={"how": how})
    if how == "invalid":
        assert paths(ack) == {"/end": "before start"}
    if how == "validation":
        assert "/owner_id" in paths(ack)
    if how == "conflict":
        assert ack["v"] == 4
    if code == "internal":
        assert ack == {
            "id": f"req-{how}",
            "ok": False,
            "code": "internal",
            "message": "internal error",
        }
        (record,) = [r for r in caplog.records if f"req-{how}" in r.getMessage()]
        assert record.exc_info is not None  # the traceback is logged, never sent
        assert "s-alice" in record.getMessage()
    else:
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --------------------------------------------------------------------------- declarations
def test_declarations_are_checked_at_startup(live: LiveSync) -> None:
    class Wrong(BaseModel):
        id: uuid.UUID
        colour: str

    class NoKey(BaseModel):
        name: str

    class Role(BaseModel):
        role: str

    class RequiredId(BaseModel):
        id: int
        name: str

    with pytest.raises(CollectionError, match="already writable"):
        allow_todos(live)
    with pytest.raises(CollectionError, match=r"\['colour'\] are not document fields"):
        live.allow(Folder, schema=Wrong)
    with pytest.raises(CollectionError, match="single-column"):
        live.allow(Member, schema=Role)
    with pytest.raises(CollectionError, match="must declare"):
        live.allow(Folder, schema=NoKey, ids="client")
    with pytest.raises(CollectionError, match="make \\['id'\\] optional"):
        live.allow(Folder, schema=RequiredId, ids="server")
    with pytest.raises(CollectionError, match="conflicts must be"):
        live.allow(Folder, schema=NoKey, ids="server", conflicts="merge")
    with pytest.raises(KeyError):
        live.allow("t_nothing", schema=NoKey)

    async def not_sync(ctx: Context, session: Session) -> None: ...

    with pytest.raises(TypeError, match="async"):
        live.method("async_one")(not_sync)
    with pytest.raises(TypeError, match="needs a type"):
        live.method("untyped")(lambda ctx, session, x: None)


def test_schemas_describe_only_what_is_allowed(live: LiveSync) -> None:
    schemas = live.schemas()
    assert set(schemas) == {"t_todos", "t_items"}
    todos = schemas["t_todos"]
    assert todos["schema"] == TodoDoc.model_json_schema()
    assert todos["schema"]["properties"]["title"]["maxLength"] == 100
    assert (todos["key"], todos["immutable"], todos["ids"], todos["conflicts"]) == (
        ["id"],
        ["id", "owner_id"],
        "uuid",
        "reject",
    )
    assert todos["ops"] == ["insert", "update", "remove"]
    assert schemas["t_items"]["ops"] == ["insert", "update"]
    assert schemas["t_items"]["schema"] == ItemDoc.model_json_schema()

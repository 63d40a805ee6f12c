"""The router, without any I/O: per-key wire changes, versions, and routing cost."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import or_, select

from livesync.changes import Change, ChangeSet
from livesync.collections import Collection
from livesync.matching import compile_predicate
from livesync.ordering import compile_order
from livesync.publications import analyse
from livesync.server.router import Channel, Router, replay, tx_frame
from livesync.server.window import Window
from tests.models import Item

ITEMS = Collection(Item)


def channel(where: Any = None, key: str | None = None, requery: bool = False) -> Channel:
    statement = select(Item) if where is None else select(Item).where(where)
    query = analyse(statement, lambda model: ITEMS)
    compiled = None if requery else compile_predicate(query.where, ITEMS, "sqlite")
    return Channel(key or query.key, query, compiled)


def doc(item_id: int, qty: int, title: str = "t") -> dict[str, Any]:
    return {"id": item_id, "title": title, "qty": qty, "data": {}, "created": "born",
            "touched": 0, "secret": None}  # fmt: skip


def update(item_id: int, version: int, qty: int) -> Change:
    patch = [{"op": "replace", "path": "/qty", "value": qty}]
    return Change("t_items", str(item_id), "update", version, version - 1, doc(item_id, qty), patch)


def started(router: Router, ch: Channel, rows: list[tuple[str, int]]) -> None:
    router.add(ch)
    assert router.start(ch.key, [(i, v, doc(int(i), 0)) for i, v in rows]) == []


def test_enter_change_leave_and_stale() -> None:
    router = Router()
    big = channel(Item.qty >= 3, key="big")
    started(router, big, [("2", 1)])
    routed, dirty = router.route(1, ChangeSet((update(1, 2, 5),)))
    assert dirty == set()
    assert routed["big"][0]["op"] == "put"  # entered
    routed, _ = router.route(2, ChangeSet((update(1, 3, 6),)))
    assert routed["big"][0]["op"] == "patch"  # changed inside, base held
    routed, _ = router.route(3, ChangeSet((update(1, 3, 6),)))
    assert routed == {}  # duplicate
    routed, _ = router.route(4, ChangeSet((update(1, 5, 7),)))
    assert routed["big"][0]["op"] == "put"  # a gap: the whole document
    routed, _ = router.route(5, ChangeSet((update(2, 2, 0),)))
    assert routed["big"] == [{"c": "t_items", "id": "2", "op": "del", "v": 2}]  # left
    routed, _ = router.route(6, ChangeSet((Change("t_items", "1", "delete", 6, 5),)))
    assert routed["big"][0]["op"] == "del"
    assert big.held == {}


def test_changes_before_the_snapshot_are_buffered_then_routed() -> None:
    router = Router()
    everything = channel(key="all")
    router.add(everything)
    routed, _ = router.route(7, ChangeSet((update(1, 2, 1),)))
    assert routed == {}
    out = router.start("all", [("1", 1, doc(1, 0))])
    assert [(pos, [c["op"] for c in changes]) for pos, changes in out] == [(7, ["patch"])]


def test_a_document_that_entered_and_left_before_the_snapshot_stays_out() -> None:
    """The hub may process changes after the snapshot read that were committed before it.
    Routing an old "entered" change without the later "left" one would bring the document
    back for good: the "left" change matches no equality hint and is held by no one yet."""
    router = Router()
    fives = channel(Item.qty == 5, key="fives")
    router.add(fives)
    router.route(1, ChangeSet((upsert(3, 1, 5),)))  # enters...
    router.route(2, ChangeSet((upsert(3, 2, 0),)))  # ...and leaves, before the snapshot
    assert router.start("fives", []) == []  # the snapshot no longer has it: nothing to send
    routed, _ = router.route(3, ChangeSet((upsert(3, 3, 5),)))
    assert [(c["op"], c["v"]) for c in routed["fives"]] == [("put", 3)]


def test_requery_channels_are_marked_dirty_and_diffed() -> None:
    router = Router()
    window = channel(key="window", requery=True)
    started(router, window, [("1", 1), ("2", 1)])
    _, dirty = router.route(1, ChangeSet((update(3, 2, 1),)))
    assert dirty == {"window"}
    router.route(2, ChangeSet((update(2, 2, 1),)))
    assert router.dirty("window")
    changes = router.refresh("window", [("2", 2, doc(2, 1)), ("3", 1, doc(3, 1))])
    assert sorted((c["op"], c["id"]) for c in changes) == [
        ("del", "1"),
        ("patch", "2"),  # the change it saw was made from the version it held
        ("put", "3"),
    ]
    assert window.recent == {}


def test_routing_cost_follows_matching_subscriptions_not_all() -> None:
    router = Router()
    evaluated = 0
    for owner in range(10_000):
        ch = channel(Item.qty == owner, key=f"k{owner}")
        assert ch.compiled is not None
        inner = ch.compiled.predicate

        def counted(d: Any, inner: Any = inner) -> bool:
            nonlocal evaluated
            evaluated += 1
            return bool(inner(d))

        ch.compiled = type(ch.compiled)(counted, ch.compiled.equalities, ch.compiled.keys)
        started(router, ch, [("1", 1)] if owner == 42 else [])
    routed, _ = router.route(1, ChangeSet((update(2, 2, 7),)))
    assert list(routed) == ["k7"] and evaluated == 1
    evaluated = 0
    routed, _ = router.route(2, ChangeSet((update(1, 2, 43),)))  # leaves k42, enters k43
    assert sorted(routed) == ["k42", "k43"] and evaluated == 2


def test_replay_and_frames() -> None:
    compiled = compile_predicate(Item.qty >= 3, ITEMS, "sqlite")
    out = replay(compiled, "t_items", [update(1, 2, 5), update(2, 2, 0)])
    assert [(c["op"], c["id"]) for c in out] == [("put", "1"), ("del", "2")]
    assert (
        tx_frame(9, [b'{"key":"a","ch":[]}'])
        == b'{"type":"tx","pos":9,"parts":[{"key":"a","ch":[]}]}'
    )


# --------------------------------------------------------------------------- windows


def window_channel(n: int, where: Any = None) -> Channel:
    """Top ``n`` items by qty (descending, SQLite's NULL placement), ties by id."""
    statement = select(Item).order_by(Item.qty.desc()).limit(n)
    if where is not None:
        statement = statement.where(where)
    query = analyse(statement, lambda model: ITEMS)
    compiled = compile_predicate(query.where, ITEMS, "sqlite")
    window = Window(compile_order(query.order_by, ITEMS, "sqlite"), n)
    return Channel(query.key, query, compiled, window)


def upsert(item_id: int, version: int, qty: int | None) -> Change:
    after = doc(item_id, 0) | {"qty": qty}
    return Change("t_items", str(item_id), "update", version, None, after, None)


def test_a_window_keeps_itself_without_queries_until_a_document_leaves_it() -> None:
    router = Router()
    top = window_channel(3)
    router.add(top)
    rows = [(str(i), 1, doc(i, q)) for i, q in [(1, 9), (2, 8), (3, 7)]]
    assert router.start(top.key, rows) == []

    routed, dirty = router.route(1, ChangeSet((upsert(4, 1, 10),)))  # a newcomer at the top
    assert [(c["op"], c["id"]) for c in routed[top.key]] == [("del", "3"), ("put", "4")]
    assert "v" not in routed[top.key][0]  # order 3 still exists: only the window let it go
    assert dirty == set()
    routed, dirty = router.route(2, ChangeSet((upsert(5, 1, 1),)))  # sorts after the window
    assert routed == {} and dirty == set()
    routed, dirty = router.route(3, ChangeSet((update(1, 2, 9),)))  # changes, stays inside
    assert [c["op"] for c in routed[top.key]] == ["patch"] and dirty == set()

    routed, dirty = router.route(4, ChangeSet((update(2, 2, 0),)))  # leaves a full window
    assert [(c["op"], c["id"]) for c in routed[top.key]] == [("del", "2")]
    assert dirty == {top.key} and router.dirty(top.key)
    refilled = router.refresh(top.key, [(str(i), 1, doc(i, q)) for i, q in [(4, 10), (3, 7)]]
                              + [("1", 2, doc(1, 9))])  # fmt: skip
    assert [(c["op"], c["id"]) for c in refilled] == [("put", "3")]
    assert not router.dirty(top.key) and top.window is not None
    assert top.window.ids() == ["4", "1", "3"]


def test_the_last_document_of_a_full_window_stays_while_it_does_not_move_later() -> None:
    router = Router()
    top = window_channel(2)
    router.add(top)
    router.start(top.key, [(str(i), 1, doc(i, q)) for i, q in [(1, 9), (2, 8)]])
    routed, dirty = router.route(1, ChangeSet((update(2, 2, 8),)))  # same place, new version
    assert [c["op"] for c in routed[top.key]] == ["patch"] and dirty == set()
    routed, dirty = router.route(2, ChangeSet((update(2, 3, 9),)))  # moves earlier (tie: id)
    assert [c["op"] for c in routed[top.key]] == ["patch"] and dirty == set()
    routed, dirty = router.route(3, ChangeSet((update(2, 4, 1),)))  # later: beyond may win
    assert [c["op"] for c in routed[top.key]] == ["del"] and dirty == {top.key}


def test_a_window_that_is_not_full_takes_every_match() -> None:
    router = Router()
    top = window_channel(3, Item.qty >= 0)
    router.add(top)
    router.start(top.key, [("1", 1, doc(1, 5))])
    routed, dirty = router.route(1, ChangeSet((upsert(2, 1, 0),)))
    assert [c["op"] for c in routed[top.key]] == ["put"] and dirty == set()
    routed, dirty = router.route(2, ChangeSet((Change("t_items", "1", "delete", 2, 1),)))
    assert [c["op"] for c in routed[top.key]] == ["del"] and dirty == set()  # nothing beyond
    routed, dirty = router.route(3, ChangeSet((upsert(2, 2, -1),)))  # leaves the filter
    assert [c["op"] for c in routed[top.key]] == ["del"] and dirty == set()


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(1, 4),
    start=st.dictionaries(st.integers(1, 12), st.none() | st.integers(-3, 3), max_size=8),
    steps=st.lists(
        st.lists(st.tuples(st.integers(1, 12), st.none() | st.integers(-3, 8)), max_size=3),
        max_size=25,
    ),
)
def test_windows_stay_exact_under_any_changes(
    size: int, start: dict[int, int | None], steps: list[list[tuple[int, int | None]]]
) -> None:
    """After every change set (and a refill whenever the router asks), the ids a client holds
    are exactly the window a fresh query would return. ``qty`` -3 means "delete the row";
    NULLs, ties and a filter (qty != 2) are all in play."""
    table = {i: (1, q) for i, q in start.items()}
    top = window_channel(size, or_(Item.qty.is_(None), Item.qty != 2))
    order = compile_order(top.query.order_by, ITEMS, "sqlite")
    router = Router()
    router.add(top)

    def fresh() -> list[tuple[str, int, dict[str, Any]]]:
        matching = [(i, v, doc(i, 0) | {"qty": q}) for i, (v, q) in table.items() if q != 2]
        matching.sort(key=lambda row: order(row[2]))
        return [(str(i), v, d) for i, v, d in matching[:size]]

    router.start(top.key, fresh())
    client = {row[0] for row in fresh()}
    for pos, step in enumerate(steps, start=1):
        changes = []
        for item_id, qty in dict(step).items():  # a change set has one change per document
            version = table.get(item_id, (0, None))[0] + 1
            if qty == -3:
                if item_id in table:
                    del table[item_id]
                    changes.append(Change("t_items", str(item_id), "delete", version, None))
                continue
            table[item_id] = (version, qty)
            changes.append(upsert(item_id, version, qty))
        routed, dirty = router.route(pos, ChangeSet(tuple(changes)))
        if dirty:
            routed = {top.key: routed.get(top.key, []) + router.refresh(top.key, fresh())}
        for change in routed.get(top.key, []):
            (client.add if change["op"] in ("put", "patch") else client.discard)(change["id"])
        assert client == {row[0] for row in fresh()}
        assert top.window is not None and len(top.window) <= size

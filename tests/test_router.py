"""The router, without any I/O: per-key wire changes, versions, and routing cost."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from livesync.changes import Change, ChangeSet
from livesync.collections import Collection
from livesync.matching import compile_predicate
from livesync.publications import analyse
from livesync.server.router import Channel, Router, diff_results, replay, tx_frame
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
    assert router.start(ch.key, rows) == []


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
    out = router.start("all", [("1", 1)])
    assert [(pos, [c["op"] for c in changes]) for pos, changes in out] == [(7, ["patch"])]


def test_requery_channels_are_marked_dirty_and_diffed() -> None:
    router = Router()
    window = channel(key="window", requery=True)
    started(router, window, [("1", 1), ("2", 1)])
    _, dirty = router.route(1, ChangeSet((update(3, 2, 1),)))
    assert dirty == {"window"}
    router.route(2, ChangeSet((update(2, 2, 1),)))
    changes = diff_results(window, [("2", 2, doc(2, 1)), ("3", 1, doc(3, 1))])
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

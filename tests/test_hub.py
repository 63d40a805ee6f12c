"""The hub's subscription start, under changes and resets that land while it is starting.

Each test wraps the hub's snapshot read so that something happens exactly in the window
between a subscriber's registration and its ``ready``: the races a real server meets by
chance, made deterministic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import select

from livesync import LiveSync
from livesync.publications import Context
from livesync.server.hub import Hub
from tests.conftest import make_live
from tests.gateway_support import Client, connected, running_gateway
from tests.models import Item


@pytest.fixture
async def served(database_url: str) -> AsyncIterator[tuple[LiveSync, Hub, int]]:
    live = make_live(database_url, ping_interval=30.0)
    live.collection(Item, publish=True)

    @live.publication("items_min_qty")
    def items_min_qty(ctx: Context, min_qty: int) -> Any:
        return select(Item).where(Item.qty >= min_qty)

    app = live.app
    async with running_gateway(live) as port:
        yield live, app.ctx.gateway.hub, port
    live.close()


def write(live: LiveSync, hub: Hub, item_id: int, qty: int, title: str = "t") -> None:
    """Upsert one item, then wait (in this worker thread) until the hub has processed it."""
    before = hub.position.offset
    with live.sessionmaker() as s:
        item = s.get(Item, item_id)
        if item is None:
            s.add(Item(id=item_id, title=title, qty=qty))
        else:
            item.qty, item.title = qty, title
        s.commit()
    deadline = time.monotonic() + 5
    while hub.position.offset <= before:
        assert time.monotonic() < deadline, "the hub never saw the write"
        time.sleep(0.01)


def during_next_read(hub: Hub, action: Callable[[], None]) -> None:
    """Run ``action`` in the snapshot-reading thread, just before the next read."""
    read = hub._read
    done = False

    def wrapped(query: Any) -> Any:
        nonlocal done
        if not done:
            done = True
            action()
        return read(query)

    hub._read = wrapped  # type: ignore[method-assign]


async def frames_until_quiet(client: Client, quiet: float = 0.3) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        try:
            message = await asyncio.wait_for(client.recv(), quiet)
        except TimeoutError:
            return out
        if message["type"] != "ping":
            out.append(message)


async def test_resuming_onto_a_fresh_channel_misses_nothing(
    served: tuple[LiveSync, Hub, int],
) -> None:
    live, hub, port = served
    await asyncio.to_thread(write, live, hub, 1, 1)
    async with connected(port) as client:
        _, ready = await client.subscribe("all", "t_items")
    # The channel is gone with its only subscriber. A write while the client is away, and
    # one more between its return (registration) and the channel's first snapshot read.
    await asyncio.to_thread(write, live, hub, 2, 2)
    during_next_read(hub, lambda: write(live, hub, 3, 3))
    async with connected(port) as client:
        since = {"epoch": ready["epoch"], "pos": ready["pos"]}
        replayed, again = await client.subscribe("all", "t_items", since=since)
        assert again["resumed"] is True
        ids = {c["id"] for tx in replayed for part in tx["parts"] for c in part["ch"]}
        assert ids == {"2", "3"}  # without the fix, item 3 never reached this client


async def test_frames_never_overtake_each_other_while_a_subscription_starts(
    served: tuple[LiveSync, Hub, int],
) -> None:
    live, hub, port = served
    await asyncio.to_thread(write, live, hub, 1, 1)
    async with connected(port) as other, connected(port) as client:
        await other.subscribe("big", "items_min_qty", params={"min_qty": 5})  # live channel
        await client.subscribe("all", "t_items")
        # While "big" starts for this client: a change set for both its keys, then one
        # for "all" only. The first is held until "big" is ready; the second must wait too.
        during_next_read(
            hub,
            lambda: (write(live, hub, 2, 10), write(live, hub, 1, 0, "only all")),
        )
        await client.send(type="sub", id="big", pub="items_min_qty", params={"min_qty": 5})
        frames = await frames_until_quiet(client)
    kinds = [m["type"] for m in frames]
    positions = [m["pos"] for m in frames if m["type"] == "tx"]
    assert len(positions) == 2 and positions == sorted(positions)
    assert kinds.index("ready") < kinds.index("tx")  # "big"'s part follows its ready
    first = next(m for m in frames if m["type"] == "tx")
    assert len(first["parts"]) == 2  # one frame for both keys: a transaction is never split


async def test_a_reset_while_starting_restarts_the_subscription_quietly(
    served: tuple[LiveSync, Hub, int],
) -> None:
    live, hub, port = served
    await asyncio.to_thread(write, live, hub, 1, 1)
    loop = asyncio.get_running_loop()

    def reset_everything() -> None:
        asyncio.run_coroutine_threadsafe(_reset(hub), loop).result(5)

    during_next_read(hub, reset_everything)
    async with connected(port) as client:
        docs, ready = await client.subscribe("all", "t_items")
        assert ready["type"] == "ready" and [d["id"] for d in docs] == ["1"]
        await asyncio.to_thread(write, live, hub, 2, 2)  # and it is live afterwards
        tx = await client.recv_type("tx")
        assert [c["id"] for part in tx["parts"] for c in part["ch"]] == ["2"]
        assert all(part["key"] == ready["key"] for part in tx["parts"])


async def _reset(hub: Hub) -> None:
    hub._reset_all("history-lost")

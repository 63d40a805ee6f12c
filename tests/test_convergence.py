"""Convergence: random writes, clients that randomly disconnect and resume, then silence.

At the end every client's cache equals its publication's query result: same documents,
same versions.
"""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from livesync import LiveSync
from livesync.publications import Context
from tests.cache_client import CacheClient, Docs, Subscription
from tests.conftest import make_live
from tests.gateway_support import TIMEOUT, running_gateway
from tests.models import Item

pytestmark = pytest.mark.slow
PUBLICATIONS = {"all": ("t_items", {}), "big": ("big", {"min_qty": 3}), "top": ("top", {"n": 3})}


def writer(live: LiveSync, stop: threading.Event, seed: int) -> int:
    r = random.Random(seed)
    count = 0
    while not stop.is_set():
        key = r.randint(1, 12)
        with live.sessionmaker() as s:
            roll = r.random()
            item = s.get(Item, key)
            if item is None:
                s.add(Item(id=key, title=f"t{key}", qty=r.randint(0, 6), data={"n": 0}))
            elif roll < 0.4:
                item.qty = r.randint(0, 6)
            elif roll < 0.6:
                item.data["n"] = item.data.get("n", 0) + 1  # in place: a nested patch
            elif roll < 0.75:
                s.delete(item)
            elif roll < 0.9:
                s.execute(update(Item).where(Item.qty < 2).values(qty=Item.qty + 1))
            else:
                s.execute(delete(Item).where(Item.id == r.randint(1, 12)))
            s.commit()
        count += 1
        stop.wait(r.uniform(0, 0.01))
    return count


def expected(live: LiveSync, pub: str, params: dict[str, Any]) -> Docs:
    query = live.subscribe_query(pub, Context(None), params)
    with live.engine.connect() as conn:
        return {doc_id: (v, doc) for doc_id, v, doc in query.collection.read(conn, query.statement)}


async def test_every_cache_converges(database_url: str) -> None:
    live = make_live(database_url)
    live.collection(Item, publish=True)

    @live.publication("big")
    def big(ctx: Context, min_qty: int) -> Any:
        return select(Item).where(Item.qty >= min_qty)

    @live.publication("top")
    def top(ctx: Context, n: int) -> Any:
        return select(Item).order_by(Item.qty.desc(), Item.id).limit(n)

    try:
        async with running_gateway(live) as port:
            clients = [
                CacheClient(
                    port,
                    {name: Subscription(*PUBLICATIONS[name]) for name in PUBLICATIONS},
                    seed=i,
                )
                for i in range(3)
            ]
            tasks = [asyncio.create_task(c.run(drop_rate=0.05)) for c in clients]
            stop = threading.Event()
            written = asyncio.create_task(asyncio.to_thread(writer, live, stop, 7))
            await asyncio.sleep(3.0)
            # Keep writing until every client has dropped and resumed at least twice: on a
            # loaded machine 3 s may hold too few frames and idle moments for the dice.
            loop = asyncio.get_running_loop()
            give_up = loop.time() + 4 * TIMEOUT
            while not all(c.reconnects > 1 for c in clients) and loop.time() < give_up:
                await asyncio.sleep(0.2)
            stop.set()
            transactions = await written

            deadline = asyncio.get_running_loop().time() + 4 * TIMEOUT
            truth = {name: expected(live, *PUBLICATIONS[name]) for name in PUBLICATIONS}
            while True:
                caches = [{n: s.docs for n, s in c.subs.items()} for c in clients]
                if all(cache == truth for cache in caches):
                    break
                if asyncio.get_running_loop().time() > deadline:
                    for cache in caches:
                        for name in truth:
                            assert cache[name] == truth[name], name
                await asyncio.sleep(0.1)
            for client in clients:
                client.stop.set()
            await asyncio.gather(*tasks)
        assert transactions > 50
        assert all(c.reconnects > 1 for c in clients)  # they really did drop and resume
        assert any(truth[name] for name in truth)
    finally:
        live.close()

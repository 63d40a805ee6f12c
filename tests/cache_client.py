"""A Python client that keeps a replicated cache by the rules of docs/protocol.md §4.

Used by the convergence test: it reconnects and resumes from its last position, applies
patches only on their base version, repairs gaps by resubscribing, and obeys ``reset``.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import orjson
import websockets

Docs = dict[str, tuple[int | None, dict[str, Any]]]


@dataclass
class Subscription:
    pub: str
    params: dict[str, Any]
    key: str | None = None
    since: dict[str, Any] | None = None
    docs: Docs = field(default_factory=dict)
    snapshot: Docs = field(default_factory=dict)


class CacheClient:
    def __init__(self, port: int, subs: dict[str, Subscription], seed: int) -> None:
        self.port = port
        self.subs = subs
        self.random = random.Random(seed)
        self.reconnects = 0
        self.gaps = 0
        self.stop = asyncio.Event()

    async def run(self, drop_rate: float) -> None:
        """Stay connected until ``stop``; now and then drop the connection on purpose."""
        while not self.stop.is_set():
            try:
                async with websockets.connect(f"ws://127.0.0.1:{self.port}/live") as ws:
                    await ws.send(orjson.dumps({"type": "hello", "v": [1]}).decode())
                    for sub_id in self.subs:
                        await self._subscribe(ws, sub_id)
                    await self._follow(ws, drop_rate)
            except (OSError, websockets.ConnectionClosed):
                await asyncio.sleep(0.05)
            self.reconnects += 1

    async def _subscribe(self, ws: Any, sub_id: str) -> None:
        sub = self.subs[sub_id]
        sub.snapshot = {}
        message: dict[str, Any] = {
            "type": "sub",
            "id": sub_id,
            "pub": sub.pub,
            "params": sub.params,
        }
        if sub.since is not None:
            message["since"] = sub.since
        await ws.send(orjson.dumps(message).decode())

    async def _follow(self, ws: Any, drop_rate: float) -> None:
        while not self.stop.is_set():
            try:
                data = await asyncio.wait_for(ws.recv(), 0.1)
            except TimeoutError:
                if self.random.random() < drop_rate:
                    return  # drop the connection, resume later
                continue
            message = orjson.loads(data)
            if self.random.random() < drop_rate / 4:
                return  # drop mid-stream: whatever was in flight is lost and must be resumed
            kind = message["type"]
            if kind == "snap":
                sub = self.subs[message["sub"]]
                for d in message["docs"]:
                    sub.snapshot[d["id"]] = (d["v"], d["d"])
            elif kind == "ready":
                sub = self.subs[message["sub"]]
                sub.key = message["key"]
                if not message["resumed"]:
                    sub.docs, sub.snapshot = sub.snapshot, {}
                sub.since = {"epoch": message["epoch"], "pos": message["pos"]}
            elif kind == "tx":
                await self._apply(ws, message)
            elif kind == "reset":
                for sub_id, sub in self.subs.items():
                    if sub.key == message["key"]:
                        sub.since, sub.key = None, None
                        await self._subscribe(ws, sub_id)
            elif kind in ("nosub", "error"):
                raise AssertionError(message)

    async def _apply(self, ws: Any, tx: dict[str, Any]) -> None:
        for part in tx["parts"]:
            for sub_id, sub in self.subs.items():
                if sub.key != part["key"]:
                    continue
                if not all(self._change(sub, c) for c in part["ch"]):
                    self.gaps += 1  # resubscribe from the last position: the server repairs
                    # Keep the key: the replayed frames that precede ``ready`` carry it.
                    await ws.send(orjson.dumps({"type": "unsub", "id": sub_id}).decode())
                    await self._subscribe(ws, sub_id)
                    continue
                if sub.since is not None:
                    sub.since = {"epoch": sub.since["epoch"], "pos": tx["pos"]}

    @staticmethod
    def _change(sub: Subscription, change: dict[str, Any]) -> bool:
        doc_id, op, version = change["id"], change["op"], change.get("v")
        held = sub.docs.get(doc_id)
        newer = held is None or version is None or held[0] is None or version > held[0]
        if op == "put":
            if newer:
                sub.docs[doc_id] = (version, change["d"])
        elif op == "del":
            if held is not None and newer:
                del sub.docs[doc_id]
        elif op == "patch":
            if held is not None and held[0] == change["pv"]:
                sub.docs[doc_id] = (version, jsonpatch.apply_patch(held[1], change["p"]))
            elif newer:
                return False  # a gap: the base version is not what we hold
        return True

"""The dashboard example and ``livesync demo``, on the embedded default (no services needed).

* the shop's writes keep the KPI rows equal to what the orders table says;
* the acknowledge rule accepts and refuses what the page's alerts panel promises;
* ``livesync demo`` prints its URL, serves the page, its files and the client, and pushes
  the simulator's writes over the websocket, then stops after ``--duration``.

The browser tests of the same dashboard (two gateways, PostgreSQL, Redis, chromium) are
``examples/dashboard/test/`` (Node).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets
from sqlalchemy import func, select

from livesync import LiveSync
from livesync.demo import shop
from livesync.demo.app import register, setup
from livesync.demo.models import Alert, KpiDay, Order
from livesync.demo.simulator import Simulator
from livesync.publications import Context
from tests.gateway_support import TIMEOUT
from tests.test_gateway_processes import free_port
from tests.write_support import message

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveSync]:
    live = register(LiveSync(f"sqlite:///{tmp_path / 'shop.db'}", f"memory://{uuid.uuid4().hex}"))
    setup(live)
    yield live
    live.close()


def test_the_kpi_rows_agree_with_the_orders(live: LiveSync) -> None:
    simulator = Simulator(live, rate=1000, seed=3, alert_interval=0)
    for _ in range(400):
        simulator.step()
    simulator.writer.close()
    assert simulator.counts["refunds"] > 0 and simulator.counts["shipped"] > 0
    query = select(Order.status, func.count(), func.sum(Order.amount)).group_by(Order.status)
    with live.sessionmaker() as session:
        (day,) = session.scalars(select(KpiDay)).all()  # one UTC day (unless run at midnight)
        by_status = {s: (n, Decimal(str(a))) for s, n, a in session.execute(query)}
    assert day.orders == sum(n for n, _ in by_status.values())
    assert day.revenue == by_status["paid"][1] + by_status["shipped"][1]  # refunds cancel out
    assert (day.refunds, day.refunded) == by_status["refunded"]


def test_a_refund_marks_its_items_in_place_and_raises_an_alert(live: LiveSync) -> None:
    import random

    order = shop.transaction(live, lambda s: shop.place_order(s, random.Random(1)))
    shop.transaction(live, lambda s: shop.advance(s, order.id))
    with live.sessionmaker() as session:  # make it big enough for a critical alert
        big = session.get(Order, order.id)
        assert big is not None
        big.amount = Decimal("5000.00")
        session.commit()
    refunded = shop.transaction(live, lambda s: shop.refund(s, order.id))
    assert refunded is not None
    with live.sessionmaker() as session:
        stored = session.get(Order, order.id)
        assert stored is not None and stored.status == "refunded"
        assert all(item["refunded"] for item in stored.items)
        (alert,) = session.scalars(select(Alert)).all()
        assert (alert.severity, alert.order_id) == ("critical", order.id)
    assert shop.transaction(live, lambda s: shop.refund(s, order.id)) is None  # only once


def _acknowledge(
    live: LiveSync, who: str, alert_id: int, version: int = 1, **fields: Any
) -> dict[str, Any]:
    change = {"acknowledged": True, "acknowledged_by": who, **fields}
    write = message(
        type="update", id=uuid.uuid4().hex[:8], c="alerts", doc=str(alert_id), v=version, set=change
    )
    ctx = Context(live.authenticator(who, None), session="test")
    return live.execute(ctx, write, client="test-client").ack


def _alert(live: LiveSync, severity: str) -> int:
    alert: Alert = shop.transaction(live, lambda s: shop.raise_alert(s, severity, "disk full"))
    return alert.id


def test_anyone_may_acknowledge_a_warning_once_in_their_own_name(live: LiveSync) -> None:
    warning = _alert(live, "warning")
    assert _acknowledge(live, "grace", warning, acknowledged_by="linus")["code"] == "forbidden"
    assert _acknowledge(live, "grace", warning, message="fine")["code"] == "invalid"
    ack = _acknowledge(live, "grace", warning)
    assert ack["ok"] and ack["v"] == 2
    again = _acknowledge(live, "ada", warning, version=2)
    assert again["code"] == "forbidden" and "already acknowledged by grace" in again["message"]
    with live.sessionmaker() as session:
        stored = session.get(Alert, warning)
        assert stored is not None
        assert (stored.acknowledged, stored.acknowledged_by) == (True, "grace")
        assert stored.acknowledged_at is not None  # stamped by the model


def test_only_the_on_call_engineer_may_acknowledge_a_critical_alert(live: LiveSync) -> None:
    critical = _alert(live, "critical")
    refused = _acknowledge(live, "grace", critical)
    assert refused["code"] == "forbidden"
    assert refused["message"] == (
        "only the on-call engineer (Ada Lovelace) may acknowledge critical alerts"
    )
    assert _acknowledge(live, "mallory", critical, acknowledged_by="mallory")["code"] == (
        "forbidden"  # unknown names are guests
    )
    assert _acknowledge(live, "ada", critical)["ok"]


# ---------------------------------------------------------------------- livesync demo
def test_livesync_demo_serves_the_dashboard_with_live_data(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVESYNC_")}
    demo = subprocess.Popen(
        [sys.executable, "-m", "livesync.cli", "demo", "--port", str(port), "--duration", "6",
         "--rate", "40", "--seed", "1"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        page = _get_when_up(f"{base}/").decode()
        assert '<script type="module" src="/static/dashboard.js">' in page
        dashboard = _get(f"{base}/static/dashboard.js").decode()
        assert "from '/live/client/index.js'" in dashboard
        for path in ("/static/style.css", "/static/vendor/uPlot.iife.min.js", "/operators"):
            assert _get(base + path)
        assert b"export" in _get(f"{base}/live/client/index.js")
        docs, changes = asyncio.run(_watch(port, seconds=2.0))
        assert {"kpis", "ticks", "orders"} <= {d["c"] for d in docs + changes}
        assert any(c["c"] == "orders" for c in changes), "new orders arrive live"
        out, _ = demo.communicate(timeout=30 * TIMEOUT)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert demo.returncode == 0, out
    assert f"livesync demo: open http://127.0.0.1:{port}/" in out
    assert "sqlite:///livesync-demo.db + memory://" in out
    assert "livesync demo: stopped after" in out
    assert (tmp_path / "livesync-demo.db").exists()


async def _watch(port: int, seconds: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Subscribe like the page does; the snapshots' documents and the live changes, until
    a change to an order arrives (or ``seconds`` and a few timeouts pass)."""
    async with websockets.connect(f"ws://127.0.0.1:{port}/live") as ws:
        await ws.send(orjson.dumps({"type": "hello", "v": [1], "token": "grace"}).decode())
        subs = {"k": ("kpis", {}), "t": ("ticks", {}), "o": ("recent_orders", {"limit": 5})}
        for sub_id, (pub, params) in subs.items():
            sub = {"type": "sub", "id": sub_id, "pub": pub, "params": params}
            await ws.send(orjson.dumps(sub).decode())
        docs: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []
        ready: set[str] = set()
        deadline = time.monotonic() + seconds + 4 * TIMEOUT
        while time.monotonic() < deadline and not any(c["c"] == "orders" for c in changes):
            msg = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            if msg["type"] == "snap":
                docs.extend(msg["docs"])
            elif msg["type"] == "ready":
                ready.add(msg["sub"])
            elif msg["type"] == "nosub":
                raise AssertionError(msg)
            elif msg["type"] == "tx" and len(ready) == len(subs):
                changes.extend(c for part in msg["parts"] for c in part["ch"])
        return docs, changes


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body


def _get_when_up(url: str) -> bytes:
    deadline = time.monotonic() + 6 * TIMEOUT
    while True:
        try:
            return _get(url)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)

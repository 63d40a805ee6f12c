"""The gateway the JavaScript client's integration and browser tests talk to.

``livesync serve tests.js.app:app``, configured by LIVESYNC_* variables from the test
harness (client-js/test/integration/harness.js). Besides the websocket it serves the client's
source (``/client/``) and the browser test page (``/``), so the page's Origin is the
gateway's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from livesync import LiveSync
from livesync.publications import Context
from tests.models import Item

ROOT = Path(__file__).resolve().parents[2]

live = LiveSync()
live.collection(Item, publish=True)


@live.publication("items_min_qty")
def items_min_qty(ctx: Context, min_qty: int) -> Any:
    return select(Item).where(Item.qty >= min_qty)


@live.publication("top_items")
def top_items(ctx: Context, n: int = 3) -> Any:
    return select(Item).order_by(Item.qty.desc()).limit(n)


app = live.app
app.static("/client/", str(ROOT / "client-js" / "src"))
app.static("/", str(ROOT / "client-js" / "test" / "browser" / "page.html"), name="page")

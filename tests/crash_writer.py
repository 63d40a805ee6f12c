"""A writer process that dies between COMMIT and publish; driven by ``test_crash_recovery.py``.

Usage: ``python -m tests.crash_writer DATABASE_URL BROKER_URL TOPIC``

1. Inserts items 1-3 in one transaction, which is published normally, and waits until its
   outbox janitor has deleted that row (so the outbox holds nothing already published).
2. Registers its own ``after_commit`` listener, which SIGKILLs the process, then updates
   item 1 and inserts item 4 in one transaction. SQLAlchemy fires ``after_commit`` after the
   database COMMIT and before ``after_transaction_end``, where livesync publishes: the change
   set is committed (with its outbox row) but never reaches the broker.

The tables must already exist (the test creates them with ``make_live``).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from sqlalchemy import event

from livesync import LiveSync
from tests.models import Item

KILLED_MARK = "committed; killing myself before the publish"


def wait_for_empty_outbox(live: LiveSync, timeout: float) -> None:
    relay = live.relay()  # used only to count outbox rows, never started
    deadline = time.monotonic() + timeout
    while relay.backlog():
        if time.monotonic() > deadline:
            raise SystemExit("the janitor did not delete the published outbox row")
        time.sleep(0.02)


def main(database_url: str, broker_url: str, topic: str) -> None:
    live = LiveSync(database_url, broker_url, topic=topic, outbox_cleanup_interval=0.05)
    live.collection(Item)
    with live.sessionmaker() as session:
        session.add_all([Item(id=i, title=f"item {i}", data={"n": i}) for i in (1, 2, 3)])
        session.commit()
    wait_for_empty_outbox(live, timeout=10)

    def die(session: Any) -> None:
        print(KILLED_MARK, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    event.listen(live.sessionmaker, "after_commit", die)
    with live.sessionmaker() as session:
        item = session.get(Item, 1)
        assert item is not None
        item.title = "updated, then crashed"
        item.data["crash"] = True  # in-place JSON mutation, found by livesync's snapshot
        session.add(Item(id=4, title="inserted, then crashed"))
        session.commit()
    raise SystemExit("still alive after the commit: the after_commit listener did not run")


if __name__ == "__main__":
    main(*sys.argv[1:4])

"""The simulator: a stream of shop transactions at a steady rate, with a progress line.

``python -m examples.dashboard.simulator --rate 50`` (or ``python -m livesync.demo.simulator``)
writes through livesync's instrumented sessions, configured by ``LIVESYNC_DATABASE_URL``
and ``LIVESYNC_BROKER_URL`` like any writer: orders arrive, get paid and shipped, some are
refunded (big refunds raise alerts), and alerts nobody acknowledged resolve themselves
after a while. ``livesync demo`` runs the same :class:`Simulator` in a thread beside the
gateway.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import TextIO

from sqlalchemy import select

from ..live import LiveSync
from . import shop
from .models import Order

OPS_ALERTS = (
    ("info", "Checkout latency p95 back under 400 ms"),
    ("info", "Carrier pickup moved to 16:30 at warehouse B"),
    ("warning", "Payment provider retries above 2% for 5 minutes"),
    ("warning", "Stock running low: KB-87 mechanical keyboard"),
    ("warning", "Carrier API timeouts above 1% (DHL)"),
    ("critical", "Payment provider errors: 14% of card payments failing"),
    ("critical", "Warehouse B scanners offline: shipments paused"),
)


class Simulator:
    """Writes one shop transaction at a time, ``rate`` of them per second.

    Not thread-safe: one thread calls :meth:`step` (or :meth:`run`); others may read
    :attr:`counts` and call :meth:`stop`. ``alert_interval`` spaces out alerts so that a
    fast simulator does not bury the alerts panel; ``resolve_after`` is how long an
    alert stays open before the simulator auto-resolves it.
    """

    def __init__(
        self,
        live: LiveSync,
        rate: float = 20.0,
        seed: int | None = None,
        alert_interval: float = 10.0,
        resolve_after: float = 120.0,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.live = live
        self.writer = shop.Writer(live)
        self.rate = rate
        self.random = random.Random(seed)
        self.alert_interval = alert_interval
        self.resolve_after = resolve_after
        self.counts: Counter[str] = Counter()
        self.started = time.monotonic()
        self._stop = threading.Event()
        # Ids of orders that can still move on. Ids, not objects: every object a session
        # holds costs each flush a look at its JSON columns (livesync's in-place capture).
        self._new: deque[int] = deque(maxlen=1000)
        self._paid: deque[int] = deque(maxlen=1000)
        self._shipped: deque[int] = deque(maxlen=1000)
        self._last_alert = 0.0
        self._last_resolve = time.monotonic()
        self._load_pools()

    def _load_pools(self) -> None:
        """Pick up where an earlier run left off: recent orders that can still move on."""
        pools = {"new": self._new, "paid": self._paid, "shipped": self._shipped}
        with self.live.sessionmaker() as session:
            for status, pool in pools.items():
                recent = select(Order.id).where(Order.status == status).order_by(Order.id.desc())
                pool.extend(reversed(session.scalars(recent.limit(300)).all()))

    # ------------------------------------------------------------------ one transaction
    def step(self) -> str:
        """Commit one transaction; returns what it was (a key of :attr:`counts`)."""
        now = time.monotonic()
        if now - self._last_resolve >= 5.0:
            self._last_resolve = now
            resolved = self.writer.run(lambda s: shop.auto_resolve(s, self.resolve_after))
            return self._count("resolved", resolved)
        roll = self.random.random()
        if roll < 0.28 and self._new:
            return self._move(self._new, self._paid, "paid")
        if roll < 0.46 and self._paid:
            return self._move(self._paid, self._shipped, "shipped")
        if roll < 0.50 and (self._paid or self._shipped):
            return self._refund()
        if roll < 0.51 and self._alert_due():
            severity, message = self.random.choice(OPS_ALERTS)
            self.writer.run(lambda s: shop.raise_alert(s, severity, message))
            self._last_alert = time.monotonic()
            return self._count("alerts")
        self._new.append(self.writer.run(lambda s: shop.place_order(s, self.random)).id)
        return self._count("orders")

    def _move(self, source: deque[int], target: deque[int], kind: str) -> str:
        order_id = source.popleft()
        moved = self.writer.run(lambda s: shop.advance(s, order_id) is not None)
        if moved:
            target.append(order_id)
        return self._count(kind if moved else "skipped")

    def _refund(self) -> str:
        use_paid = self._paid and (not self._shipped or self.random.random() < 0.5)
        order_id = (self._paid if use_paid else self._shipped).pop()
        alert = self._alert_due()
        done = self.writer.run(lambda s: shop.refund(s, order_id, alert=alert))
        if done is None:
            return self._count("skipped")
        if done[1] is not None:
            self._last_alert = time.monotonic()
            self.counts["alerts"] += 1
        return self._count("refunds")

    def _alert_due(self) -> bool:
        return time.monotonic() - self._last_alert >= self.alert_interval

    def _count(self, kind: str, amount: int = 1) -> str:
        self.counts[kind] += amount
        self.counts["writes"] += 1
        return kind

    # ------------------------------------------------------------------ running
    def run(self, duration: float | None = None, progress: Progress | None = None) -> None:
        """Write at :attr:`rate` until :meth:`stop` or ``duration`` seconds.

        Steps follow a fixed schedule, so the rate holds even when a step is slow; after a
        stall of more than a second the schedule restarts instead of bursting to catch up.
        """
        self.started = start = time.monotonic()
        done = 0
        while not self._stop.is_set():
            now = time.monotonic()
            if duration is not None and now - self.started >= duration:
                break
            due = start + done / self.rate
            if due > now:
                self._stop.wait(due - now)
                continue
            if now - due > 1.0:
                start, done = now, 0
            self.step()
            done += 1
            if progress is not None:
                progress.update(self)
        self.writer.close()
        if progress is not None:
            progress.update(self, force=True)

    def stop(self) -> None:
        self._stop.set()

    def rate_now(self) -> float:
        """Average transactions per second since :meth:`run` started."""
        elapsed = time.monotonic() - self.started
        return self.counts["writes"] / elapsed if elapsed > 0 else 0.0


class Progress:
    """One status line: rewritten in place on a terminal, printed every ``interval`` s elsewhere.

    The rate shown is that of the last few seconds, so a stall shows at once.
    """

    def __init__(self, out: TextIO, prefix: str = "", interval: float | None = None) -> None:
        self.out = out
        self.prefix = prefix
        self.tty = out.isatty()
        self.interval = interval if interval is not None else (0.25 if self.tty else 10.0)
        self._shown = 0.0 if self.tty else time.monotonic()  # a log gets its first line later
        self._width = 0
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, simulator: Simulator, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._shown < self.interval:
            return
        self._shown = now
        samples = self._samples
        samples.append((now, simulator.counts["writes"]))
        while len(samples) > 2 and now - samples[0][0] > max(3.0, self.interval):
            samples.popleft()
        (then, before), (_, writes) = samples[0], samples[-1]
        rate = (writes - before) / (now - then) if now > then else simulator.rate_now()
        line = self.prefix + describe(simulator, rate=rate)
        if self.tty:
            self.out.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.out.write("\n")
            self.out.flush()


def describe(simulator: Simulator, align: bool = True, rate: float | None = None) -> str:
    """``12,345 writes  199.8/s | orders 5,432  paid 3,210 ...``: the totals so far, at
    ``rate`` (default: the average since the start); ``align`` pads to fixed widths, so a
    line rewritten in place does not jitter."""
    c = simulator.counts
    per_second = simulator.rate_now() if rate is None else rate
    writes = f"{c['writes']:>8,}" if align else f"{c['writes']:,}"
    shown = f"{per_second:6.1f}" if align else f"{per_second:.1f}"
    return (
        f"{writes} writes {shown}/s | orders {c['orders']:,}  "
        f"paid {c['paid']:,}  shipped {c['shipped']:,}  refunds {c['refunds']:,}  "
        f"alerts {c['alerts']:,}  auto-resolved {c['resolved']:,}"
    )


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    """The simulator's command line; writes until Ctrl-C or ``--duration``."""
    from .app import register, setup

    parser = argparse.ArgumentParser(
        prog="python -m examples.dashboard.simulator",
        description="Write shop transactions (orders, payments, refunds, alerts) at a steady "
        "rate, through livesync. Configured by LIVESYNC_DATABASE_URL and LIVESYNC_BROKER_URL.",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="transactions/s (default 20)")
    parser.add_argument("--duration", type=float, default=None, help="seconds (default: forever)")
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument("--database-url", help="default: $LIVESYNC_DATABASE_URL or SQLite")
    parser.add_argument("--broker-url", help="default: $LIVESYNC_BROKER_URL or memory://")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    args = parser.parse_args(argv)

    live = register(LiveSync(args.database_url, args.broker_url))
    setup(live)
    if live.settings.broker_url.startswith("memory:"):
        out.write(
            "note: broker memory://, so gateways in other processes see these writes through "
            "their outbox relay (after LIVESYNC_OUTBOX_GRACE seconds); use Redis to push them "
            "at once\n"
        )
    simulator = Simulator(live, args.rate, seed=args.seed)
    progress = None if args.quiet else Progress(out)
    out.write(f"simulating {args.rate:g} transactions/s on {live.engine.url!r} (Ctrl-C stops)\n")
    out.flush()
    try:
        simulator.run(args.duration, progress)
    except KeyboardInterrupt:
        pass
    finally:
        if progress is not None:
            progress.close()
        out.write(describe(simulator, align=False) + "\n")
        live.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The websocket client swarm: K connections in one or more Node processes.

``bench/fanout_clients.mjs`` holds the connections and counts deliveries, latencies (in
1%-wide histograms) and bytes per phase; :class:`Swarm` drives one such process over its
stdin/stdout, and :class:`Swarms` splits K over several (``CLIENTS_PER_NODE`` each) and
merges their reports, so that one single-threaded client process is not what limits a
figure at K = 5,000.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
# Above this many connections the swarm is split over several Node processes, so that one
# single-threaded client process is not what limits the figures at K = 5,000.
CLIENTS_PER_NODE = 2500
CONNECT_CONCURRENCY = 50


class Swarm:
    """The Node process holding K websocket connections; see fanout_clients.mjs.

    ``concurrency`` is how many connections it opens at once (the ramp-up; default 50).
    """

    def __init__(
        self, url: str, clients: int, mode: str, concurrency: int = CONNECT_CONCURRENCY
    ) -> None:
        self.proc = subprocess.Popen(
            ["node", str(BENCH / "fanout_clients.mjs"), "--url", url, "--clients", str(clients),
             "--mode", mode, "--pub", "bench_fanout_items", "--concurrency", str(concurrency)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=BENCH,
        )  # fmt: skip
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.lines.put(json.loads(line))

    def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"client swarm: no {event!r} in {timeout}s") from None
            if message.get("event") == event:
                return message

    def report(self) -> dict[str, Any]:
        self.command("report")
        return self.wait("report", 60)

    def count(self) -> int:
        """Deliveries counted so far in the current phase."""
        self.command("count")
        return int(self.wait("count", 60)["count"])

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.command("quit")
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def histogram_quantile(hist: dict[int, int], fraction: float) -> float | None:
    """The ``fraction`` quantile (ms) of a fanout_clients.mjs histogram: bucket ``b`` holds
    latencies up to ``0.01 * 1.01**b`` ms, so the answer is within 1% of the exact one."""
    total = sum(hist.values())
    if not total:
        return None
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen > fraction * total:
            return 0.01 * 1.01**bucket
    return 0.01 * 1.01 ** max(hist)


def merge_phases(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """One phase summary from those of several Node processes (counts add up; percentiles
    come from the merged histogram; one process's own summary is returned unchanged)."""
    if len(phases) == 1:
        return phases[0]
    hist: dict[int, int] = {}
    for phase in phases:
        for bucket, count in phase.get("hist", {}).items():
            hist[int(bucket)] = hist.get(int(bucket), 0) + count
    maxima = [p["max_ms"] for p in phases if p["max_ms"] is not None]
    return {
        "count": sum(p["count"] for p in phases),
        "bytes": sum(p["bytes"] for p in phases),
        "samples": sum(p["samples"] for p in phases),
        "seconds": max(p["seconds"] for p in phases),
        "p50_ms": histogram_quantile(hist, 0.5),
        "p90_ms": histogram_quantile(hist, 0.9),
        "p99_ms": histogram_quantile(hist, 0.99),
        "max_ms": max(maxima) if maxima else None,
        "hist": hist,
    }


class Swarms:
    """K connections split over ``processes`` Node processes (:class:`Swarm`), one interface.

    One Node process is single-threaded: at K = 5,000 it may be what limits deliveries/s,
    so the benchmark splits big swarms. The connect ramp's concurrency is divided between
    the processes, so the server never sees more than ``CONNECT_CONCURRENCY`` handshakes at
    once. Answers are merged: counts add up, latency percentiles are merged histograms.
    """

    def __init__(self, url: str, clients: int, mode: str, processes: int = 1) -> None:
        sizes = [clients // processes + (i < clients % processes) for i in range(processes)]
        concurrency = max(1, CONNECT_CONCURRENCY // processes)
        self.swarms = [Swarm(url, n, mode, concurrency) for n in sizes if n]

    @property
    def pids(self) -> list[int]:
        return [swarm.proc.pid for swarm in self.swarms]

    def command(self, line: str) -> None:
        for swarm in self.swarms:
            swarm.command(line)

    def wait_connected(self, timeout: float) -> dict[str, Any]:
        """Wait until every process has opened its connections; totals of their answers."""
        ups = [swarm.wait("connected", timeout) for swarm in self.swarms]
        return {
            "connected": sum(up["connected"] for up in ups),
            "failures": sum(up["failures"] for up in ups),
            "seconds": max(up["seconds"] for up in ups),
        }

    def count(self) -> int:
        return sum(swarm.count() for swarm in self.swarms)

    def report(self) -> dict[str, Any]:
        """The processes' reports merged: phases by name, counters added up."""
        reports = [swarm.report() for swarm in self.swarms]
        codes: dict[str, int] = {}
        for report in reports:
            for code, count in report["closeCodes"].items():
                codes[code] = codes.get(code, 0) + count
        names = {name for report in reports for name in report["phases"]}
        return {
            "phases": {
                name: merge_phases([r["phases"][name] for r in reports if name in r["phases"]])
                for name in names
            },
            "closedUnexpectedly": sum(r["closedUnexpectedly"] for r in reports),
            "closeCodes": codes,
        }

    def close(self) -> None:
        for swarm in self.swarms:
            swarm.close()

"""Fan-out of the livesync gateway against a bare websockets relay, with K clients.

For each server (``livesync``: ``livesync serve bench.fanout_app:live`` on PostgreSQL +
Redis; ``raw``: ``bench/baselines/raw_websockets.py`` relaying a Redis pub/sub channel) and
each K, one fresh server process and one Node process holding K websocket connections
(``bench/fanout_clients.mjs``; livesync clients do the v1 handshake and subscribe to the
publication ``bench_fanout_items``). Measured, in this order:

1. **memory per idle connection**: server RSS with K connected (subscribed) clients minus
   its RSS before any connection, divided by K;
2. **latency** at a steady rate (20 writes/s by default): the writer stores its wall-clock
   time in the written data (livesync: ``data={"t": ts}`` of an UPDATE, taken just before
   the ORM commit, so the figure includes the UPDATE + COMMIT round trips, whose own p50 is
   reported as ``commit_ms``; raw: in the JSON it PUBLISHes), and each client computes
   ``now - t`` on receipt (same clock, same machine); p50/p99 over every delivery;
3. **saturation**: the writer writes as fast as it can (capped at ``--sat-rate``) for a few
   seconds; delivered messages/s = deliveries counted by all clients during that window /
   window; server CPU time per delivery = the server process's CPU time (utime + stime from
   /proc) over the window / deliveries in the window. The CPU of the clients, the writer,
   Redis and the whole machine over the same window says what limited the figure.

The machine is small and noisy (2 shared cores for server, clients, writer, PostgreSQL and
Redis), so the report puts the ratios livesync/raw first; both run in the same invocation.

A third, optional server, ``socketio`` (``bench/baselines/socketio_server.py``: a
python-socketio ``AsyncServer`` under uvicorn whose ``AsyncRedisManager`` relays what the
writer emits through ``socketio.RedisManager``; its clients speak Engine.IO v4 over a plain
websocket), needs ``pip install python-socketio uvicorn`` (not project dependencies).

Usage: ``python bench/fanout.py [--quick] [--clients 100,1000] [--servers livesync,raw]
[--json PATH] [--py-spy DIR]`` (needs ``npm install`` in ``bench/`` once); ``--servers``
takes any of ``livesync``, ``raw``, ``socketio``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.procs import (
    busiest,
    cpu_seconds,
    free_port,
    http_ok,
    machine_busy,
    machine_info,
    redis_pid,
    rss_bytes,
    stop_process,
    tcp_open,
    wait_until,
)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
POSTGRES_URL = os.environ.get(
    "LIVESYNC_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# Database 14: the test suite uses 15.
REDIS_URL = os.environ.get("LIVESYNC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
ROWS = 10  # rows the livesync writer cycles through (the snapshot every client reads)
# One topic per invocation: the writer's LiveSync (bench.fanout_app) is built once, at import.
RUN_ID = uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class Profile:
    latency_seconds: float
    saturation_seconds: float
    latency_rate: float
    settle: float  # seconds to let a server settle before reading its RSS


FULL = Profile(latency_seconds=10.0, saturation_seconds=8.0, latency_rate=20.0, settle=2.0)
QUICK = Profile(latency_seconds=3.0, saturation_seconds=3.0, latency_rate=20.0, settle=1.0)


class Swarm:
    """The Node process holding K websocket connections; see fanout_clients.mjs."""

    def __init__(self, url: str, clients: int, mode: str) -> None:
        self.proc = subprocess.Popen(
            ["node", str(BENCH / "fanout_clients.mjs"), "--url", url, "--clients", str(clients),
             "--mode", mode, "--pub", "bench_fanout_items"],
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

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.command("quit")
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------------- servers
class Server:
    """A server process under test and a writer feeding it."""

    name = ""
    mode = ""  # the swarm's --mode
    proc: subprocess.Popen[Any]
    url: str

    def write(self, slot: int = 0) -> float:
        """One write carrying the current time; returns the commit/publish duration (s).

        Concurrent writers pass distinct ``slot`` numbers (livesync: the row they update).
        """
        raise NotImplementedError

    def extra(self) -> dict[str, Any]:
        return {}


class LiveSyncServer(Server):
    name, mode = "livesync", "livesync"

    def __init__(self, topic: str) -> None:
        env = {"LIVESYNC_DATABASE_URL": POSTGRES_URL, "LIVESYNC_BROKER_URL": REDIS_URL,
               "LIVESYNC_TOPIC": topic}  # fmt: skip
        os.environ.update(env)  # the writer's LiveSync (bench.fanout_app) reads them too
        sys.path.insert(0, str(ROOT))
        from sqlalchemy import inspect

        from bench import fanout_app
        from livesync.outbox import OUTBOX_TABLE

        self.app = fanout_app
        self.live = fanout_app.live
        self.topic = topic
        engine = self.live.engine
        if not inspect(engine).has_table(OUTBOX_TABLE):
            self.live.upgrade()
        table = fanout_app.FanoutItem.__table__
        table.drop(engine, checkfirst=True)
        table.create(engine)
        with self.live.sessionmaker() as session, session.begin():
            session.add_all(
                fanout_app.FanoutItem(id=i, name=f"item {i}", data={"t": 0}) for i in range(ROWS)
            )
        self.live._publisher.flush()
        self.counter = 0
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/live"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "livesync.cli", "serve", "bench.fanout_app:live",
             "--port", str(self.port)],
            cwd=ROOT, env={**os.environ, **env},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        health = f"http://127.0.0.1:{self.port}/healthz"
        wait_until(lambda: http_ok(health), 30, "livesync serve", self.proc)

    def write(self, slot: int = 0) -> float:
        item_id = slot % ROWS  # one row per writer thread: no optimistic-version conflicts
        with self.live.sessionmaker() as session:
            item = session.get(self.app.FanoutItem, item_id)
            t = time.time()
            item.data = {"t": t}
            session.commit()
        return time.time() - t

    def metrics(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=20) as response:
            lines = response.read().decode().splitlines()
        return {
            name: float(value)
            for name, value in (line.split() for line in lines if not line.startswith("#"))
        }

    def extra(self) -> dict[str, Any]:
        try:
            return {"metrics": self.metrics()}
        except OSError as exc:  # a saturated event loop answers HTTP late, or not at all
            return {"metrics": f"unavailable: {exc}"}

    def close(self) -> None:
        stop_process(self.proc)
        self.live._publisher.flush()
        engine = self.live.engine
        self.app.FanoutItem.__table__.drop(engine, checkfirst=True)
        with redis.Redis.from_url(REDIS_URL) as client:
            keys = self.live.broker.keys(self.topic)
            if keys:
                client.delete(*keys)


def baseline_frame(n: int, t: float) -> dict[str, Any]:
    """What the baselines deliver: the shape and about the size of livesync's frame for one
    updated row, plus the writer's time ``t``."""
    change = {"c": "bench_fanout_items", "id": str(n % ROWS), "op": "patch", "v": n + 1,
              "pv": n, "p": [{"op": "replace", "path": "/data/t", "value": t}]}  # fmt: skip
    parts = [{"key": "0123456789abcdef", "ch": [change]}]
    return {"type": "tx", "pos": n, "parts": parts, "t": t}


class RawServer(Server):
    name, mode = "raw", "raw"

    def __init__(self, topic: str) -> None:
        self.channel = topic
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "baselines" / "raw_websockets.py"), "--port",
             str(self.port), "--redis-url", REDIS_URL, "--channel", self.channel],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # asyncio logs client resets
        )  # fmt: skip
        wait_until(lambda: tcp_open(self.port), 30, "raw websockets server", self.proc)
        self.redis = redis.Redis.from_url(REDIS_URL)
        self.counter = 0

    def write(self, slot: int = 0) -> float:
        self.counter += 1
        t = time.time()
        frame = baseline_frame(self.counter, t)
        self.redis.publish(self.channel, json.dumps(frame, separators=(",", ":")))
        return time.time() - t

    def close(self) -> None:
        stop_process(self.proc)
        self.redis.close()


class SocketIOServer(Server):
    """python-socketio (``bench/baselines/socketio_server.py``) fed by its Redis manager."""

    name, mode = "socketio", "socketio"

    def __init__(self, topic: str) -> None:
        import socketio  # not a project dependency: pip install python-socketio uvicorn

        self.channel = topic
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket"
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "baselines" / "socketio_server.py"), "--port",
             str(self.port), "--redis-url", REDIS_URL, "--channel", self.channel],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(lambda: tcp_open(self.port), 30, "python-socketio server", self.proc)
        # The writer side of the manager: emit() PUBLISHes the JSON the server's manager reads.
        self.manager = socketio.RedisManager(REDIS_URL, channel=self.channel, write_only=True)
        self.counter = 0

    def write(self, slot: int = 0) -> float:
        # The raw baseline's frame, sent to every client as the event "tx" (42["tx",{...}]).
        self.counter += 1
        t = time.time()
        self.manager.emit("tx", baseline_frame(self.counter, t))
        return time.time() - t

    def close(self) -> None:
        stop_process(self.proc)
        if (client := getattr(self.manager, "redis", None)) is not None:  # set at first emit
            client.close()


SERVERS: dict[str, Callable[[str], Server]] = {
    "livesync": LiveSyncServer,
    "raw": RawServer,
    "socketio": SocketIOServer,
}


@contextlib.contextmanager
def running(name: str) -> Iterator[Server]:
    server = SERVERS[name](f"bench-fanout-{RUN_ID}")
    try:
        yield server
    finally:
        server.close()


# ---------------------------------------------------------------------------- measuring
def write_for(
    server: Server, seconds: float, rate: float, slot: int = 0
) -> tuple[int, list[float]]:
    """Write at ``rate`` per second (or as fast as possible below it) for ``seconds``."""
    interval = 1.0 / rate
    start = time.perf_counter()
    next_at = start
    durations: list[float] = []
    while True:
        now = time.perf_counter()
        if now - start >= seconds:
            break
        if now < next_at:
            time.sleep(next_at - now)
        durations.append(server.write(slot))
        next_at += interval
        if time.perf_counter() - next_at > 0.05:
            next_at = time.perf_counter()  # behind: do not burst to catch up
    return len(durations), durations


def write_parallel(server: Server, seconds: float, rate: float, writers: int) -> int:
    """``write_for`` in ``writers`` threads (commits wait on round trips: threads overlap)."""
    counts: list[int] = []
    threads = [
        threading.Thread(
            target=lambda i=i: counts.append(write_for(server, seconds, rate / writers, i)[0])
        )
        for i in range(writers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


@dataclass
class Result:
    server: str
    clients: int
    connected: int
    connect_seconds: float
    rss_idle_mb: float
    rss_connected_mb: float
    kib_per_connection: float
    latency: dict[str, Any]
    commit_ms_p50: float
    saturation: dict[str, Any]
    limited_by: str
    notes: list[str] = field(default_factory=list)


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    snapshot = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            snapshot[name] = cpu_seconds(pid, children=name != "writer")
    busy, total = machine_busy()
    snapshot["machine_busy"], snapshot["machine_total"] = busy, total
    return snapshot


def measure(
    name: str, clients: int, profile: Profile, sat_rate: float, writers: int, spy: Path | None
) -> Result:
    notes: list[str] = []
    with running(name) as server:
        pid = server.proc.pid
        time.sleep(profile.settle)
        rss_idle = rss_bytes(pid)
        swarm = Swarm(server.url, clients, server.mode)
        try:
            up = swarm.wait("connected", 60 + clients * 0.2)
            if up["failures"]:
                notes.append(f"{up['failures']} of {clients} connections failed")
            time.sleep(profile.settle)
            rss_connected = rss_bytes(pid)
            per_conn = (rss_connected - rss_idle) / max(1, up["connected"]) / 1024

            # -- latency at a steady rate
            lat_cpu = cpu_seconds(pid)
            swarm.command("phase latency")
            _, durations = write_for(server, profile.latency_seconds, profile.latency_rate)
            time.sleep(1.0)  # stragglers
            swarm.command("phase idle")
            lat_cpu = cpu_seconds(pid) - lat_cpu
            time.sleep(0.5)

            # -- saturation
            pids = {"server": pid, "clients": swarm.proc.pid, "writer": os.getpid()}
            rpid = redis_pid(REDIS_URL)
            if rpid is not None:
                pids["redis"] = rpid
            for proc in Path("/proc").glob("[0-9]*/comm"):
                with contextlib.suppress(OSError):
                    if proc.read_text().strip() == "postgres":
                        pids[f"postgres-{proc.parent.name}"] = int(proc.parent.name)
            spying = None
            if spy is not None:
                spy.mkdir(parents=True, exist_ok=True)
                out = spy / f"{name}-{clients}.txt"  # collapsed stacks (flamegraph.pl input)
                spying = subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw",
                     "-d", str(int(profile.saturation_seconds)), "-o", str(out),
                     "--pid", str(busiest(pid))],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            before = cpu_snapshot(pids)
            swarm.command("phase saturation")
            t0 = time.perf_counter()
            writes = write_parallel(server, profile.saturation_seconds, sat_rate, writers)
            swarm.command("phase after")
            elapsed = time.perf_counter() - t0
            after = cpu_snapshot(pids)
            if spying is not None:
                spying.wait(timeout=60)
            extra = server.extra()
            report = swarm.report()
        finally:
            swarm.close()
    lat, sat = report["phases"]["latency"], report["phases"]["saturation"]
    cpu = {k: (after[k] - before[k]) / elapsed for k in pids if k in after and k in before}
    postgres = [k for k in cpu if k.startswith("postgres-")]
    if postgres:
        cpu["postgres"] = sum(cpu.pop(k) for k in postgres)
    machine = (after["machine_busy"] - before["machine_busy"]) / (
        after["machine_total"] - before["machine_total"]
    )
    deliveries = sat["count"]
    expected_latency = round(profile.latency_seconds * profile.latency_rate) * up["connected"]
    if lat["count"] < 0.99 * expected_latency:
        notes.append(f"latency phase: {lat['count']} of ~{expected_latency} deliveries arrived")
    if report["closedUnexpectedly"]:
        notes.append(f"connections closed by the server: {report['closeCodes']}")
    saturation = {
        "seconds": elapsed,
        "writes": writes,
        "writes_per_s": writes / elapsed,
        "offered_per_s": writes * up["connected"] / elapsed,
        "deliveries": deliveries,
        "delivered_per_s": deliveries / elapsed,
        "frame_bytes": sat["bytes"] / deliveries if deliveries else None,
        "server_cpu_us_per_delivery": (
            (after["server"] - before["server"]) / deliveries * 1e6 if deliveries else None
        ),
        "cpu_cores": cpu,
        "machine_busy": machine,
        "latency_p50_ms": sat["p50_ms"],
        "latency_p99_ms": sat["p99_ms"],
        **extra,
    }
    return Result(
        server=name,
        clients=clients,
        connected=up["connected"],
        connect_seconds=up["seconds"],
        rss_idle_mb=rss_idle / 2**20,
        rss_connected_mb=rss_connected / 2**20,
        kib_per_connection=per_conn,
        latency={
            **{k: lat[k] for k in ("count", "p50_ms", "p90_ms", "p99_ms", "max_ms")},
            "server_cpu_us_per_delivery": lat_cpu / lat["count"] * 1e6 if lat["count"] else None,
        },
        commit_ms_p50=statistics.median(durations) * 1000 if durations else 0.0,
        saturation=saturation,
        limited_by=limit(saturation),
        notes=notes,
    )


def limit(sat: dict[str, Any]) -> str:
    """A best guess at what capped the saturation figure, from who used the CPU."""
    cpu = sat["cpu_cores"]
    reasons = []
    if sat["delivered_per_s"] >= 0.95 * sat["offered_per_s"]:
        reasons.append(f"writer ({sat['writes_per_s']:.0f} writes/s, {cpu['writer']:.2f} cores)")
    if cpu.get("server", 0) >= 0.85:
        reasons.append(f"server CPU ({cpu['server']:.2f} of its 1 core)")
    if cpu.get("clients", 0) >= 0.85:
        reasons.append(f"client CPU ({cpu['clients']:.2f} of 1 core)")
    if sat["machine_busy"] >= 0.9:
        reasons.append(f"machine CPU ({sat['machine_busy']:.0%} of 2 cores)")
    return "; ".join(reasons) or "unclear (no process near a full core)"


# ---------------------------------------------------------------------------- reporting
def ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}"


def print_tables(results: list[Result]) -> None:
    by = {(r.server, r.clients): r for r in results}
    for k in sorted({r.clients for r in results}):
        rows = [r for r in results if r.clients == k]
        print(f"\nK = {k} clients")
        names = [r.server for r in rows]
        print(f"{'':<34}" + "".join(f"{n:>14}" for n in names) + (
            f"{'livesync/raw':>14}" if {"livesync", "raw"} <= set(names) else ""))  # fmt: skip
        metrics: list[tuple[str, Callable[[Result], float | None], str]] = [
            ("connected", lambda r: r.connected, "{:.0f}"),
            ("delivered msg/s (saturation)", lambda r: r.saturation["delivered_per_s"], "{:.0f}"),
            ("  writes/s during saturation", lambda r: r.saturation["writes_per_s"], "{:.0f}"),
            ("  server CPU cores", lambda r: r.saturation["cpu_cores"].get("server"), "{:.2f}"),
            ("  writer + postgres CPU cores",
             lambda r: r.saturation["cpu_cores"]["writer"]
             + r.saturation["cpu_cores"].get("postgres", 0), "{:.2f}"),
            ("  client CPU cores", lambda r: r.saturation["cpu_cores"].get("clients"), "{:.2f}"),
            ("  frame bytes", lambda r: r.saturation["frame_bytes"], "{:.0f}"),
            ("server CPU us/delivery", lambda r: r.saturation["server_cpu_us_per_delivery"],
             "{:.1f}"),
            ("  same, at the steady rate", lambda r: r.latency["server_cpu_us_per_delivery"],
             "{:.1f}"),
            ("latency p50 ms (steady)", lambda r: r.latency["p50_ms"], "{:.1f}"),
            ("latency p99 ms (steady)", lambda r: r.latency["p99_ms"], "{:.1f}"),
            ("  writer commit/publish ms p50", lambda r: r.commit_ms_p50, "{:.2f}"),
            ("RSS KiB per idle connection", lambda r: r.kib_per_connection, "{:.1f}"),
            ("  server RSS MiB, 0 / K conns", lambda r: r.rss_idle_mb, "{:.0f}"),
        ]  # fmt: skip
        for label, get, fmt in metrics:
            values = [get(r) for r in rows]
            cells = "".join(f"{'-' if v is None else fmt.format(v):>14}" for v in values)
            if label.startswith("  server RSS"):
                cells = "".join(f"{f'{r.rss_idle_mb:.0f} / {r.rss_connected_mb:.0f}':>14}"
                                for r in rows)  # fmt: skip
            if (ls := by.get(("livesync", k))) and (raw := by.get(("raw", k))):
                cells += f"{ratio(get(ls), get(raw)):>14}"
            print(f"{label:<34}{cells}")
        for r in rows:
            print(f"  {r.server}: saturation limited by {r.limited_by}")
            for note in r.notes:
                print(f"  {r.server}: {note}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="K=100, short phases")
    parser.add_argument("--clients", default=None, help="comma-separated K (default 100,1000)")
    parser.add_argument("--servers", default="livesync,raw", help="comma-separated")
    parser.add_argument("--sat-rate", type=float, default=2000.0,
                        help="cap on writes/s during saturation (default 2000)")  # fmt: skip
    parser.add_argument("--writers", type=int, default=4,
                        help="writer threads during saturation (default 4)")  # fmt: skip
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="py-spy stacks of each server during saturation")  # fmt: skip
    args = parser.parse_args(argv)
    if not (BENCH / "node_modules" / "ws").exists():
        print("run `npm install` in bench/ first", file=sys.stderr)
        return 2
    if shutil.which("node") is None:
        print("node is not on PATH", file=sys.stderr)
        return 2
    profile = QUICK if args.quick else FULL
    ks = [int(k) for k in (args.clients or ("100" if args.quick else "100,1000")).split(",")]
    servers = args.servers.split(",")
    info = machine_info()
    print(
        f"livesync fan-out: K={ks}, servers={servers}, {info['cpu_count']} CPUs, "
        f"load {info['load_average'][0]:.2f}, latency at {profile.latency_rate:.0f} writes/s "
        f"for {profile.latency_seconds}s, saturation {profile.saturation_seconds}s"
    )
    results: list[Result] = []
    for k in ks:
        for name in servers:
            print(f"  {name} K={k}...", file=sys.stderr, flush=True)
            results.append(measure(name, k, profile, args.sat_rate, args.writers, args.py_spy))
    print_tables(results)
    if args.json is not None:
        report = {
            "machine": info,
            "profile": asdict(profile),
            "results": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

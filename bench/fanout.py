"""Fan-out of the livesync gateway against four baselines, with K websocket clients.

Servers (``--servers``, any of):

* ``livesync``: ``livesync serve bench.fanout_app:live`` on PostgreSQL + Redis; the writer
  does ORM UPDATEs, its clients do the v1 handshake and subscribe to ``bench_fanout_items``;
* ``raw``: ``bench/baselines/raw_websockets.py``, a bare websockets server relaying one
  Redis pub/sub channel with ``websockets.broadcast`` (the floor for Python fan-out);
* ``socketio``: ``bench/baselines/socketio_server.py``, python-socketio under uvicorn whose
  ``AsyncRedisManager`` relays what the writer emits with ``socketio.RedisManager``;
* ``channels``: ``bench/baselines/channels_app.py``, Django Channels under uvicorn, one
  ``AsyncWebsocketConsumer`` in one group; the writer calls ``group_send`` on a
  channels_redis ``RedisPubSubChannelLayer`` (one PUBLISH per write, see that file);
* ``sanic``: ``bench/baselines/sanic_minimal.py``, a bare Sanic app with one websocket route
  (the memory floor livesync's Sanic gateway starts from) relaying Redis with ``ws.send``.

The last two baselines send the raw baseline's frame, python-socketio sends it as the event
``tx``. ``socketio`` and ``channels`` need the ``bench`` extra (``pip install -e '.[bench]'``)
and are skipped, with a note, when their packages are missing.

For each server and each K, one fresh server process and a client swarm of K websocket
connections (``bench/fanout_clients.mjs``; over several Node processes above
``CLIENTS_PER_NODE``). Measured, in this order:

1. **memory per idle connection**: server RSS with K connected (subscribed) clients minus
   its RSS after one warm-up connection came and went, divided by K;
2. **latency** at a steady rate (20 writes/s, fewer above K = 1,000 so that the phase offers
   at most ``STEADY_DELIVERIES`` deliveries/s): the writer stores its wall-clock time in
   the written data (livesync: ``data={"t": ts}`` of an UPDATE, taken just before the ORM
   commit, so the figure includes the UPDATE + COMMIT round trips, whose own p50 is
   reported as ``commit_ms``; the baselines: in the frame they publish), and each client
   computes ``now - t`` on receipt (same clock, same machine); p50/p90/p99 over every
   delivery. Then the benchmark waits (up to the phase's length) until every delivery of
   the phase has arrived, so that the next window starts with nothing in flight;
3. **saturation**: the writer writes as fast as it can (capped at ``--sat-rate``) for a few
   seconds; the window ends once the clients counted every delivery of those writes, or
   after as long again; delivered messages/s = deliveries counted by all clients during
   that window / window (the clients' own, if a busy Node process switched phases late),
   so a server or client that lags behind the writer is charged its catch-up time; server
   CPU time per delivery = the server process tree's CPU time (utime + stime from /proc) over the
   window / deliveries in the window. The CPU of the clients, the writer, Redis, PostgreSQL
   and the whole machine over the same window says what limited the figure (:func:`limit`).

The machine is small and noisy (2 shared cores for server, clients, writer, PostgreSQL and
Redis), so the report reads ratios against the baselines measured in the same invocation,
and server CPU per delivery as the stable figure.

Usage: ``python -m bench.fanout [--quick] [--clients 100,1000,5000]
[--servers livesync,raw,socketio,channels,sanic] [--json PATH] [--py-spy DIR]`` (needs
``npm install`` in ``bench/`` once). :func:`run` is the entry point of ``python -m bench``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.procs import (
    busiest,
    cpu_seconds,
    machine_busy,
    machine_info,
    raise_fd_limit,
    redis_pid,
    rss_bytes,
)
from bench.results import Figure, Section, at_least, at_most, to_json
from bench.servers import (
    POSTGRES_URL,
    REDIS_URL,
    SERVERS,
    Server,
    missing,
    running,
    write_for,
    write_parallel,
)
from bench.swarm import CLIENTS_PER_NODE, Swarms

BENCH = Path(__file__).resolve().parent
ALL_SERVERS = ("livesync", "raw", "socketio", "channels", "sanic")
# The steady (latency) phase offers at most this many deliveries/s: 20 writes/s up to
# K = 1,000, fewer above, so that latency is measured below every server's capacity.
STEADY_DELIVERIES = 20_000


@dataclass(frozen=True)
class Profile:
    latency_seconds: float
    saturation_seconds: float
    latency_rate: float
    settle: float  # seconds to let a server settle before reading its RSS


FULL = Profile(latency_seconds=10.0, saturation_seconds=8.0, latency_rate=20.0, settle=2.0)
QUICK = Profile(latency_seconds=3.0, saturation_seconds=3.0, latency_rate=20.0, settle=1.0)


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
    """CPU seconds so far of each named process, and the machine's busy/total jiffies.

    Servers and clients count with their descendants (``livesync serve`` runs a worker
    child); the writer (this process) and each PostgreSQL process count alone: the
    postmaster's descendants are the backends, listed separately, counted once.
    """
    snapshot = {}
    for name, pid in pids.items():
        alone = name == "writer" or name.startswith("postgres-")
        with contextlib.suppress(OSError):
            snapshot[name] = cpu_seconds(pid, children=not alone)
    busy, total = machine_busy()
    snapshot["machine_busy"], snapshot["machine_total"] = busy, total
    return snapshot


def swarm_processes(clients: int, per_node: int = CLIENTS_PER_NODE) -> int:
    """How many Node processes hold ``clients`` connections (see ``CLIENTS_PER_NODE``)."""
    return max(1, math.ceil(clients / per_node))


def connect_timeout(clients: int) -> float:
    """Seconds to wait for K connections: generous (a loaded 2-core machine opens about
    200 a second), but a server that stops answering handshakes fails the run in minutes."""
    return 60 + clients * 0.03


def warm_up(server: Server) -> None:
    """Open and close one connection, so that what a server allocates once, at its first
    connection (lazy imports, routers, compiled queries), is not counted per connection."""
    swarm = Swarms(server.url, 1, server.mode)
    try:
        swarm.wait_connected(30)
    finally:
        swarm.close()


def drain(swarm: Swarms, expected: int, timeout: float) -> float:
    """Wait until the clients counted ``expected`` deliveries in this phase, or ``timeout``.

    The saturation window must start with nothing in flight: frames a server has already
    written but the clients have not read yet (kernel buffers, a busy Node process) would
    be counted as delivered in the window without costing the server anything in it.
    Returns the seconds waited.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout and swarm.count() < expected:
        time.sleep(0.25)
    return time.monotonic() - started


def steady_rate(profile: Profile, clients: int) -> float:
    """Writes/s of the latency phase: the profile's rate, lowered so that the phase offers
    at most ``STEADY_DELIVERIES`` deliveries/s (4 writes/s at K = 5,000)."""
    return min(profile.latency_rate, STEADY_DELIVERIES / clients)


def process_pids(server_pid: int, client_pids: list[int]) -> dict[str, int]:
    """The processes whose CPU the saturation window accounts for, by name."""
    pids = {"server": server_pid, "writer": os.getpid()}
    pids.update({f"clients-{i}": pid for i, pid in enumerate(client_pids)})
    rpid = redis_pid(REDIS_URL)
    if rpid is not None:
        pids["redis"] = rpid
    for proc in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if proc.read_text().strip() == "postgres":
                pids[f"postgres-{proc.parent.name}"] = int(proc.parent.name)
    return pids


def cpu_cores(
    pids: dict[str, int], before: dict[str, float], after: dict[str, float], elapsed: float
) -> dict[str, float]:
    """Cores used per process over a window; PostgreSQL's and the Node processes' summed
    (``postgres``, ``clients``), with ``clients_busiest``: the busiest Node process."""
    cpu = {k: (after[k] - before[k]) / elapsed for k in pids if k in after and k in before}
    postgres = [k for k in cpu if k.startswith("postgres-")]
    if postgres:  # a backend that exited in the window reads as 0 afterwards: skip it
        cpu["postgres"] = sum(max(0.0, cpu.pop(k)) for k in postgres)
    node = [cpu.pop(k) for k in list(cpu) if k.startswith("clients-")]
    if node:
        cpu["clients"], cpu["clients_busiest"] = sum(node), max(node)
    return cpu


def start_spy(spy: Path, name: str, clients: int, pid: int, seconds: float) -> Any:
    """py-spy recording the busiest process of the server's tree, in collapsed stacks."""
    spy.mkdir(parents=True, exist_ok=True)
    out = spy / f"{name}-{clients}.txt"  # collapsed stacks (flamegraph.pl input)
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw",
         "-d", str(int(seconds)), "-o", str(out), "--pid", str(busiest(pid))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def measure(
    name: str,
    clients: int,
    profile: Profile,
    sat_rate: float,
    writers: int,
    spy: Path | None,
    processes: int | None = None,
) -> Result:
    """Memory, then latency at a steady rate, then saturation, of server ``name`` with
    ``clients`` connections (over ``processes`` Node processes; default
    :func:`swarm_processes`), in one fresh server process. See the module docstring."""
    notes: list[str] = []
    processes = processes or swarm_processes(clients)
    rate = steady_rate(profile, clients)
    with running(name) as server:
        pid = server.proc.pid
        warm_up(server)
        time.sleep(profile.settle)
        rss_idle = rss_bytes(pid)
        swarm = Swarms(server.url, clients, server.mode, processes)
        try:
            up = swarm.wait_connected(connect_timeout(clients))
            if up["failures"]:
                notes.append(f"{up['failures']} of {clients} connections failed")
            time.sleep(profile.settle)
            rss_connected = rss_bytes(pid)
            per_conn = (rss_connected - rss_idle) / max(1, up["connected"]) / 1024

            # -- latency at a steady rate
            lat_cpu = cpu_seconds(pid)
            swarm.command("phase latency")
            writes_steady, durations = write_for(server, profile.latency_seconds, rate)
            time.sleep(1.0)  # stragglers
            expected = writes_steady * up["connected"]
            drained = drain(swarm, expected, profile.latency_seconds)
            swarm.command("phase idle")
            lat_cpu = cpu_seconds(pid) - lat_cpu
            time.sleep(0.5)

            # -- saturation
            pids = process_pids(pid, swarm.pids)
            spying = None
            if spy is not None:
                spying = start_spy(spy, name, clients, pid, profile.saturation_seconds)
            before = cpu_snapshot(pids)
            swarm.command("phase saturation")
            t0 = time.perf_counter()
            writes = write_parallel(server, profile.saturation_seconds, sat_rate, writers)
            write_seconds = time.perf_counter() - t0
            # The window ends when the writes' deliveries have arrived (or after as long
            # again): CPU and deliveries are then counted over the same span, even for a
            # server, or a Node process, that lags behind the writer.
            sat_drain = drain(swarm, writes * up["connected"], profile.saturation_seconds)
            after = cpu_snapshot(pids)
            swarm.command("phase after")
            elapsed = time.perf_counter() - t0
            if spying is not None:
                spying.wait(timeout=60)
            extra = server.extra()
            report = swarm.report()
        finally:
            swarm.close()
    lat, sat = report["phases"]["latency"], report["phases"]["saturation"]
    # A busy Node process switches phases late: its own window is the longer one then.
    window = max(elapsed, sat["seconds"])
    cpu = cpu_cores(pids, before, after, elapsed)
    machine = (after["machine_busy"] - before["machine_busy"]) / (
        after["machine_total"] - before["machine_total"]
    )
    deliveries = sat["count"]
    if lat["count"] < 0.99 * expected:
        notes.append(f"latency phase: {lat['count']} of {expected} deliveries arrived")
    if not deliveries:
        notes.append("saturation: no delivery in the window (the server stalled under the flood)")
    if report["closedUnexpectedly"]:
        notes.append(f"connections closed by the server: {report['closeCodes']}")
    saturation = {
        "seconds": elapsed,
        "write_seconds": write_seconds,
        "drain_seconds": sat_drain,
        "client_seconds": sat["seconds"],
        "writes": writes,
        "writes_per_s": writes / write_seconds,
        "offered_per_s": writes * up["connected"] / write_seconds,
        "deliveries": deliveries,
        "delivered_per_s": deliveries / window,
        "frame_bytes": sat["bytes"] / deliveries if deliveries else None,
        "server_cpu_us_per_delivery": (
            (after["server"] - before["server"]) / deliveries * 1e6 if deliveries else None
        ),
        "cpu_cores": cpu,
        "client_processes": len(swarm.swarms),
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
            "rate": rate,
            "drain_seconds": drained,
            "server_cores": lat_cpu / (profile.latency_seconds + 1.0 + drained),
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
    # Each Node process is single-threaded: the busiest one is the one that can be full.
    if (node := cpu.get("clients_busiest", cpu.get("clients", 0))) >= 0.85:
        reasons.append(f"client CPU ({node:.2f} of 1 core in the busiest Node process)")
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
            ("steady writes/s", lambda r: r.latency["rate"], "{:.0f}"),
            ("  server CPU cores (steady)", lambda r: r.latency["server_cores"], "{:.2f}"),
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


# ---------------------------------------------------------------------------- running
def plan(quick: bool) -> tuple[list[str], list[int]]:
    """Servers and K of a default run: every server at K = 100, 1,000 and 5,000 (about
    12 minutes), or with ``quick`` at K = 100 and 1,000 with short phases (about 4)."""
    return list(ALL_SERVERS), ([100, 1000] if quick else [100, 1000, 5000])


def environment_problem(servers: list[str]) -> str | None:
    """Why nothing can run here (no Node, no ``ws`` package, no Redis), or None."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (BENCH / "node_modules" / "ws").exists():
        return "the ws package is missing: run `npm install` in bench/"
    try:
        with redis.Redis.from_url(REDIS_URL, socket_timeout=2) as client:
            client.ping()
    except redis.RedisError as exc:
        return f"Redis at {REDIS_URL} is unreachable: {exc}"
    return None


def runnable(servers: list[str]) -> tuple[list[str], list[str]]:
    """The servers that can run here, and a note for each that cannot (a missing optional
    package, or PostgreSQL unreachable for livesync)."""
    ok, notes = [], []
    for name in servers:
        if name not in SERVERS:
            notes.append(f"{name}: unknown server (known: {', '.join(SERVERS)})")
        elif lost := missing(name):
            notes.append(f"{name}: skipped, missing {', '.join(lost)} (pip install -e '.[bench]')")
        elif name == "livesync" and (problem := postgres_problem()):
            notes.append(f"livesync: skipped, {problem}")
        else:
            ok.append(name)
    return ok, notes


def postgres_problem() -> str | None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        return f"PostgreSQL at {POSTGRES_URL} is unreachable: {type(exc).__name__}"
    finally:
        engine.dispose()


def measure_all(
    servers: list[str],
    ks: list[int],
    profile: Profile,
    sat_rate: float = 2000.0,
    writers: int = 4,
    spy: Path | None = None,
    per_node: int = CLIENTS_PER_NODE,
) -> tuple[list[Result], list[str]]:
    """:func:`measure` for every K (outer loop) and server; a run that fails is a note,
    not the end of the benchmark. Raises the open-files limit for K connections first."""
    notes = []
    wanted = max(ks) + 1024  # the server (or one Node process) holds K sockets
    if (limit_now := raise_fd_limit(wanted)) < wanted:
        notes.append(f"open-files limit {limit_now} < {wanted}: connections may fail")
    results = []
    for k in ks:
        for name in servers:
            print(f"  {name} K={k}...", file=sys.stderr, flush=True)
            try:
                processes = swarm_processes(k, per_node)
                results.append(measure(name, k, profile, sat_rate, writers, spy, processes))
            except Exception as exc:  # one server failing at high K is itself a finding
                notes.append(f"{name} K={k}: failed: {type(exc).__name__}: {exc}")
                print(f"  {name} K={k} failed: {exc}", file=sys.stderr, flush=True)
    return results, notes


# ---------------------------------------------------------------------------- Section
LABELS = {
    "livesync": "livesync",
    "raw": "raw websockets",
    "socketio": "python-socketio",
    "channels": "Django Channels",
    "sanic": "minimal Sanic",
}


def point(r: Result) -> dict[str, Any]:
    """One plotted point (``plot="fanout"``) per server and K."""
    return {
        "plot": "fanout",
        "server": r.server,
        "clients": r.clients,
        "p50_ms": r.latency["p50_ms"],
        "p90_ms": r.latency["p90_ms"],
        "p99_ms": r.latency["p99_ms"],
        "steady_writes_per_s": r.latency["rate"],
        "delivered_per_s": r.saturation["delivered_per_s"],
        "server_cpu_us_per_delivery": r.saturation["server_cpu_us_per_delivery"],
        "kib_per_connection": r.kib_per_connection,
        "limited_by": r.limited_by,
    }


def steady_limit(r: Result) -> str:
    """What the steady-phase figures depend on: the rate and how busy the server was."""
    return f"steady {r.latency['rate']:.0f} writes/s, server {r.latency['server_cores']:.2f} cores"


def k_figures(by: dict[tuple[str, int], Result], k: int) -> list[Figure]:
    """livesync's figures at K = ``k`` against the baselines; goals only at K = 1,000."""
    ls = by.get(("livesync", k))
    if ls is None:
        return []
    goals = k == 1000
    params = f"K={k:,}"

    def base(name: str) -> Result | None:
        return by.get((name, k))

    def versus(name: str, get: Callable[[Result], Any]) -> dict[str, Any]:
        b = base(name)
        return {
            "baseline": LABELS[name],
            "baseline_value": get(b) if b else None,
            "note": f"{LABELS[name]}: {b.limited_by}" if b else f"{LABELS[name]}: not measured",
        }

    def delivered(r: Result) -> float:
        return float(r.saturation["delivered_per_s"])

    def us_sat(r: Result) -> float | None:
        return r.saturation["server_cpu_us_per_delivery"]

    def us_steady(r: Result) -> float | None:
        return r.latency["server_cpu_us_per_delivery"]

    figures = []
    goal_of = {"raw": ("≥ 0.9 of raw", 0.9), "socketio": ("≥ 5 times python-socketio", 5.0)}
    for name in ("raw", "socketio", "channels"):
        fig = Figure("delivered messages/s at saturation", delivered(ls), "msg/s", params,
                     better="higher", limited_by=ls.limited_by,
                     **versus(name, delivered))  # fmt: skip
        if goals and name in goal_of:
            fig.goal = goal_of[name][0]
            fig.met = at_least(fig.ratio, goal_of[name][1])
        figures.append(fig)
    cpu = Figure("server CPU per delivery (saturation)", us_sat(ls), "µs", params,
                 better="lower", limited_by=ls.limited_by, **versus("raw", us_sat))  # fmt: skip
    if goals:
        cpu.goal, cpu.met = "≤ 10 µs", at_most(cpu.value, 10)
    figures.append(cpu)
    steady = Figure("server CPU per delivery (steady)", us_steady(ls), "µs", params,
                    better="lower", limited_by=steady_limit(ls),
                    **versus("raw", us_steady))  # fmt: skip
    figures.append(steady)
    for q in ("p50", "p99"):
        lat = Figure(f"COMMIT-to-client latency {q} (steady)", ls.latency[f"{q}_ms"], "ms",
                     params, better="lower", limited_by=steady_limit(ls),
                     **versus("raw", lambda r, q=q: r.latency[f"{q}_ms"]))  # fmt: skip
        if goals and q == "p99":
            lat.goal = "< 25 ms"
            lat.met = None if lat.value is None else lat.value < 25
        figures.append(lat)
    for name in ("raw", "sanic", "socketio", "channels") if goals else ("raw",):
        mem = Figure("memory per idle connection", ls.kib_per_connection, "KiB", params,
                     better="lower", **versus(name, lambda r: r.kib_per_connection))  # fmt: skip
        mem.note = None if base(name) else mem.note
        if goals and name == "raw":  # the goal is 20 KB = 19.5 KiB
            mem.goal, mem.met = "≤ 20 KB (19.5 KiB)", at_most(mem.value, 20 / 1.024)
        figures.append(mem)
    return figures


SUMMARY = (
    "One server process at a time (livesync serve, or a baseline relaying one Redis "
    "channel) with K websocket clients in Node (two processes at K = 5,000). Saturation: "
    "4 writer threads write as fast as they can; delivered messages/s and server CPU per "
    "delivery over that window. Latency: the writer's wall-clock time in each write "
    "(livesync: just before the ORM commit), read by every client, at 20 writes/s "
    "(4 at K = 5,000). Memory: server RSS with K idle connections minus after one warm-up "
    "connection, / K. "
    "All processes share 2 cores: read the ratios, and CPU per delivery."
)


def section(results: list[Result], notes: list[str], command: str, **details: Any) -> Section:
    """The Section of one run: headline figures, one point per (server, K), every Result."""
    by = {(r.server, r.clients): r for r in results}
    ks = sorted({r.clients for r in results}, key=lambda k: (k != 1000, k))  # goals first
    return Section(
        suite="fanout",
        title="Fan-out to K websocket clients",
        command=command,
        figures=[f for k in ks for f in k_figures(by, k)],
        points=[point(r) for r in results],
        summary=SUMMARY + "".join(f" Note: {n}." for n in notes),
        details={"results": [asdict(r) for r in results], "notes": notes, **details},
    )


def run(quick: bool) -> Section:
    """The fan-out benchmark for ``python -m bench``: :func:`plan` ``(quick)``; servers whose
    packages are missing are skipped with a note, and a missing service skips it all."""
    servers, ks = plan(quick)
    command = "python -m bench.fanout" + (" --quick" if quick else "")
    if problem := environment_problem(servers):
        return Section(suite="fanout", title="Fan-out to K websocket clients",
                       command=command, skipped=problem)  # fmt: skip
    servers, notes = runnable(servers)
    profile = QUICK if quick else FULL
    results, failures = measure_all(servers, ks, profile)
    sec = section(
        results, notes + failures, command, machine=machine_info(), profile=asdict(profile)
    )
    print_tables(results)  # the tables a standalone run prints, on stdout
    print_figures(sec)
    return sec


def print_figures(sec: Section) -> None:
    """The headline figures (what ``python -m bench`` puts in the report), as text."""
    print("\nheadline figures (livesync vs baseline)")
    for f in sec.figures:
        value = "-" if f.value is None else f"{f.value:,.1f}"
        base = "-" if f.baseline_value is None else f"{f.baseline_value:,.1f}"
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}"
        met = {True: "met", False: "MISSED", None: ""}[f.met]
        goal = f"  goal {f.goal} {met}" if f.goal else ""
        print(f"  {f.params:<8} {f.figure:<42} {value:>10} {f.unit:<5} vs {f.baseline:<16}"
              f" {base:>10}  ratio {ratio:>5}{goal}")  # fmt: skip
    for note in sec.details.get("notes", []):
        print(f"  note: {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="K=100,1000 with short phases (default K=100,1000,5000)")  # fmt: skip
    parser.add_argument("--clients", default=None, help="comma-separated K")
    parser.add_argument("--servers", default=",".join(ALL_SERVERS),
                        help=f"comma-separated, of {','.join(ALL_SERVERS)}")  # fmt: skip
    parser.add_argument("--sat-rate", type=float, default=2000.0,
                        help="cap on writes/s during saturation (default 2000)")  # fmt: skip
    parser.add_argument("--writers", type=int, default=4,
                        help="writer threads during saturation (default 4)")  # fmt: skip
    parser.add_argument("--clients-per-node", type=int, default=CLIENTS_PER_NODE,
                        help="split bigger swarms over several Node processes "
                        f"(default {CLIENTS_PER_NODE})")  # fmt: skip
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write the Section (bench.results) here as JSON")  # fmt: skip
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="py-spy stacks of each server during saturation")  # fmt: skip
    args = parser.parse_args(argv)
    servers, ks = plan(args.quick)
    if args.clients:
        ks = [int(k) for k in args.clients.split(",")]
    if args.servers:
        servers = args.servers.split(",")
    if problem := environment_problem(servers):
        print(problem, file=sys.stderr)
        return 2
    servers, notes = runnable(servers)
    for note in notes:
        print(note, file=sys.stderr)
    profile = QUICK if args.quick else FULL
    info = machine_info()
    print(
        f"livesync fan-out: K={ks}, servers={servers}, {info['cpu_count']} CPUs, "
        f"load {info['load_average'][0]:.2f}, latency at {profile.latency_rate:.0f} writes/s "
        f"(at most {STEADY_DELIVERIES:,} deliveries/s) for {profile.latency_seconds}s, "
        f"saturation {profile.saturation_seconds}s"
    )
    started = time.monotonic()
    results, failures = measure_all(
        servers, ks, profile, args.sat_rate, args.writers, args.py_spy, args.clients_per_node
    )
    command = "python -m bench.fanout " + " ".join(argv if argv is not None else sys.argv[1:])
    sec = section(results, notes + failures, command.strip(), machine=info,
                  profile=asdict(profile))  # fmt: skip
    sec.seconds = time.monotonic() - started
    print_tables(results)
    print_figures(sec)
    print(f"\n{sec.seconds:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(to_json(sec), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Multi-gateway scale-out: delivered messages/s with 1, 2 and 3 gateway processes.

Three gateways, ``livesync serve bench.fanout_app:live`` (one process each, its own port),
all follow the same topic on Redis: bench.fanout's livesync server (its table, writer and
first gateway) plus two more. For a gateway count G, K clients (bench.fanout's Node swarm,
one swarm per gateway, K/G connections each) connect to the first G gateways and subscribe
to the publication they all share, ``bench_fanout_items``; the other gateways are paused
(SIGSTOP) for the window, and what following the log costs a gateway without clients is
measured separately at the end. A writer (4 threads; by default :class:`BrokerWriter`,
publishing straight to the topic what bench.fanout's one-row ORM UPDATE would, since that
ORM writer cannot saturate a gateway here; ``--writer orm`` uses it) writes as fast as it
can for a few seconds;
delivered/s = deliveries counted by every client in that window / window, as in
bench/fanout.py's saturation phase. Each G runs ``rounds`` times in rotating order and
the best round counts (other jobs share the machine). The CPU of each gateway, the
clients, the writer (this process), PostgreSQL and Redis over the window, and the
machine's busy share, say what limited it: on this 2-core machine more gateway processes
cannot add cores, so the point is to show where the work goes (and what a gateway costs
per change set just following the log), not to scale.

Also measured: the Redis ceiling, with ``redis-benchmark`` (PUBLISH and XADD of a
change-set-sized payload, with and without pipelining, and livesync's own publish script
by EVALSHA), which bounds the change sets per second one topic can carry, whatever the
number of gateways.

Usage: ``python -m bench.scaleout [--quick] [--clients K] [--gateways 1,2,3] [--json PATH]``
(needs ``npm install`` in ``bench/`` once, and ``redis-benchmark`` on PATH). Services:
``LIVESYNC_BENCH_POSTGRES_URL``, ``LIVESYNC_BENCH_REDIS_URL`` (defaults: database
``test``, Redis database 14). bench.fanout drops its table; this module deletes the
topic's Redis keys (its push topic's too) and the Redis benchmark's keys.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from bench import servers
from bench.procs import (
    CpuMeter,
    WriterCpuMeter,
    delete_topic_keys,
    limit_of,
    machine_info,
    postgres_pids,
    redis_pid,
    start_gateway,
    stop_process,
    tree,
    with_others,
)
from bench.report import print_section
from bench.results import Figure, Section, save
from bench.swarm import Swarm

WRITERS = 4
PAYLOAD = "x" * 300  # about one small change set (bench.fanout's one-row UPDATE)


@dataclass(frozen=True)
class Profile:
    gateways: tuple[int, ...]
    clients: int  # K, split across the gateways
    saturation_seconds: float
    offered: float  # cap on writes/s x K: enough to saturate, not to bury the clients
    settle: float
    redis_requests: int  # -n of each redis-benchmark run
    rounds: int  # each gateway count this many times, in rotating order; the best counts
    writer: str = "broker"  # "broker": BrokerWriter; "orm": bench.fanout's ORM writer


FULL = Profile((1, 2, 3), clients=2000, saturation_seconds=5.0, offered=1_500_000, settle=1.0,
               redis_requests=100_000, rounds=2)  # fmt: skip
QUICK = Profile((1, 2, 3), clients=500, saturation_seconds=3.0, offered=800_000, settle=0.5,
                redis_requests=10_000, rounds=1)  # fmt: skip


class BrokerWriter(servers.Server):
    """A writer that publishes change sets straight to the topic, without the database.

    bench.fanout's ORM writer (UPDATE + COMMIT through livesync) manages about 100 writes/s
    on this shared machine, fewer change sets than even one gateway can fan out to a few
    thousand clients, so with it the figure is the writer's. This one publishes what that
    UPDATE would (one ``bench_fanout_items`` row's ``data.t``, the next version, a patch)
    through the same ``LiveSync.broker``, a Redis round trip each, so the gateways are what
    saturates. Thread ``slot`` owns row ``slot % ROWS``: versions grow per row, in order.
    """

    def __init__(self, server: servers.Server) -> None:
        self.live, self.topic = server.live, server.topic  # type: ignore[attr-defined]
        self.versions = [1] * servers.ROWS  # the rows were inserted at version 1

    def write(self, slot: int = 0) -> float:
        from livesync.changes import Change, ChangeSet

        row = slot % servers.ROWS
        self.versions[row] += 1
        version = self.versions[row]
        t = time.time()
        doc = {"id": row, "name": f"item {row}", "data": {"t": t}}
        patch = [{"op": "replace", "path": "/data/t", "value": t}]
        change = Change("bench_fanout_items", str(row), "update", version, version - 1, doc, patch)
        self.live.broker.publish(self.topic, ChangeSet((change,)).encode())
        return time.time() - t


def split(total: int, parts: int) -> list[int]:
    """``total`` clients over ``parts`` gateways, as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def measure_all(profile: Profile) -> list[dict[str, Any]]:
    """Every gateway count, ``profile.rounds`` times in rotating order, against one set of
    gateways: bench.fanout's livesync server (table, writer, first gateway) and as many
    more as the largest count, all on the same topic. A count G puts its K clients on the
    first G gateways; the others are paused for the window (:func:`paused`). Then, with
    no clients left, :func:`follower_cost` of every gateway."""
    counts = list(profile.gateways)
    rows = []
    topic = f"bench-fanout-{servers.RUN_ID}"  # bench.servers.running's; its push topic too
    with contextlib.ExitStack() as stack:
        stack.callback(delete_topic_keys, servers.REDIS_URL, topic)  # after running() closes
        server = stack.enter_context(servers.running("livesync"))
        procs, urls = [server.proc], [server.url]
        writer = BrokerWriter(server) if profile.writer == "broker" else server
        for _ in range(max(counts) - 1):  # the same LIVESYNC_* environment: the same topic
            proc, port = start_gateway("bench.fanout_app:live", {})
            stack.callback(stop_process, proc)
            procs.append(proc)
            urls.append(f"ws://127.0.0.1:{port}/live")
        for r in range(profile.rounds):
            for g in counts[r % len(counts) :] + counts[: r % len(counts)]:
                print(f"  scaleout: round {r + 1}, {g} gateway(s), K={profile.clients}...",
                      file=sys.stderr, flush=True)  # fmt: skip
                with paused(procs[g:]):
                    rows.append({**saturate(writer, procs[:g], urls[:g], profile), "round": r + 1})
        follow = follower_cost(writer, procs)
    for row in rows:
        row["follower_us_per_change_set"] = follow
    return rows


@contextlib.contextmanager
def paused(procs: list[Any]) -> Iterator[None]:
    """SIGSTOP the gateways not in use for a window (and SIGCONT them after): an idle
    gateway still reads and decodes every change set, which would take CPU from the ones
    measured. Resumed, they catch up from the log like any gateway that fell behind."""
    pids = [pid for proc in procs for pid in tree(proc.pid)]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def follower_cost(writer: servers.Server, procs: list[Any], seconds: float = 3.0) -> float:
    """µs of CPU per change set that a gateway with no clients spends following the log
    (reading, decoding, routing to no one), the mean over ``procs`` with every swarm gone,
    at 300 change sets/s: what every gateway pays for every change set of its topic."""
    meter = CpuMeter({f"gateway {i + 1}": [p.pid] for i, p in enumerate(procs)})
    meter.start()
    writes = servers.write_parallel(writer, seconds, 300.0, WRITERS)
    meter.stop()
    used = [v for k, v in meter.cores().items() if k != "machine"]
    return sum(used) / len(used) * meter.wall / max(1, writes) * 1e6


def saturate(
    writer: servers.Server, procs: list[Any], urls: list[str], profile: Profile
) -> dict[str, Any]:
    """K clients over the gateways at ``urls`` (one Node swarm each; ``procs`` are those
    gateways), then the writer as fast as it can for the window: deliveries counted by the
    clients, CPU by /proc."""
    with contextlib.ExitStack() as stack:
        swarms = []
        for url, share in zip(urls, split(profile.clients, len(urls)), strict=True):
            swarm = Swarm(url, share, "livesync")
            stack.callback(swarm.close)
            swarms.append(swarm)
        connected = sum(s.wait("connected", 60 + profile.clients * 0.2)["connected"]
                        for s in swarms)  # fmt: skip
        time.sleep(profile.settle)
        groups = {f"gateway {i + 1}": [p.pid] for i, p in enumerate(procs)}
        groups |= {f"clients {i + 1}": [s.proc.pid] for i, s in enumerate(swarms)}
        groups["postgres"] = postgres_pids()
        if (rpid := redis_pid(servers.REDIS_URL)) is not None:
            groups["redis"] = [rpid]
        meter = WriterCpuMeter(groups)
        for swarm in swarms:
            swarm.command("phase saturation")
        meter.start()
        # Offering far more than the machine can deliver only queues frames: the Node
        # clients then spend minutes draining them (and answer `report` late).
        rate = profile.offered / profile.clients
        writes = servers.write_parallel(writer, profile.saturation_seconds, rate,
                                       WRITERS)  # fmt: skip
        meter.stop()
        for swarm in swarms:
            swarm.command("phase after")
        reports = [swarm.report() for swarm in swarms]
    delivered = sum(r["phases"]["saturation"]["count"] for r in reports)
    cores = {k: max(0.0, v) for k, v in meter.cores().items()}  # a backend that exited: < 0
    gateway_cpu = sum(v for k, v in cores.items() if k.startswith("gateway")) * meter.wall
    return {
        "gateways": len(urls),
        "clients": profile.clients,
        "connected": connected,
        "seconds": meter.wall,
        "writes": writes,
        "writes_per_s": writes / meter.wall,
        "offered_per_s": writes * connected / meter.wall,
        "offered_cap": profile.offered,
        "delivered": delivered,
        "delivered_per_s": delivered / meter.wall,
        "delivered_per_gateway_per_s": [
            r["phases"]["saturation"]["count"] / meter.wall for r in reports
        ],
        "gateway_us_per_delivery": gateway_cpu / delivered * 1e6 if delivered else None,
        "cores": cores,
        "roles": roles(cores),
        "closed_unexpectedly": sum(r["closedUnexpectedly"] for r in reports),
    }


def roles(cores: dict[str, float]) -> dict[str, float]:
    """Per-process cores summed per role (gateway, clients, writer, postgres, redis), and
    ``other processes``: the rest of the machine's busy cores (other jobs, the kernel)."""
    out: dict[str, float] = {}
    for name, value in with_others(cores).items():
        if name != "machine":
            role = name if name == "other processes" else name.split()[0]
            out[role] = out.get(role, 0.0) + value
    return out


def limited(row: dict[str, Any]) -> str:
    """What capped delivered/s: the offered load if everything offered arrived, else CPU."""
    head = limit_of(row["cores"])
    if row["delivered_per_s"] >= 0.95 * row["offered_per_s"]:
        return (f"the offered load (the gateways delivered all of {row['writes_per_s']:.0f} "
                f"writes/s x K; the writer is capped near {row['offered_cap']:,.0f} msg/s); "
                f"{head}")  # fmt: skip
    return head


# ---------------------------------------------------------------------------- redis ceiling
def redis_ceiling(requests: int) -> dict[str, float]:
    """Requests/s of ``redis-benchmark`` (50 connections) for PUBLISH, XADD (trimmed like
    livesync's log) and livesync's publish script, unpipelined and with ``-P 16``."""
    parts = urlsplit(servers.REDIS_URL)
    host, port = parts.hostname or "127.0.0.1", str(parts.port or 6379)
    db = (parts.path or "/0").strip("/") or "0"
    tag = f"{{livesync:bench-scaleout-{uuid.uuid4().hex[:8]}}}"
    keys = [f"{tag}:log", f"{tag}:seq", f"{tag}:epoch"]
    with redis.Redis.from_url(servers.REDIS_URL) as client:
        from livesync.brokers.redis import _PUBLISH  # livesync's own script, read only

        sha = client.script_load(_PUBLISH)
        commands = {
            "PUBLISH": ["PUBLISH", f"{tag}:channel", PAYLOAD],
            "XADD": ["XADD", f"{tag}:stream", "MAXLEN", "~", "10000", "*", "d", PAYLOAD],
            "livesync publish (EVALSHA)": ["EVALSHA", sha, "3", *keys, "bench-epoch", PAYLOAD,
                                           "10000"],
        }  # fmt: skip
        out = {}
        try:
            for name, command in commands.items():
                for pipeline in (1, 16):
                    argv = ["redis-benchmark", "-h", host, "-p", port, "--dbnum", db,
                            "-n", str(requests), "-q", "-P", str(pipeline), *command]  # fmt: skip
                    text = subprocess.run(argv, capture_output=True, text=True, timeout=300).stdout
                    found = re.findall(r"([\d.]+) requests per second", text)
                    out[f"{name}, -P {pipeline}"] = float(found[-1]) if found else float("nan")
        finally:
            client.delete(f"{tag}:channel", f"{tag}:stream", *keys)
    return out


# ---------------------------------------------------------------------------- the section
def run(
    quick: bool,
    gateways: tuple[int, ...] | None = None,
    clients: int | None = None,
    writer: str | None = None,
) -> Section:
    """Measure each gateway count, then the Redis ceiling."""
    profile = QUICK if quick else FULL
    if gateways:
        profile = replace(profile, gateways=gateways)
    if clients:
        profile = replace(profile, clients=clients)
    if writer:
        profile = replace(profile, writer=writer)
    rows = measure_all(profile)
    print("  scaleout: redis-benchmark...", file=sys.stderr, flush=True)
    ceiling = redis_ceiling(profile.redis_requests) if shutil.which("redis-benchmark") else {}
    return section(rows, ceiling, quick, profile.writer)


def best_rounds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per gateway count, the round that delivered most: other jobs share this machine, and
    the best round is the one they disturbed least."""
    best: dict[int, dict[str, Any]] = {}
    for row in rows:
        g = row["gateways"]
        if g not in best or row["delivered_per_s"] > best[g]["delivered_per_s"]:
            best[g] = row
    return [best[g] for g in sorted(best)]


WRITER_TEXT = {
    "broker": "a writer publishing change sets straight to the topic (what bench.fanout's "
    "one-row UPDATE publishes, without the database: the ORM writer manages only ~100 "
    "writes/s on this shared machine, too few to saturate a gateway)",
    "orm": "bench.fanout's writer (ORM UPDATE + COMMIT through livesync)",
}


def section(
    all_rows: list[dict[str, Any]], ceiling: dict[str, float], quick: bool, writer: str
) -> Section:
    rows = best_rounds(all_rows)
    rounds = max(r["round"] for r in all_rows)
    base = rows[0]
    figures, points = [], []
    for row in rows:
        g, used = row["gateways"], row["roles"]
        breakdown = ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(used.items(), key=lambda kv: -kv[1])
        )
        params = f"{g} gateway{'s' if g > 1 else ''}, K={row['clients']:,}"
        figures.append(Figure(
            "delivered msg/s (saturation)", row["delivered_per_s"], "msg/s", params,
            f"{base['gateways']} gateway", base["delivered_per_s"], limited_by=limited(row),
            note=f"cores: {breakdown}; machine {row['cores']['machine']:.0%} busy; "
                 f"{row['writes_per_s']:.0f} writes/s",
        ))  # fmt: skip
        figures.append(Figure(
            "gateway CPU per delivery", row["gateway_us_per_delivery"], "µs", params,
            f"{base['gateways']} gateway", base["gateway_us_per_delivery"], better="lower",
            note="all gateway processes' CPU over the window / deliveries",
        ))  # fmt: skip
        points.append({
            "plot": "scaleout", "gateways": g, "delivered_per_s": row["delivered_per_s"],
            "clients": row["clients"], "writes_per_s": row["writes_per_s"],
            "machine_busy": row["cores"]["machine"], "round": row["round"],
            "gateway_us_per_delivery": row["gateway_us_per_delivery"],
            **{f"cores_{k}": v for k, v in used.items()},
        })  # fmt: skip
    for name, value in ceiling.items():
        figures.append(Figure(f"Redis ceiling: {name}", value, "req/s", "redis-benchmark, 50 conns",
                              limited_by="Redis (one thread)"))  # fmt: skip
    script = ceiling.get("livesync publish (EVALSHA), -P 1", float("nan"))
    follow = all_rows[0]["follower_us_per_change_set"]
    following = (
        f"A gateway with no clients still spends {follow:,.0f} µs of CPU per change set "
        "just following the log (measured on all three with no clients at 300 change "
        "sets/s): every gateway pays that for every change set of its topic, whatever it "
        "delivers. "
    )
    top, busy = rows[-1], min(r["cores"]["machine"] for r in rows)
    ratio_top = top["delivered_per_s"] / base["delivered_per_s"] if base["delivered_per_s"] else 0
    spread = "; ".join(
        f"G={r['gateways']}: "
        + "-".join(
            f"{x['delivered_per_s'] / 1000:,.0f}k"
            for x in sorted(all_rows, key=lambda x: x["delivered_per_s"])
            if x["gateways"] == r["gateways"]
        )
        for r in rows
    )
    summary = (
        f"K={base['clients']:,} clients (bench.fanout's Node swarm, one per gateway) split "
        "evenly over the first G of 3 gateway processes (livesync serve "
        "bench.fanout_app:live, one port each, all following the same Redis topic; the "
        "other 3 - G are paused with SIGSTOP for the window); "
        f"{WRITER_TEXT[writer]} writes as fast as it can (4 threads) and the "
        f"clients count deliveries over the window; best of {rounds} round(s), the counts "
        "in rotating order. On this 2-core machine the gateways, the clients, the writer, "
        "PostgreSQL, Redis and other jobs share two cores, so more gateway processes cannot "
        f"add cores: the machine was at least {busy:.0%} busy at every G, and "
        f"G={top['gateways']} delivered {ratio_top:.2f}x G={base['gateways']} "
        f"(rounds per G spread: {spread}), which is the shuffling of the same two cores "
        "between gateways, Node clients and other jobs, not scale-out. "
        f"{following}What would scale across hosts: a gateway holds only its own "
        "connections' subscriptions and reads the topic's stream itself (a batch of up to 500 "
        "change sets per read when behind), so deliveries/s grow with gateway hosts, each "
        "doing its share of the fan-out. Where Redis caps it: each change set is one publish "
        "script (GET epoch, INCR, XADD) on one single-threaded Redis, measured at "
        f"{script:,.0f}/s unpipelined by redis-benchmark (plain XADD and PUBLISH are 2-3x "
        "that, and pipelined more), so change sets/s per topic are bounded by Redis (and "
        "before that by the writers' database), while deliveries/s across gateways are change "
        "sets/s x subscribers, bounded by the gateways' CPU; Redis also serves each gateway's "
        "reads, G x the stream's bytes/s."
    )
    return Section(
        suite="scaleout",
        title="Scale-out: delivered msg/s with 1-3 gateway processes",
        command="python -m bench.scaleout" + (" --quick" if quick else ""),
        figures=figures,
        points=points,
        summary=summary,
        details={"rows": all_rows, "redis_benchmark": ceiling, "machine": machine_info()},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="K=300, short window (~1 minute)")
    parser.add_argument("--gateways", help="comma-separated gateway counts (default 1,2,3)")
    parser.add_argument("--clients", type=int, help="K, split over the gateways")
    parser.add_argument("--writer", choices=["broker", "orm"],
                        help="publish change sets straight to Redis (default) or write "
                             "through the ORM and PostgreSQL (bench.fanout's writer)")  # fmt: skip
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the Section here")
    args = parser.parse_args(argv)
    gateways = tuple(int(g) for g in args.gateways.split(",")) if args.gateways else None
    result = run(args.quick, gateways, args.clients, args.writer)
    print_section(result)
    if args.json is not None:
        save(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

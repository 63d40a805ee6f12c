"""Resume: what a reconnecting client pays to catch up, against a full refetch.

One gateway process (``livesync serve bench.resume_app:live``, PostgreSQL + Redis) and a
publication of 10,000 documents (``bench_resume_docs``, about 150 bytes of JSON each). A
Python websockets client subscribes and syncs (snapshot, then ``ready``), remembers the
epoch and position, and disconnects; 100 documents are updated (100 transactions); the
client reconnects and subscribes with ``since`` (protocol §5: the gateway replays the
missed change sets as whole documents, then ``ready {resumed: true}``). Measured per
round, from the start of the connection to ``ready``:

* **bytes received** (websocket payloads: welcome, snap/tx frames, ready) and **time**;
* the same for a **full refetch**, a fresh subscription without ``since`` (the baseline);
* the CPU time of the gateway, PostgreSQL and the client (this process) during each.

Two variants of resume: **alone**, the client is the publication's only subscriber, so
its channel closed with it and the gateway rebuilds it on resume; and **shared**, another
connection stays subscribed throughout, so the channel is live. Finally, a position **too
old**: 1,300 changes are written while the client is away, more than the log's history
(``bench.resume_app.HISTORY`` = 1,000 change sets), and the resume falls back to a
snapshot (``ready {resumed: false}``).

Goal: resume bytes < 2% of the refetch's. Usage: ``python -m bench.resume [--quick]
[--json PATH]``. Services: ``LIVESYNC_BENCH_POSTGRES_URL``, ``LIVESYNC_BENCH_REDIS_URL``
(defaults: database ``test``, Redis database 14). The table ``bench_resume_docs`` and the
run's Redis keys are dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import redis
from websockets.asyncio.client import ClientConnection, connect

from bench.procs import (
    WriterCpuMeter,
    delete_topic_keys,
    gateway_position,
    limit_of,
    machine_info,
    postgres_pids,
    start_gateway,
    stop_process,
    wait_until,
)
from bench.report import print_section
from bench.results import Figure, Section, at_most, save
from bench.servers import REDIS_URL, app_env, load_app

DOCS = 10_000
MISSED = 100  # changes written while the client is away
GOAL = 0.02  # resume bytes / refetch bytes below this
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
         "lambda", "mu", "nu", "xi"]  # fmt: skip


@dataclass
class Sync:
    """One subscription's start as the client saw it: connection opened to ``ready``."""

    seconds: float
    bytes: int  # websocket payload bytes received, welcome to ready
    frames: dict[str, int]  # frames received per type
    docs: int  # snapshot documents
    changes: int  # tx changes before ready (a resume's missed changes)
    resumed: bool
    epoch: str
    pos: int  # where to resume from next time
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds during it, per process
    machine: float = 0.0  # share of the machine's CPUs busy meanwhile (anyone's work)


@contextlib.contextmanager
def docs_table(app: ModuleType) -> Iterator[None]:
    """Create and fill the table (10 transactions of 1,000 inserts, through livesync, before
    the gateway starts); drop it and the topic's Redis keys afterwards."""
    from sqlalchemy import inspect

    from livesync.outbox import OUTBOX_TABLE

    live, model = app.live, app.ResumeDoc
    if not inspect(live.engine).has_table(OUTBOX_TABLE):
        live.upgrade()
    model.__table__.drop(live.engine, checkfirst=True)
    model.__table__.create(live.engine)
    rng = random.Random(1)
    try:
        for start in range(0, DOCS, 1000):
            with live.sessionmaker() as session, session.begin():
                session.add_all(
                    model(id=i, title=f"document {i}", n=0, body=" ".join(rng.choices(WORDS, k=8)),
                          tags=rng.sample(WORDS, 2))
                    for i in range(start, start + 1000)
                )  # fmt: skip
        live._publisher.flush()
        yield
    finally:
        live._publisher.flush()
        model.__table__.drop(live.engine, checkfirst=True)
        delete_topic_keys(REDIS_URL, live.settings.topic)


def write_changes(app: ModuleType, count: int, rng: random.Random) -> int:
    """Update ``count`` distinct documents, one transaction each (4 threads); return the
    change log's last offset once everything is published."""
    live, model = app.live, app.ResumeDoc

    def update(doc_id: int) -> None:
        with live.sessionmaker() as session, session.begin():
            doc = session.get(model, doc_id)
            doc.n += 1
            doc.title = f"document {doc_id}, edit {doc.n}"

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(update, rng.sample(range(DOCS), count)))
    live._publisher.flush()
    with redis.Redis.from_url(REDIS_URL) as client:
        return int(client.get(live.broker.keys(live.settings.topic)[1]) or 0)


async def sync(url: str, pub: str, since: tuple[str, int] | None = None) -> Sync:
    """Connect, hello, subscribe (from ``since`` if given), read until ``ready``, close."""
    frames: dict[str, int] = {}
    received = docs = changes = pos = 0
    start = time.perf_counter()
    async with connect(url, max_size=None, compression=None) as ws:
        await ws.send(orjson.dumps({"type": "hello", "v": [1]}).decode())
        sub: dict[str, Any] = {"type": "sub", "id": "docs", "pub": pub}
        if since is not None:
            sub["since"] = {"epoch": since[0], "pos": since[1]}
        await ws.send(orjson.dumps(sub).decode())
        while True:
            raw = await ws.recv(decode=False)
            received += len(raw)
            msg = orjson.loads(raw)
            kind = msg["type"]
            frames[kind] = frames.get(kind, 0) + 1
            if kind == "snap":
                docs += len(msg["docs"])
            elif kind == "tx":
                changes += sum(len(part["ch"]) for part in msg["parts"])
                pos = max(pos, msg["pos"])
            elif kind == "ready":
                seconds = time.perf_counter() - start
                return Sync(seconds, received, frames, docs, changes, msg["resumed"],
                            msg["epoch"], max(pos, msg["pos"]))  # fmt: skip
            elif kind in ("nosub", "error"):
                raise RuntimeError(f"subscription refused: {msg}")


async def measured(meter_groups: dict[str, list[int]], url: str, pub: str,
                   since: tuple[str, int] | None = None) -> Sync:  # fmt: skip
    """:func:`sync`, with the CPU seconds the gateway, PostgreSQL and this client spent."""
    meter = WriterCpuMeter(meter_groups)
    meter.start()
    result = await sync(url, pub, since)
    meter.stop()
    result.cpu = {("client" if k == "writer" else k): v for k, v in meter.cpu.items()}
    result.machine = meter.cores()["machine"]
    return result


@contextlib.asynccontextmanager
async def keeper(url: str, pub: str) -> AsyncIterator[None]:
    """Another subscriber of the publication for the duration: keeps its channel live."""
    async with connect(url, max_size=None, compression=None) as ws:
        await ws.send(orjson.dumps({"type": "hello", "v": [1]}).decode())
        await ws.send(orjson.dumps({"type": "sub", "id": "keep", "pub": pub}).decode())
        while orjson.loads(await ws.recv(decode=False))["type"] != "ready":
            pass
        drain = asyncio.create_task(_drain(ws))
        try:
            yield
        finally:
            drain.cancel()


async def _drain(ws: ClientConnection) -> None:
    async for _ in ws:
        pass


async def measure(app: ModuleType, rounds: int) -> dict[str, Any]:
    """All rounds against one gateway: alone, too old, then shared."""
    gateway, port = start_gateway("bench.resume_app:live", app_env("resume"))
    url, pub = f"ws://127.0.0.1:{port}/live", app.TABLE
    groups = {"gateway": [gateway.pid], "postgres": postgres_pids()}
    rng = random.Random(2)
    out: dict[str, list[Sync]] = {"refetch": [], "alone": [], "shared": [], "too_old": []}

    async def away(count: int) -> None:
        """The client is away while ``count`` changes are written and fanned out."""
        last = await asyncio.to_thread(write_changes, app, count, rng)
        wait_until(lambda: gateway_position(port) >= last, 60, "the gateway to catch up")

    try:
        state = await sync(url, pub)
        for variant in ("alone", "shared"):
            async with contextlib.AsyncExitStack() as stack:
                if variant == "shared":
                    await stack.enter_async_context(keeper(url, pub))
                for _ in range(rounds):
                    await away(MISSED)
                    out[variant].append(await measured(groups, url, pub, (state.epoch, state.pos)))
                    state = await measured(groups, url, pub)  # the baseline, and the next start
                    out["refetch"].append(state)
            if variant == "alone":
                await away(app.HISTORY + 300)
                out["too_old"].append(await measured(groups, url, pub, (state.epoch, state.pos)))
                state = await sync(url, pub)
    finally:
        stop_process(gateway)
    return {
        **{k: [asdict(s) for s in v] for k, v in out.items()},
        "history": app.HISTORY,
        "too_old_writes": app.HISTORY + 300,
    }


def med(syncs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(s[key] for s in syncs)


def cores(syncs: list[dict[str, Any]]) -> dict[str, float]:
    """Cores each process used over all these syncs (their CPU seconds / their time), and
    the machine's busy share over them (time-weighted)."""
    seconds = sum(s["seconds"] for s in syncs)
    used = {name: sum(s["cpu"][name] for s in syncs) / seconds for name in syncs[0]["cpu"]}
    used["machine"] = sum(s["machine"] * s["seconds"] for s in syncs) / seconds
    return used


def limited(syncs: list[dict[str, Any]]) -> str:
    """What bounded these syncs' time, from who used the CPU while they ran."""
    return limit_of(cores(syncs))


def run(quick: bool) -> Section:
    """Measure resume against refetch; ``quick`` runs 2 rounds of each variant, else 5."""
    rounds = 2 if quick else 5
    app = load_app("resume")
    with docs_table(app):
        print("  resume: measuring...", file=sys.stderr, flush=True)
        data = asyncio.run(measure(app, rounds))
    return section(data, quick)


def section(data: dict[str, Any], quick: bool) -> Section:
    refetch, alone, shared, old = data["refetch"], data["alone"], data["shared"], data["too_old"]
    history, behind = data["history"], data["too_old_writes"]
    ref_bytes, ref_ms = med(refetch, "bytes"), med(refetch, "seconds") * 1000
    ref_cpu = statistics.median(s["cpu"]["gateway"] for s in refetch) * 1000
    alone_bytes = med(alone, "bytes")
    params = f"{DOCS:,} docs, {MISSED} missed changes"
    baseline = "full refetch"
    figures = [
        Figure("resume: bytes received", alone_bytes, "B", params, baseline, ref_bytes,
               better="lower", goal=f"< {GOAL:.0%} of the refetch",
               met=at_most(alone_bytes / ref_bytes, GOAL) if ref_bytes else None,
               note=f"{med(alone, 'changes'):.0f} changes replayed as whole documents"),
        Figure("resume: time to ready (channel closed)", med(alone, "seconds") * 1000, "ms",
               params, baseline, ref_ms, better="lower", limited_by=limited(alone),
               note="the client was the only subscriber: the gateway re-reads the whole "
                    "result to rebuild the channel (not sent)"),
        Figure("resume: time to ready (channel live)", med(shared, "seconds") * 1000, "ms",
               params, baseline, ref_ms, better="lower", limited_by=limited(shared),
               note="another connection kept the channel: only the broker is read"),
        Figure("full refetch: time to ready", ref_ms, "ms", f"{DOCS:,} docs",
               limited_by=limited(refetch), better="lower"),
        Figure("gateway CPU per resume (channel closed)",
               statistics.median(s["cpu"]["gateway"] for s in alone) * 1000, "ms", params,
               baseline, ref_cpu, better="lower"),
        Figure("gateway CPU per resume (channel live)",
               statistics.median(s["cpu"]["gateway"] for s in shared) * 1000, "ms", params,
               baseline, ref_cpu, better="lower"),
        Figure("too-old resume: bytes received", med(old, "bytes"), "B",
               f"{behind:,} change sets behind, history {history:,}", baseline,
               ref_bytes, better="lower",
               note=f"resumed={old[0]['resumed']}: falls back to a snapshot "
                    f"({old[0]['docs']:,} docs), {old[0]['seconds'] * 1000:.0f} ms"),
    ]  # fmt: skip
    points = [
        {"plot": "resume", "kind": kind, "bytes": s["bytes"], "ms": s["seconds"] * 1000}
        for kind in ("refetch", "alone", "shared", "too_old")
        for s in data[kind]
    ]
    summary = (
        f"A Python websockets client syncs the {DOCS:,}-document publication "
        f"bench_resume_docs (snapshot + ready), disconnects; {MISSED} documents are updated "
        "(one transaction each); it reconnects with sub.since = the epoch and position it "
        "had, and the gateway replays the missed change sets (whole documents) before "
        "ready {resumed: true}. Bytes are websocket payloads from welcome to ready; time is "
        "from opening the connection to ready. Baseline: a fresh subscription (full "
        f"refetch) after the same writes, median of the rounds; goal: resume bytes < "
        f"{GOAL:.0%} of the refetch's. This run: {alone_bytes:,.0f} B against "
        f"{ref_bytes:,.0f} B ({alone_bytes / ref_bytes:.2%}). A resume position older "
        f"than the log's history ({history:,} change sets here) falls back to a snapshot: "
        "refetch-sized."
    )
    return Section(
        suite="resume",
        title="Resume after a disconnect vs a full refetch",
        command="python -m bench.resume" + (" --quick" if quick else ""),
        figures=figures,
        points=points,
        summary=summary,
        details={**data, "machine": machine_info()},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 5")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the Section here")
    args = parser.parse_args(argv)
    result = run(args.quick)
    print_section(result)
    if args.json is not None:
        save(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

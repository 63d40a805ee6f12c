"""Write overhead of livesync: committed transactions per second, with and without it.

What is measured: single-threaded ORM write transactions (a new session per transaction,
as a web request would do), each one ``begin -> write -> COMMIT``, for three variants on
the same engine and the same physical table:

* ``plain`` (a): plain SQLAlchemy ``sessionmaker``, no livesync at all (the baseline);
* ``no-outbox`` (b): ``LiveSync(..., outbox=False)``: capture, encode and publish;
* ``outbox`` (c): the default: capture, encode, outbox INSERT, publish, and the outbox
  janitor's DELETE of published rows (drained at the end of each timed segment so that
  its cost is charged to the variant that caused it).

Each variant has its own mapped class on the same table (its own registry), because
livesync attaches ``load`` listeners to the mappers of its collections; sharing one class
would make the baseline pay for them too. All classes use :class:`livesync.Versioned`, so
the version column and ``eager_defaults`` are part of the baseline as well.

Workloads: inserting 1 or 10 new rows per transaction, and updating 1 or 10 existing rows
(load, modify an int, a Decimal, a datetime and the JSON column, commit).

The machine this runs on is shared and noisy, so absolute numbers mean little: variants
are interleaved in rounds (the order rotates every round) and the report gives the median
tx/s of each variant plus the median of the per-round ratios b/a and c/a.

Usage: ``python -m bench.write_overhead [--quick] [--backend pg|sqlite|all] [--json PATH]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import itertools
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
import sqlalchemy
from sqlalchemy import JSON, DateTime, Engine, Integer, Numeric, String, inspect, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import livesync
from bench import procs
from bench.procs import CpuMeter, bottleneck, postgres_pids, redis_pid
from bench.results import Figure, Section, at_least, to_json
from livesync import LiveSync, Versioned
from livesync.brokers import RedisBroker
from livesync.outbox import OUTBOX_TABLE

POSTGRES_URL = os.environ.get(
    "LIVESYNC_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# Database 14: the test suite uses 15.
REDIS_URL = os.environ.get("LIVESYNC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")

VARIANTS = ("plain", "no-outbox", "outbox")
SEED_ROWS = 2000  # rows the update workloads cycle through


@dataclass(frozen=True)
class Profile:
    """How long to measure: ``rounds`` timed segments of ``segment`` seconds per variant."""

    rounds: int
    segment: float
    warmup: float


FULL = Profile(rounds=15, segment=0.4, warmup=0.3)
QUICK = Profile(rounds=3, segment=0.05, warmup=0.02)


# ---------------------------------------------------------------------------- the model
def make_model(table_name: str, variant: str) -> type[Any]:
    """A mapped class on ``table_name`` with a registry of its own (one per variant)."""

    class Base(DeclarativeBase):
        pass

    class Item(Versioned, Base):
        __tablename__ = table_name

        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        sku: Mapped[str] = mapped_column(String(32))
        name: Mapped[str] = mapped_column(String(200))
        quantity: Mapped[int] = mapped_column(Integer)
        price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
        updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
        attrs: Mapped[dict[str, Any]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))

    Item.__name__ = Item.__qualname__ = f"Item_{variant.replace('-', '_')}"
    return Item


def row_values(n: int) -> dict[str, Any]:
    """Column values of the ``n``-th new row: short strings, numbers, a small JSON object."""
    return {
        "sku": f"SKU-{n:010d}",
        "name": f"Benchmark item number {n}",
        "quantity": n % 100,
        "price": Decimal(n % 100_000) / 100,
        "updated_at": dt.datetime.now(dt.UTC),
        "attrs": {"color": "red", "tags": ["a", "b"], "rank": n % 7},
    }


# ---------------------------------------------------------------------------- workloads
Transaction = Callable[[], None]


@dataclass(frozen=True)
class Workload:
    """One kind of transaction: ``kind`` is ``insert`` or ``update``, ``rows`` per commit."""

    kind: str
    rows: int

    @property
    def name(self) -> str:
        return f"{self.kind} {self.rows} row{'s' if self.rows > 1 else ''}"

    def transaction(self, factory: sessionmaker[Session], model: type[Any]) -> Transaction:
        """A callable running one transaction of this workload through ``factory``."""
        if self.kind == "insert":
            return _insert_transaction(factory, model, self.rows)
        return _update_transaction(factory, model, self.rows)


WORKLOADS = (
    Workload("insert", 1),
    Workload("update", 1),
    Workload("insert", 10),
    Workload("update", 10),
)


def _insert_transaction(factory: sessionmaker[Session], model: type[Any], rows: int) -> Transaction:
    """Adds ``rows`` new instances (database-generated ids) and commits."""
    counter = itertools.count()

    def run() -> None:
        with factory() as session, session.begin():
            session.add_all([model(**row_values(next(counter))) for _ in range(rows)])

    return run


def _update_transaction(factory: sessionmaker[Session], model: type[Any], rows: int) -> Transaction:
    """Loads ``rows`` seeded rows (``get`` for one, ``IN`` for many) and modifies them.

    The JSON column is reassigned rather than mutated in place: plain SQLAlchemy would not
    notice an in-place mutation, and the variants must write the same data.
    """
    chunks = itertools.cycle(
        [list(range(start, start + rows)) for start in range(1, SEED_ROWS - rows + 2, rows)]
    )

    def run() -> None:
        ids = next(chunks)
        with factory() as session, session.begin():
            if rows == 1:
                items = [session.get(model, ids[0])]
            else:
                items = list(session.scalars(select(model).where(model.id.in_(ids))))
            for item in items:
                item.quantity += 1
                item.price += Decimal("0.01")
                item.updated_at = dt.datetime.now(dt.UTC)
                item.attrs = {**item.attrs, "rank": item.quantity % 7}

    return run


# ---------------------------------------------------------------------------- backends
@dataclass
class Variant:
    """A session factory and mapped class to write through; ``drain`` runs after a segment."""

    name: str
    factory: sessionmaker[Session]
    model: type[Any]
    drain: Callable[[], None] | None = None


@dataclass
class Backend:
    """An opened backend: the three variants on one engine, plus what to report about it."""

    name: str
    description: str
    engine: Engine
    variants: list[Variant]
    versions: dict[str, str] = field(default_factory=dict)
    processes: dict[str, list[int]] = field(default_factory=dict)  # CPU accounting groups


def reachable(url: str, default_port: int) -> bool:
    """Whether a TCP connection to the URL's host and port succeeds within a second."""
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


@contextmanager
def open_backend(name: str, database_url: str, broker_url: str) -> Iterator[Backend]:
    """Create a fresh table, three variants writing to it, and clean everything up after.

    The engine is the one LiveSync builds from the URL (psycopg 3; WAL on SQLite), shared
    by all three variants. The outbox table is created with ``live.upgrade()`` if missing.
    """
    suffix = uuid.uuid4().hex[:8]
    table_name, topic = f"bench_items_{suffix}", f"bench-{suffix}"
    models = {variant: make_model(table_name, variant) for variant in VARIANTS}
    live = LiveSync(database_url, broker_url, topic=topic)
    engine = live.engine
    live_no_outbox = LiveSync(broker_url=broker_url, engine=engine, outbox=False, topic=topic)
    try:
        if not inspect(engine).has_table(OUTBOX_TABLE):
            live.upgrade()
        table = models["plain"].__table__
        table.drop(engine, checkfirst=True)
        table.create(engine)
        seed(engine, table)
        live.collection(models["outbox"])
        live_no_outbox.collection(models["no-outbox"])
        variants = [
            Variant("plain", sessionmaker(engine), models["plain"]),
            Variant("no-outbox", live_no_outbox.sessionmaker, models["no-outbox"]),
            # The janitor is internal; draining it charges the DELETEs to this variant.
            Variant("outbox", live.sessionmaker, models["outbox"], live._janitor.flush),
        ]
        description = f"{engine.dialect.name} + {broker_url}"
        versions = server_versions(engine, broker_url)
        yield Backend(name, description, engine, variants, versions, processes(broker_url))
    finally:
        live_no_outbox.close()
        live.close()
        models["plain"].__table__.drop(engine, checkfirst=True)
        engine.dispose()
        if isinstance(live.broker, RedisBroker):
            with redis.Redis.from_url(broker_url) as client:
                client.delete(*live.broker.keys(topic))


def processes(broker_url: str) -> dict[str, list[int]]:
    """Who to charge CPU to: this process, PostgreSQL's processes, the Redis server."""
    groups = {"python": [os.getpid()], "postgresql": postgres_pids()}
    if broker_url.startswith("redis") and (pid := redis_pid(broker_url)) is not None:
        groups["redis"] = [pid]
    return groups


def seed(engine: Engine, table: Any) -> None:
    """Insert the rows the update workloads modify (ids 1..SEED_ROWS)."""
    with engine.begin() as conn:
        conn.execute(table.insert(), [row_values(n) for n in range(SEED_ROWS)])


def server_versions(engine: Engine, broker_url: str) -> dict[str, str]:
    """Database and broker server versions, for the report."""
    versions: dict[str, str] = {}
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            versions["postgres"] = str(conn.execute(text("SHOW server_version")).scalar_one())
        else:
            versions["sqlite"] = sqlite3.sqlite_version
    if broker_url.startswith("redis"):
        with redis.Redis.from_url(broker_url) as client:
            versions["redis"] = str(client.info("server")["redis_version"])
    return versions


@contextmanager
def pg_backend() -> Iterator[Backend | None]:
    """PostgreSQL (database ``test``) with the Redis broker; None if either is down."""
    for service, url, port in (("PostgreSQL", POSTGRES_URL, 5432), ("Redis", REDIS_URL, 6379)):
        if not reachable(url, port):
            print(f"skipping backend pg: {service} is not reachable at {url}")
            yield None
            return
    with open_backend("pg", POSTGRES_URL, REDIS_URL) as backend:
        yield backend


@contextmanager
def sqlite_backend() -> Iterator[Backend | None]:
    """A SQLite file in a temporary directory with the in-memory broker."""
    with tempfile.TemporaryDirectory(prefix="livesync-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        with open_backend("sqlite", url, f"memory://bench-{uuid.uuid4().hex[:8]}") as backend:
            yield backend


BACKENDS: dict[str, Callable[[], Any]] = {"pg": pg_backend, "sqlite": sqlite_backend}


# ---------------------------------------------------------------------------- measuring
def timed_segment(tx: Transaction, seconds: float, drain: Callable[[], None] | None) -> float:
    """Run ``tx`` back to back for at least ``seconds`` (then ``drain``); returns tx/s."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        tx()
        count += 1
        if time.perf_counter() >= deadline:
            break
    if drain is not None:
        drain()
    return count / (time.perf_counter() - start)


@dataclass
class Result:
    """One backend and workload: per-round tx/s of each variant and the derived figures."""

    backend: str
    workload: str
    rounds: dict[str, list[float]]
    median: dict[str, float] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    ratio_range: dict[str, tuple[float, float]] = field(default_factory=dict)
    cores: dict[str, dict[str, float]] = field(default_factory=dict)  # variant -> group -> cores

    def summarize(self) -> Result:
        """Medians per variant; ratios are medians of per-round (paired) ratios to plain."""
        base = self.rounds["plain"]
        for variant, values in self.rounds.items():
            self.median[variant] = statistics.median(values)
            if variant != "plain":
                paired = [v / b for v, b in zip(values, base, strict=True)]
                self.ratios[variant] = statistics.median(paired)
                self.ratio_range[variant] = (min(paired), max(paired))
        return self


def measure(backend: Backend, workload: Workload, profile: Profile) -> Result:
    """Interleave the variants: every round runs each once, rotating the order.

    Each variant's segments are also charged with the CPU that this process (the ORM, the
    capture and the publisher thread), PostgreSQL and Redis used while they ran, which is
    what says whether the variant was limited by Python, the database or the broker.
    """
    runs = [(v.name, workload.transaction(v.factory, v.model), v.drain) for v in backend.variants]
    for _, tx, drain in runs:
        timed_segment(tx, profile.warmup, drain)
    rounds: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    meters = {name: CpuMeter(backend.processes) for name, _, _ in runs}
    for index in range(profile.rounds):
        shift = index % len(runs)
        for name, tx, drain in runs[shift:] + runs[:shift]:
            meters[name].start()
            rounds[name].append(timed_segment(tx, profile.segment, drain))
            meters[name].stop()
    result = Result(backend.name, workload.name, rounds)
    result.cores = {name: meter.cores() for name, meter in meters.items()}
    return result.summarize()


# ---------------------------------------------------------------------------- reporting
def git_state() -> dict[str, Any]:
    """The checkout's commit, and whether livesync/ has uncommitted changes."""

    def git(*args: str) -> str:
        cwd = Path(__file__).resolve().parent
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=True, cwd=cwd)
        return done.stdout.strip()

    try:
        return {
            "git_commit": git("rev-parse", "--short", "HEAD"),
            "git_dirty": bool(git("status", "--porcelain", "--", "../livesync")),
        }
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "git_dirty": None}


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (server versions are added per backend)."""
    return {
        **procs.machine_info(),
        "sqlalchemy": sqlalchemy.__version__,
        "psycopg": importlib.metadata.version("psycopg"),
        "redis_py": importlib.metadata.version("redis"),
        "livesync": livesync.__version__,
        **git_state(),
    }


def print_table(backend: Backend, results: list[Result]) -> None:
    """One readable table per backend."""
    versions = ", ".join(f"{k} {v}" for k, v in backend.versions.items())
    print(f"\n{backend.name}: {backend.description} ({versions})")
    header = f"{'workload':<16}{'plain tx/s':>12}{'no-outbox':>12}{'outbox':>12}"
    print(f"{header}{'b/a':>8}{'c/a':>8}   c/a range")
    for r in results:
        low, high = r.ratio_range["outbox"]
        print(
            f"{r.workload:<16}{r.median['plain']:>12.0f}{r.median['no-outbox']:>12.0f}"
            f"{r.median['outbox']:>12.0f}{r.ratios['no-outbox']:>8.2f}"
            f"{r.ratios['outbox']:>8.2f}   {low:.2f}-{high:.2f}"
        )
    sys.stdout.flush()


def run_backend(name: str, profile: Profile) -> tuple[dict[str, str], list[Result]] | None:
    """Measure every workload on one backend; None if it was skipped."""
    with BACKENDS[name]() as backend:
        if backend is None:
            return None
        results = []
        for workload in WORKLOADS:
            results.append(measure(backend, workload, profile))
            print(f"  {name}: {workload.name} done", file=sys.stderr, flush=True)
        print_table(backend, results)
        return backend.versions, results


GOAL = 0.85  # of plain SQLAlchemy's commits/s, with the outbox (the default)
DESCRIPTIONS = {"pg": "PostgreSQL + Redis", "sqlite": "SQLite + memory"}


def section(results: list[Result], profile: Profile, skipped: list[str]) -> Section:
    """The report's view: c/a per backend and workload against the 0.85 goal, b/a beside."""
    figures = []
    for r in results:
        low, high = r.ratio_range["outbox"]
        cores = r.cores.get("outbox", {})
        figures.append(
            Figure(
                figure="commits/s with livesync (outbox) / plain SQLAlchemy",
                params=f"{DESCRIPTIONS[r.backend]}, {r.workload}",
                value=r.median["outbox"],
                unit="tx/s",
                baseline="plain SQLAlchemy",
                baseline_value=r.median["plain"],
                ratio=r.ratios["outbox"],
                goal=f"≥ {GOAL}",
                met=at_least(r.ratios["outbox"], GOAL),
                limited_by=bottleneck(cores) if cores else None,
                note=(
                    f"paired ratio range {low:.2f}-{high:.2f}; "
                    f"without the outbox {r.ratios['no-outbox']:.2f}"
                ),
            )
        )
    return Section(
        suite="write_overhead",
        title="Write overhead",
        command="python -m bench.write_overhead",
        figures=figures,
        summary=(
            "Single-threaded ORM transactions (a new session each) on one engine and table: "
            "plain SQLAlchemy against livesync's default (capture, outbox INSERT, publish "
            f"after COMMIT). {profile.rounds} interleaved rounds of {profile.segment} s per "
            "variant; the ratio is the median of per-round paired ratios, so machine noise "
            "hits both sides alike. Value and baseline are median commits/s."
        ),
        details={"profile": asdict(profile), "results": [asdict(r) for r in results]},
        skipped=", ".join(f"{name}: services unreachable" for name in skipped) or None,
    )


def measure_all(
    names: list[str], profile: Profile
) -> tuple[list[Result], list[str], dict[str, Any]]:
    """Every workload on each backend in ``names``; (results, skipped backends, versions)."""
    # SQLite stores Numeric as floating point; the benchmark does not care about rounding.
    warnings.filterwarnings("ignore", message=r".*does \*not\* support Decimal objects")
    results: list[Result] = []
    skipped: list[str] = []
    versions: dict[str, Any] = {}
    for name in names:
        outcome = run_backend(name, profile)
        if outcome is None:
            skipped.append(name)
            continue
        versions.update(outcome[0])
        results += outcome[1]
    return results, skipped, versions


def run(quick: bool) -> Section:
    """``python -m bench`` entry point: both backends, as a report section."""
    profile = QUICK if quick else FULL
    results, skipped, versions = measure_all(["pg", "sqlite"], profile)
    outcome = section(results, profile, skipped)
    outcome.details["versions"] = versions
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, for smoke tests")
    parser.add_argument("--backend", choices=["pg", "sqlite", "all"], default="all")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    info = machine_info()
    print(
        f"livesync write overhead: {profile.rounds} rounds x {profile.segment}s per variant, "
        f"{info['cpu_count']} CPUs, load {info['load_average'][0]:.2f}, Python {info['python']}, "
        f"SQLAlchemy {info['sqlalchemy']}"
    )
    names = ["pg", "sqlite"] if args.backend == "all" else [args.backend]
    results, skipped, versions = measure_all(names, profile)
    if args.json is not None:
        report = {"machine": {**info, **versions}, **to_json(section(results, profile, skipped))}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

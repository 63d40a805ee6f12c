"""Processes, CPU time and memory from /proc, shared by the benchmarks.

Everything the benchmarks learn about the machine comes from here: a process tree's CPU
seconds and RSS (``livesync serve`` runs its Sanic worker as a child, so a server's cost is
its whole tree), the whole machine's busy time, and small readiness checks for the server
processes they start. Linux only: it reads /proc.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (``livesync serve`` runs its Sanic worker as a child)."""
    pids, index = [pid], 0
    while index < len(pids):
        for task in Path(f"/proc/{pids[index]}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                pids += [int(c) for c in task.read_text().split()]
        index += 1
    return pids


def cpu_seconds(pid: int, children: bool = True) -> float:
    """utime + stime of a process (all its threads, and its descendants), in seconds."""
    total = 0
    for p in tree(pid) if children else [pid]:
        with contextlib.suppress(OSError), open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its descendants."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError), open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def busiest(pid: int) -> int:
    """The process of ``pid``'s tree that has used the most CPU (the one to profile)."""
    return max(tree(pid), key=lambda p: cpu_seconds(p, children=False))


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False


def stop_process(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(2)  # SIGINT: Sanic and the baseline shut down cleanly
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def redis_pid(redis_url: str) -> int | None:
    with contextlib.suppress(Exception), redis.Redis.from_url(redis_url) as client:
        pid = int(client.info("server")["process_id"])
        if Path(f"/proc/{pid}").exists():  # only if Redis runs in this machine's pid space
            return pid
    return None


def machine_info() -> dict[str, Any]:
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "node": node,
    }


def postgres_pids() -> list[int]:
    """PostgreSQL's server processes, each counted once by :func:`cpu_seconds`.

    The processes named ``postgres`` whose parent is not one of them: the postmaster,
    whose descendants are every backend, including the ones a benchmark starts later.
    """
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == "postgres":
                pids.append(int(comm.parent.name))
    return process_roots(pids)


class CpuMeter:
    """CPU cores used by named process groups over intervals, plus the whole machine's share.

    ``groups`` maps a name to the pids whose CPU counts for it (descendants included).
    ``start()`` then ``stop()`` adds one interval; ``cores()`` is CPU seconds per wall
    second for each group over all intervals, and ``"machine"``: the fraction of every CPU
    that was busy. Intervals let a benchmark charge interleaved segments to the variant that
    ran them.
    """

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.cpu = dict.fromkeys(groups, 0.0)
        self.wall = 0.0
        self.busy = [0, 0]
        self._mark: tuple[float, dict[str, float], tuple[float, float]] | None = None

    def _read(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.groups.items()}

    def start(self) -> None:
        self._mark = (time.perf_counter(), self._read(), machine_busy())

    def stop(self) -> None:
        assert self._mark is not None, "stop() without start()"
        t0, before, (busy0, total0) = self._mark
        after, (busy1, total1) = self._read(), machine_busy()
        self.wall += time.perf_counter() - t0
        for name in self.cpu:
            self.cpu[name] += after[name] - before[name]
        self.busy[0] += int(busy1 - busy0)
        self.busy[1] += int(total1 - total0)
        self._mark = None

    def cores(self) -> dict[str, float]:
        shares = (
            {name: seconds / self.wall for name, seconds in self.cpu.items()} if self.wall else {}
        )
        shares["machine"] = self.busy[0] / self.busy[1] if self.busy[1] else 0.0
        return shares


def bottleneck(cores: dict[str, float], cpus: int | None = None) -> str:
    """A sentence naming what capped a measurement, from :meth:`CpuMeter.cores`.

    A group near a full core is the limit of a single-threaded process; a machine near 100%
    means every process competed for the same cores, and the biggest user is named first.
    """
    cpus = cpus or os.cpu_count() or 1
    users = sorted(((v, k) for k, v in cores.items() if k != "machine"), reverse=True)
    used = ", ".join(f"{name} {value:.2f}" for value, name in users if value >= 0.05)
    machine = cores.get("machine", 0.0)
    if users and users[0][0] >= 0.85:
        head = f"{users[0][1]} CPU ({users[0][0]:.2f} of one core)"
    elif machine >= 0.9:
        head = f"machine CPU ({machine:.0%} of {cpus} cores)"
    else:
        head = "no process near a full core"
    return f"{head}; cores used: {used}; machine {machine:.0%} busy"


# ---------------------------------------------------------------------------- gateways
# Gateways, CPU groups and Redis cleanup for bench/filtered.py, resume.py and scaleout.py.
ROOT = Path(__file__).resolve().parent.parent


def start_gateway(app: str, env: dict[str, str]) -> tuple[subprocess.Popen[Any], int]:
    """Start ``livesync serve APP`` (one process) on a free port; return it once /healthz
    answers. ``env`` is added to this process's environment (LIVESYNC_* settings)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "livesync.cli", "serve", app, "--port", str(port)],
        cwd=ROOT, env={**os.environ, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_until(
        lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 30, f"livesync serve {app}", proc
    )
    return proc, port


def gateway_position(port: int) -> int:
    """The change log offset the gateway on ``port`` has delivered up to (its /healthz)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        return int(json.loads(response.read())["position"])


def process_roots(pids: list[int]) -> list[int]:
    """The members of ``pids`` whose parent is not one of them.

    :func:`cpu_seconds` counts descendants, so a group holding a process and its children
    would count the children twice; its roots count each process once.
    """
    members = set(pids)
    roots = []
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
            if int(f.read().rsplit(")", 1)[1].split()[1]) not in members:
                roots.append(pid)
    return roots


class WriterCpuMeter(CpuMeter):
    """A :class:`CpuMeter` that also charges this process's own CPU time to ``"writer"``.

    A benchmark's writer threads run in the benchmark process, whose *children* are the
    processes under test, so it cannot be a group (groups count descendants); its own
    threads' time comes from :func:`time.process_time` instead.
    """

    def __init__(self, groups: dict[str, list[int]]) -> None:
        super().__init__(groups)
        self.cpu["writer"] = 0.0

    def _read(self) -> dict[str, float]:
        return {**super()._read(), "writer": time.process_time()}


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft limit on open files towards ``wanted`` (up to the hard limit).

    Children inherit it, so a benchmark calls this before starting its servers and client
    processes: K websocket connections cost K descriptors in the server and in the client
    process, and the usual soft limit (1024) stops a run at K = 1,000. Returns the soft
    limit now in force, which may still be below ``wanted`` if the hard limit is.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return wanted if soft == resource.RLIM_INFINITY else soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def with_others(cores: dict[str, float], cpus: int | None = None) -> dict[str, float]:
    """``cores`` (from :meth:`CpuMeter.cores`) plus ``"other processes"``: the machine's busy
    cores that none of the groups used (other jobs on a shared machine, the kernel)."""
    cpus = cpus or os.cpu_count() or 1
    ours = sum(v for k, v in cores.items() if k != "machine")
    return {**cores, "other processes": max(0.0, cores.get("machine", 0.0) * cpus - ours)}


def limit_of(cores: dict[str, float], cpus: int | None = None) -> str:
    """Like :func:`bottleneck`, for a machine others share: a group near a full core is
    named first (a single-threaded process at its limit); else a busy machine, with its
    cores split between the groups and everything else (``"other processes"``)."""
    cpus = cpus or os.cpu_count() or 1
    shares = with_others(cores, cpus)
    users = sorted(((v, k) for k, v in shares.items() if k != "machine"), reverse=True)
    used = ", ".join(f"{name} {value:.2f}" for value, name in users if value >= 0.05)
    machine = shares.get("machine", 0.0)
    single = [(v, k) for v, k in users if k != "other processes" and v >= 0.85]
    if single:
        head = f"{single[0][1]} CPU ({single[0][0]:.2f} of one core)"
    elif machine >= 0.9:
        head = f"machine CPU ({machine:.0%} of {cpus} cores busy)"
    else:
        head = "no process near a full core"
    return f"{head}; cores: {used}"


def delete_topic_keys(redis_url: str, topic: str, prefix: str = "livesync") -> int:
    """Delete every Redis key of a livesync topic: its change log (``{prefix:topic}:*``)
    and the push topic gateways create beside it (``{prefix:topic:send}:*``), which
    ``Broker.keys(topic)`` does not name. Returns how many keys went."""
    deleted = 0
    with redis.Redis.from_url(redis_url) as client:
        for pattern in (f"{{{prefix}:{topic}}}:*", f"{{{prefix}:{topic}:send}}:*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                deleted += int(client.delete(*keys))
    return deleted

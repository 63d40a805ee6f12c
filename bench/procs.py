"""Processes, CPU time and memory from /proc, shared by the benchmarks.

Everything the benchmarks learn about the machine comes from here: a process tree's CPU
seconds and RSS (``livesync serve`` runs its Sanic worker as a child, so a server's cost is
its whole tree), the whole machine's busy time, and small readiness checks for the server
processes they start. Linux only: it reads /proc.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import socket
import subprocess
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

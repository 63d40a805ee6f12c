"""``python -m bench`` (``make bench``): every benchmark, one results file, one report.

Each benchmark runs in a fresh Python process (``python -m bench._suite NAME``), one after
the other, so that no benchmark inherits another's threads, event loops, imported apps or
environment, and none competes with another for the machine's two cores. Each returns a
:class:`bench.results.Section`; together with the machine and the commit they are written
to ``bench/results/<date>.json`` (``<date>-quick.json`` for ``--quick``), then rendered:
the generated part of ``docs/performance.md`` and the plots in ``docs/img/``.

A benchmark that fails is recorded as skipped with its error and the others still run;
the exit status is 1 if any failed. ``--render FILE`` re-renders a stored run without
measuring anything.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import procs, report
from bench.results import Section, to_json

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
DOCUMENT = ROOT / "docs" / "performance.md"
IMAGES = ROOT / "docs" / "img"

# In run order: the write path first (no gateway), then the gateway benchmarks.
SUITES = ("write_overhead", "fanout", "filtered", "resume", "scaleout")


def git_state() -> dict[str, Any]:
    """The commit measured, and whether the working tree had changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout.strip()

    try:
        commit, changes = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain")
        return {"commit": commit, "dirty": bool(changes)}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None}


def run_suite(name: str, quick: bool) -> dict[str, Any]:
    """One benchmark in its own process; its Section as JSON (a skipped one if it failed)."""
    with tempfile.TemporaryDirectory(prefix="livesync-bench-") as tmp:
        out = Path(tmp) / "section.json"
        command = [sys.executable, "-m", "bench._suite", name, str(out)]
        command += ["--quick"] if quick else []
        started = time.monotonic()
        done = subprocess.run(command, cwd=ROOT, check=False)
        seconds = time.monotonic() - started
        if done.returncode == 0 and out.exists():
            section: dict[str, Any] = json.loads(out.read_text())
        else:
            why = f"the benchmark failed (exit status {done.returncode}; its output is above)"
            failed = Section(name, name, f"python -m bench.{name}", skipped=why, failed=True)
            section = to_json(failed)
        section["seconds"] = round(seconds, 1)
        print(f"bench: {name} took {seconds:.0f} s", file=sys.stderr, flush=True)
        return section


def render(run: dict[str, Any]) -> None:
    """Plots into docs/img/, the generated part of docs/performance.md."""
    drawn = report.draw(run, IMAGES)
    report.update_document(DOCUMENT, report.render(run, drawn))
    print(f"bench: wrote {DOCUMENT.relative_to(ROOT)} and {len(drawn)} plots", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short phases, small K: a smoke run")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SUITES)}")
    parser.add_argument("--render", type=Path, metavar="FILE", help="re-render a stored run")
    parser.add_argument("--no-docs", action="store_true", help="write the results file only")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args(argv)

    if args.render is not None:
        stored = json.loads(args.render.read_text())
        render({**stored, "file": args.render.name})
        return 0
    names = args.only.split(",") if args.only else list(SUITES)
    unknown = set(names) - set(SUITES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    today = dt.date.today().isoformat()
    file = f"{today}{'-quick' if args.quick else ''}.json"
    run: dict[str, Any] = {
        "date": today,
        "quick": args.quick,
        "machine": procs.machine_info(),
        "git": git_state(),
        "sections": [],
    }
    for name in names:
        print(f"bench: {name}...", file=sys.stderr, flush=True)
        run["sections"].append(run_suite(name, args.quick))
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / file).write_text(json.dumps(run, indent=2, ensure_ascii=False) + "\n")
    print(f"bench: wrote {args.results / file}", file=sys.stderr)
    if not args.no_docs:
        render({**run, "file": file})
    return 1 if any(section.get("failed") for section in run["sections"]) else 0


if __name__ == "__main__":
    sys.exit(main())

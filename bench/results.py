"""The shape every benchmark reports in, so one runner can collect and render them all.

A benchmark module (``bench/fanout.py``, ``bench/write_overhead.py``, ...) keeps its own
command line for focused runs and also exposes ``run(quick: bool) -> Section`` for
``python -m bench``. A :class:`Section` is one benchmark's outcome: headline
:class:`Figure` rows for the report's tables (each with the baseline measured in the same
run, the ratio, the goal and what limited it), ``points`` for the plots, and ``details``:
anything else worth keeping in ``bench/results/<date>.json`` (per-round numbers, CPU
breakdowns), which the report does not render.

Everything here is plain data and JSON-serialisable through :func:`to_json`; nothing
measures or prints.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Better = Literal["higher", "lower"]


@dataclass
class Figure:
    """One measured figure, with the baseline it is read against.

    ``ratio`` is ``value / baseline_value`` when both are known; ``goal`` is a human
    sentence (``"≥ 0.9 of raw"``) and ``met`` whether this run reached it (``None``: no
    goal, or not decidable). ``limited_by`` names the resource that capped the figure
    (server CPU, client CPU, the database, Redis, the writer), as the benchmark judged it
    from CPU accounting.
    """

    figure: str
    value: float | None
    unit: str
    params: str = ""
    baseline: str | None = None
    baseline_value: float | None = None
    better: Better = "higher"
    goal: str | None = None
    met: bool | None = None
    limited_by: str | None = None
    note: str | None = None
    ratio: float | None = field(default=None)

    def __post_init__(self) -> None:
        if self.ratio is None and self.value is not None and self.baseline_value:
            self.ratio = self.value / self.baseline_value


@dataclass
class Section:
    """One benchmark's outcome: ``figures`` for the tables, ``points`` for the plots.

    ``points`` are flat dicts; the ones the report plots carry ``"plot"`` (``"fanout"``:
    ``server``, ``clients``, ``p50_ms``, ``p90_ms``, ``p99_ms``, ``delivered_per_s``;
    ``"scaleout"``: ``gateways``, ``delivered_per_s``, ...). ``summary`` is a short paragraph
    the report prints under the table: how it was measured, in a sentence or two.
    """

    suite: str
    title: str
    command: str
    figures: list[Figure] = field(default_factory=list)
    points: list[dict[str, Any]] = field(default_factory=list)
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None  # why this benchmark could not run (a service missing, ...)
    failed: bool = False  # it crashed (``skipped`` says how); ``python -m bench`` exits 1
    seconds: float | None = None  # how long it ran, filled in by ``python -m bench``


def at_least(value: float | None, goal: float) -> bool | None:
    """``met`` for "this ratio or figure should be at least ``goal``"."""
    return None if value is None else value >= goal


def at_most(value: float | None, goal: float) -> bool | None:
    """``met`` for "this figure should be at most ``goal``"."""
    return None if value is None else value <= goal


def to_json(section: Section) -> dict[str, Any]:
    """``section`` as plain JSON-able data (what ``bench/results/<date>.json`` holds)."""
    return asdict(section)


def from_json(data: dict[str, Any]) -> Section:
    """The inverse of :func:`to_json`, for re-rendering a stored run."""
    figures = [Figure(**f) for f in data.get("figures", [])]
    return Section(**{**data, "figures": figures})


def save(section: Section, path: Path) -> None:
    """Write ``section`` as JSON (what ``--json PATH`` of every benchmark module does)."""
    path.write_text(json.dumps(to_json(section), indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {path}")

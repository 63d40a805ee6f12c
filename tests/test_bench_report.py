"""The benchmark report: figures, goals and the generated part of docs/performance.md.

``python -m bench`` rewrites part of a document people also edit by hand, so what it
replaces and what it keeps is worth pinning down; the numbers themselves are measured by
the benchmarks, not here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import report
from bench.results import Figure, Section, at_least, at_most, from_json, to_json


def fanout_section() -> Section:
    figures = [
        Figure("delivered messages/s", 45_000, "msg/s", "K=1000", "raw websockets", 50_000,
               goal="≥ 0.9 of raw", met=at_least(0.9, 0.9), limited_by="server CPU"),
        Figure("server CPU per delivery", 12.5, "µs", "K=1000", "raw websockets", 13.0,
               better="lower", goal="≤ 10 µs", met=at_most(12.5, 10)),
        Figure("memory per idle connection", 30.0, "KB", "K=1000", goal="≤ 20 KB | RSS",
               met=False),
    ]  # fmt: skip
    points = [
        {"plot": "fanout", "server": server, "clients": k, "p50_ms": 5.0 * k / 100,
         "p90_ms": 8.0, "p99_ms": 12.0 * k / 100, "delivered_per_s": 1000.0 * k}
        for server in ("livesync", "raw") for k in (100, 1000)
    ]  # fmt: skip
    return Section("fanout", "Fan-out", "python -m bench.fanout", figures, points, "How.")


def stored_run(*sections: Section) -> dict[str, object]:
    return {
        "date": "2026-11-23",
        "file": "2026-11-23.json",
        "machine": {"cpu_count": 2, "python": "3.11", "node": "v20", "load_average": [1.5]},
        "git": {"commit": "abc1234", "dirty": False},
        "sections": [to_json(s) for s in sections],
    }


def test_ratio_is_derived_from_the_baseline_and_survives_json() -> None:
    section = fanout_section()
    assert section.figures[0].ratio == pytest.approx(0.9)
    assert section.figures[2].ratio is None  # no baseline, no ratio
    again = from_json(json.loads(json.dumps(to_json(section))))
    assert again == section


def test_goals_read_the_ratio_or_the_value_as_the_goal_says() -> None:
    throughput, cpu, _ = fanout_section().figures
    assert report.goal_is_ratio(throughput)  # "≥ 0.9 of raw"
    assert not report.goal_is_ratio(cpu)  # "≤ 10 µs" names the unit
    table = report.goals_table([fanout_section()])
    assert "| 0.90 (45,000 msg/s) | ≥ 0.9 of raw **met** |" in table
    assert "| 12.5 µs | ≤ 10 µs **missed** |" in table


def test_cells_cannot_break_the_table() -> None:
    row = report.figure_row(fanout_section().figures[2])
    assert "≤ 20 KB \\| RSS" in row
    assert row.count("|") - row.count("\\|") == 8  # 7 columns


def test_numbers_are_rounded_for_reading() -> None:
    assert [report.number(v) for v in (42181.4, 310.2, 46.54, 0.754, None)] == [
        "42,181", "310", "46.5", "0.75", "-",
    ]  # fmt: skip


def test_update_keeps_the_hand_written_prose_and_replaces_the_last_run(tmp_path: Path) -> None:
    document = tmp_path / "performance.md"
    document.write_text("# Performance\n\nIntro by hand.\n")
    report.update_document(document, report.render(stored_run(fanout_section()), []))
    first = document.read_text()
    assert first.startswith("# Performance\n\nIntro by hand.\n")
    assert "45,000 msg/s" in first and first.count(report.END) == 1

    document.write_text(first + "\n## Analysis by hand\n\nStays.\n")
    skipped = Section("resume", "Resume", "python -m bench.resume", skipped="Redis is down")
    report.update_document(document, report.render(stored_run(skipped), []))
    second = document.read_text()
    assert "45,000" not in second  # the old run is gone
    assert "Not measured in this run: Redis is down." in second
    assert second.startswith("# Performance\n\nIntro by hand.\n")
    assert second.endswith("## Analysis by hand\n\nStays.\n")
    assert second.count("bench:begin") == 1


def test_plots_are_drawn_from_the_points(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib comes with the bench extra")
    scale = Section("scaleout", "Scale-out", "python -m bench.scaleout", points=[
        {"plot": "scaleout", "gateways": g, "delivered_per_s": 1000.0 * g} for g in (1, 2, 3)
    ])  # fmt: skip
    drawn = report.draw(stored_run(fanout_section(), scale), tmp_path)
    assert drawn == ["perf-latency.png", "perf-throughput.png", "perf-scaleout.png"]
    for name in drawn:
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
    assert report.draw(stored_run(), tmp_path / "none") == []


def test_write_overhead_reports_a_section_on_sqlite(tmp_path: Path) -> None:
    """The smallest real benchmark run, end to end: its JSON is a Section with goals."""
    from bench import write_overhead

    out = tmp_path / "write.json"
    assert write_overhead.main(["--quick", "--backend", "sqlite", "--json", str(out)]) == 0
    section = from_json({k: v for k, v in json.loads(out.read_text()).items() if k != "machine"})
    assert section.suite == "write_overhead" and section.skipped is None
    assert [f.params.split(", ")[1] for f in section.figures] == [
        "insert 1 row", "update 1 row", "insert 10 rows", "update 10 rows",
    ]  # fmt: skip
    for f in section.figures:
        assert f.value and f.baseline_value and f.ratio and f.ratio > 0
        assert f.met == (f.ratio >= 0.85)
        assert f.limited_by and "python" in f.limited_by  # this process's CPU was charged

"""The benchmark scripts' fairness checks and report writer (no timing here: bench/ measures,
tests only check that an unfair comparison is refused and that tables come from the JSON)."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import report  # noqa: E402


def test_shape_puts_bound_values_back_as_placeholders() -> None:
    traced = []
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (a TEXT, b REAL, c INTEGER)")
    conn.set_trace_callback(traced.append)
    conn.execute("INSERT INTO t VALUES (?, ?, ?)", ("it's", 1.5, None))
    conn.execute("INSERT INTO t VALUES (?, ?, ?)", ("x", -2, 7))
    assert common.shape(traced[0]) == "INSERT INTO t VALUES (?, ?, ?)"
    assert common.shape(traced[1]) == "INSERT INTO t VALUES (?, -?, ?)"  # the same on both sides


def test_different_sql_stops_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    same = Counter({"SELECT 1": 3})
    common.compare_shapes("ok", {"raw": same, "hive-store": Counter(same)})
    with pytest.raises(SystemExit) as exc:
        common.compare_shapes("get", {"raw": same, "hive-store": Counter({"SELECT 1": 4})})
    assert exc.value.code == 3
    assert "different SQL" in capsys.readouterr().err
    common.compare_shapes("conc", {"raw": same, "hive-store": Counter({"SELECT 1": 9})},
                          counts=False)


def test_different_pragmas_stop_the_run() -> None:
    with pytest.raises(SystemExit) as exc:
        common.check_same("PRAGMAs", {"raw": {"synchronous": 1}, "ours": {"synchronous": 2}})
    assert exc.value.code == 3


def test_report_writes_only_between_the_markers(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    doc.write_text("intro\n<!-- bench:run -->\nold\n<!-- /bench:run -->\nafter\n")
    machine = {"date": "2026-12-04T00:00:00", "hive_store": "0", "python": "3.11",
               "sqlite_version": "3.40", "cpu_count": 2, "platform": "x", "quick": True,
               "loadavg_start": [1.0], "loadavg_end": [2.0]}
    scenario = {"key": "get", "scenario": "messages.get", "unit": "reads/s", "raw": 100.0,
                "ours": 60.0, "ratio": 0.6, "ratio_min": 0.5, "ratio_max": 0.7,
                "ratio_cpu": 0.6, "target": 0.7, "met": False}
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"machine": machine, "scenarios": [scenario]}))
    assert report.main(["--run", str(run), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("intro\n<!-- bench:run -->\n") and text.endswith(
        "<!-- /bench:run -->\nafter\n")
    assert "smoke run" in text and "0.60 (0.50-0.70)" in text
    assert "Targets not met: `get` (0.60 < 0.70)." in text
    assert report.main(["--run", str(run), "--doc", str(doc), "--check"]) == 0

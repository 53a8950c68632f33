"""Statistics: numbers against hand-computed and generated data, the window, the query plans
(no full scans of big tables), `hive-store stats` and its plot."""

from __future__ import annotations

import itertools
import json
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import hive_store_health
import pytest
from click.testing import CliRunner, Result
from hive_store_health.stats import QUERIES, STATS_INDEX, window
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hive_store
from hive_store.cli import make_cli
from hive_store.plugins import Plugins
from hive_store.store import StageOutput
from tests.conftest import isolated_plugins

STAGES = ("generator", "refiner", "validator", "curator")
MODELS = ("anthropic/claude-3-haiku", "openai/gpt-4o", "google/gemini-flash")




@pytest.fixture
def plugins() -> Plugins:
    return isolated_plugins()


@pytest.fixture
def store(db_path: Path, plugins: Plugins) -> Iterator[hive_store.Store]:
    with hive_store.open(f"sqlite://{db_path}", plugins=plugins) as s:
        yield s


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def run(store: hive_store.Store, started: datetime, specs: list[tuple[str, int, int, float]],
        completed: datetime | None = None) -> str:
    """Record a consensus run; ``specs`` are (model, tokens_in, tokens_out, cost) per stage."""
    stages = [StageOutput(stage=s, model=m, answer=f"{s} says hi", tokens_input=ti,
                          tokens_output=to, cost=c)
              for s, (m, ti, to, c) in zip(STAGES, specs, strict=True)]
    return store.record_consensus("q?", stages, started_at=started,
                                  completed_at=completed or started).conversation_id


def legacy_run(store: hive_store.Store, stamp: str, model: str, cost: float,
               tokens: tuple[int, int], key: str) -> None:
    """A conversation as the old Hive apps wrote it: ``YYYY-MM-DD HH:MM:SS`` timestamps, stage
    messages, a usage record, and no pipeline_complete activity."""
    with store.backend.transaction() as conn:
        conn.execute("INSERT INTO conversations (id, total_cost, input_tokens, output_tokens, "
                     "created_at) VALUES (?, ?, ?, ?, ?)", (key, cost, *tokens, stamp))
        conn.executemany("INSERT INTO messages (id, conversation_id, role, content, stage, "
                         "model_used, timestamp) VALUES (?, ?, 'assistant', 'a', ?, ?, ?)",
                         [(f"{key}-{s}", key, s, model, stamp) for s in ("generator", "curator")])
        conn.execute("INSERT INTO usage_records (id, conversation_id, action_type, cost, "
                     "tokens_input, tokens_output, model_used, timestamp) "
                     "VALUES (?, ?, 'conversation', ?, ?, ?, ?, ?)",
                     (f"{key}-u", key, cost, *tokens, model, stamp))


A, B, C = MODELS


def test_hand_computed_window(store: hive_store.Store) -> None:
    spec1 = [(A, 10, 20, 0.1), (B, 5, 5, 0.2), (C, 1, 2, 0.3), (A, 3, 4, 0.4)]
    spec2 = [(B, 100, 0, 0.01), (B, 0, 100, 0.02), (C, 7, 7, 0.03), (A, 1, 1, 0.04)]
    run(store, at("2024-03-01T10:00:00"), spec1)
    # started on the 1st, completed on the 2nd: the conversation (and its stages) count on
    # the 1st, its usage record (stamped at completion) on the 2nd
    run(store, at("2024-03-01T23:59:59"), spec2, completed=at("2024-03-02T00:00:30"))
    run(store, at("2024-03-03T12:00:00"), spec1)
    run(store, at("2024-03-04T00:00:00"), spec1)  # after the window
    run(store, at("2024-02-29T23:59:59"), spec1)  # before it
    legacy_run(store, "2024-03-02 08:00:00", "legacy/model", 0.5, (7, 8), "legacy-1")
    store.log_activity("query_error", created_at=at("2024-03-02T10:00:00"))

    data = hive_store_health.stats(store, since="2024-03-01", until=date(2024, 3, 3))
    assert data["window"] == {"since": "2024-03-01", "until": "2024-03-03", "days": 3}
    approx = pytest.approx
    assert data["daily"] == [
        {"day": "2024-03-01", "conversations": 2, "cost": approx(1.1),
         "tokens_input": 19 + 108, "tokens_output": 31 + 108},
        {"day": "2024-03-02", "conversations": 1, "cost": approx(0.5),
         "tokens_input": 7, "tokens_output": 8},
        {"day": "2024-03-03", "conversations": 1, "cost": approx(1.0),
         "tokens_input": 19, "tokens_output": 31},
    ]
    assert data["totals"] == {"conversations": 4, "cost": approx(2.6), "tokens_input": 153,
                              "tokens_output": 178}
    models = {e["model"]: e for e in data["by_model"]}
    # A: spec1 gen+cur twice (4 runs, 0.5 each run pair), spec2 cur once
    assert models[A] == {"model": A, "messages": 5, "runs": 5, "cost": approx(1.04),
                         "tokens_input": 27, "tokens_output": 49}
    assert models[B] == {"model": B, "messages": 4, "runs": 4, "cost": approx(0.43),
                         "tokens_input": 110, "tokens_output": 110}
    assert models[C] == {"model": C, "messages": 3, "runs": 3, "cost": approx(0.63),
                         "tokens_input": 9, "tokens_output": 11}
    assert models["legacy/model"] == {"model": "legacy/model", "messages": 2, "runs": 0,
                                      "cost": 0.0, "tokens_input": 0, "tokens_output": 0}
    assert [e["model"] for e in data["by_model"]] == [A, C, B, "legacy/model"]  # by cost
    stages = {e["stage"]: e for e in data["by_stage"]}
    assert [e["stage"] for e in data["by_stage"]] == list(STAGES)
    assert stages["generator"] == {"stage": "generator", "messages": 4, "runs": 3,
                                   "cost": approx(0.21), "tokens_input": 120,
                                   "tokens_output": 40}
    assert stages["curator"]["messages"] == 4 and stages["curator"]["cost"] == approx(0.84)
    assert stages["refiner"]["messages"] == 3
    assert data["usage"]["daily"] == [
        {"day": "2024-03-01", "records": 1, "cost": approx(1.0), "tokens_input": 19,
         "tokens_output": 31},
        {"day": "2024-03-02", "records": 2, "cost": approx(0.6), "tokens_input": 115,
         "tokens_output": 116},
        {"day": "2024-03-03", "records": 1, "cost": approx(1.0), "tokens_input": 19,
         "tokens_output": 31},
    ]
    usage_models = {e["model"]: e["records"] for e in data["usage"]["by_model"]}
    assert usage_models == {A: 3, "legacy/model": 1}  # the usage record names the curator
    assert data["events"] == [
        {"day": "2024-03-01", "event_type": "pipeline_complete", "count": 1},
        {"day": "2024-03-02", "event_type": "pipeline_complete", "count": 1},
        {"day": "2024-03-02", "event_type": "query_error", "count": 1},
        {"day": "2024-03-03", "event_type": "pipeline_complete", "count": 1},
    ]
    assert data["row_counts"]["conversations"] == 6 == store.conversations.count()
    assert data["row_counts"]["messages"] == store.messages.count()
    db = data["database"]
    assert db["auto_vacuum"] == "incremental" and db["journal_mode"] == "wal"
    assert db["size_bytes"] == db["page_count"] * db["page_size"] or db["wal_bytes"] > 0


def test_window_rules() -> None:
    today = date(2024, 6, 30)
    assert window(today=today) == (date(2024, 6, 1), today)
    assert window(until="2024-01-10", days=3) == (date(2024, 1, 8), date(2024, 1, 10))
    assert window(since="2024-01-10", until="2024-01-10") == (date(2024, 1, 10),) * 2
    evening = datetime(2024, 1, 10, 23, 30, tzinfo=UTC) + timedelta(hours=0)
    assert window(since=evening.astimezone(), until=evening)[0] == date(2024, 1, 10)
    with pytest.raises(hive_store.ConfigurationError, match="after"):
        window(since="2024-02-01", until="2024-01-01")
    with pytest.raises(hive_store.ConfigurationError, match="YYYY-MM-DD"):
        window(since="yesterday")


@st.composite
def runs(draw: Any) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(0, 8))):
        out.append({
            "day": draw(st.integers(0, 9)),
            "second": draw(st.integers(0, 86399)),
            "legacy": draw(st.booleans()),
            "specs": [(draw(st.sampled_from(MODELS)), draw(st.integers(0, 500)),
                       draw(st.integers(0, 500)), draw(st.integers(0, 999)) / 1000)
                      for _ in STAGES],
        })
    return out


_years = itertools.count(1900)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(generated=runs())
def test_generated_runs_match_a_model(store: hive_store.Store,
                                      generated: list[dict[str, Any]]) -> None:
    base = date(next(_years), 1, 1)  # every example in its own year of the same database
    first, last = base + timedelta(days=2), base + timedelta(days=7)
    daily: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0, 0])
    model_msgs: dict[str, int] = defaultdict(int)
    model_runs: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0, 0])
    stage_msgs: dict[str, int] = defaultdict(int)
    for i, r in enumerate(generated):
        when = datetime.combine(base + timedelta(days=r["day"]), datetime.min.time(),
                                UTC) + timedelta(seconds=r["second"])
        total = sum(s[3] for s in r["specs"])
        tin, tout = sum(s[1] for s in r["specs"]), sum(s[2] for s in r["specs"])
        if r["legacy"]:
            model = r["specs"][0][0]
            legacy_run(store, when.strftime("%Y-%m-%d %H:%M:%S"), model, total, (tin, tout),
                       f"legacy-{base.year}-{i}")
        else:
            run(store, when, r["specs"])
        if not first <= when.date() <= last:
            continue
        d = daily[when.date().isoformat()]
        d[0] += 1
        d[1] += total
        d[2] += tin
        d[3] += tout
        if r["legacy"]:
            model_msgs[r["specs"][0][0]] += 2
            stage_msgs["generator"] += 1
            stage_msgs["curator"] += 1
            continue
        for stage, (m, ti, to, c) in zip(STAGES, r["specs"], strict=True):
            model_msgs[m] += 1
            stage_msgs[stage] += 1
            agg = model_runs[m]
            agg[0] += 1
            agg[1] += c
            agg[2] += ti
            agg[3] += to

    data = hive_store_health.stats(store, since=first, until=last)
    got_daily = {r["day"]: [r["conversations"], r["cost"], r["tokens_input"],
                            r["tokens_output"]] for r in data["daily"]}
    assert got_daily.keys() == daily.keys()
    for day, expected in daily.items():
        assert got_daily[day] == [expected[0], pytest.approx(expected[1]), expected[2],
                                  expected[3]]
    got_models = {e["model"]: e for e in data["by_model"]}
    assert {m: e["messages"] for m, e in got_models.items()} == dict(model_msgs)
    for m, (n, cost, ti, to) in model_runs.items():
        e = got_models[m]
        assert [e["runs"], e["tokens_input"], e["tokens_output"]] == [n, ti, to]
        assert e["cost"] == pytest.approx(cost)
    assert {e["stage"]: e["messages"] for e in data["by_stage"]} == dict(stage_msgs)
    assert data["totals"]["conversations"] == sum(int(d[0]) for d in daily.values())


# -- query plans -----------------------------------------------------------------------------------


def _bulk(store: hive_store.Store, conversations: int = 3000) -> None:
    """Big tables quickly: conversations over 100 days, 4 messages, 1 activity and 1 usage
    record each."""
    meta = json.dumps({"stages": [{"stage": s, "model": A, "tokens_input": 1,
                                   "tokens_output": 1, "cost": 0.001} for s in STAGES]})
    start = datetime(2024, 1, 1, tzinfo=UTC)
    convs: list[tuple[Any, ...]] = []
    msgs: list[tuple[Any, ...]] = []
    acts: list[tuple[Any, ...]] = []
    usage: list[tuple[Any, ...]] = []
    for i in range(conversations):
        stamp = (start + timedelta(minutes=48 * i)).isoformat(timespec="microseconds")
        cid = f"c{i:06d}"
        convs.append((cid, 0.004, 4, 4, stamp))
        msgs.extend((f"{cid}-{s}", cid, s, A, stamp) for s in STAGES)
        acts.append((cid, meta, stamp))
        usage.append((f"{cid}-u", cid, 0.004, A, stamp))
    with store.backend.transaction() as conn:
        conn.executemany("INSERT INTO conversations (id, total_cost, input_tokens, "
                         "output_tokens, created_at) VALUES (?, ?, ?, ?, ?)", convs)
        conn.executemany("INSERT INTO messages (id, conversation_id, role, content, stage, "
                         "model_used, timestamp) VALUES (?, ?, 'assistant', 'x', ?, ?, ?)", msgs)
        conn.executemany("INSERT INTO activity_log (event_type, conversation_id, metadata, "
                         "created_at) VALUES ('pipeline_complete', ?, ?, ?)", acts)
        conn.executemany("INSERT INTO usage_records (id, conversation_id, action_type, cost, "
                         "model_used, timestamp) VALUES (?, ?, 'conversation', ?, ?, ?)", usage)


BIG = {"conversations", "messages", "activity_log", "usage_records"}
EXPECTED_INDEX = {
    "daily": {"c": STATS_INDEX},
    "messages": {"c": STATS_INDEX, "m": "idx_messages_conversation"},
    "stage_runs": {"c": STATS_INDEX, "a": "idx_activity_log_conversation"},
    "usage_daily": {"u": "idx_usage_timestamp"},
    "usage_models": {"u": "idx_usage_timestamp"},
    "events": {"a": "idx_activity_log_created"},
}


def _assert_plans(plans: dict[str, list[str]]) -> None:
    assert plans.keys() == QUERIES.keys() == EXPECTED_INDEX.keys()
    for name, lines in plans.items():
        for line in lines:
            # json_each is a virtual table; every real table must be searched through an index
            assert not line.startswith("SCAN ") or "VIRTUAL TABLE" in line, (name, line)
        for alias, index in EXPECTED_INDEX[name].items():
            assert any(line.startswith(f"SEARCH {alias} USING ") and f"INDEX {index} " in line
                       for line in lines), (name, alias, index, lines)


def test_query_plans_use_indexes(store: hive_store.Store) -> None:
    _bulk(store)
    _assert_plans(hive_store_health.query_plans(store))
    hive_store_health.Maintenance(store).optimize(analyze=True)  # with statistics, too
    plans = hive_store_health.query_plans(store)
    _assert_plans(plans)
    assert "COVERING INDEX" in plans["daily"][0]
    # and the numbers are right on the big tables
    data = hive_store_health.stats(store, since="2024-01-01", until="2024-01-10")
    assert data["totals"]["conversations"] == 300  # one every 48 minutes, 30 a day
    assert {e["stage"]: e["runs"] for e in data["by_stage"]} == dict.fromkeys(STAGES, 300)


def test_bad_metadata_is_skipped(store: hive_store.Store) -> None:
    cid = run(store, at("2024-05-05T05:00:00"), [(A, 1, 1, 0.5)] * 4)
    with store.backend.transaction() as conn:
        for meta in ("not json", '{"stages": 3}', '{"stages": [1, "x", null]}', None):
            conn.execute("INSERT INTO activity_log (event_type, conversation_id, metadata) "
                         "VALUES ('pipeline_complete', ?, ?)", (cid, meta))
    data = hive_store_health.stats(store, since="2024-05-05", until="2024-05-05")
    assert data["by_stage"][0]["runs"] == 1 and data["totals"]["cost"] == pytest.approx(2.0)


# -- the command and the plot -------------------------------------------------------------------


def invoke(plugins: Plugins, *args: str) -> Result:
    result = CliRunner().invoke(make_cli(plugins), list(args))
    assert "Traceback" not in result.output
    return result


def test_stats_command(store: hive_store.Store, plugins: Plugins, db_path: Path,
                       tmp_path: Path) -> None:
    run(store, at("2024-03-01T10:00:00"), [(A, 1, 2, 0.25)] * 4)
    db = str(db_path)
    data = json.loads(invoke(plugins, "--db", db, "stats", "--since", "2024-03-01",
                             "--until", "2024-03-01", "--json").output)
    assert set(data) == {"window", "database", "row_counts", "totals", "daily", "by_model",
                         "by_stage", "usage", "events"}
    assert data["totals"]["cost"] == pytest.approx(1.0)
    human = invoke(plugins, "--db", db, "stats", "--since", "2024-03-01", "--until",
                   "2024-03-02")
    assert human.exit_code == 0 and "2024-03-01" in human.output and "generator" in human.output
    bad = invoke(plugins, "--db", db, "stats", "--since", "March")
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output
    backwards = invoke(plugins, "--db", db, "stats", "--since", "2024-03-02", "--until",
                       "2024-03-01")
    assert backwards.exit_code == 2 and "after" in backwards.output
    missing = invoke(plugins, "--db", str(tmp_path / "none.db"), "stats")
    assert missing.exit_code == 1 and "no database at" in missing.output
    assert not (tmp_path / "none.db").exists()

    png = tmp_path / "out" / "stats.png"
    drawn = invoke(plugins, "--db", db, "stats", "--since", "2024-02-20", "--until",
                   "2024-03-05", "--plot", str(png))
    assert drawn.exit_code == 0, drawn.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_plot_without_matplotlib(store: hive_store.Store, plugins: Plugins, db_path: Path,
                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("matplotlib", "matplotlib.dates", "matplotlib.figure",
                 "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(hive_store_health.PlotUnavailable, match="hive-store\\[plot\\]"):
        hive_store_health.plot(hive_store_health.stats(store), tmp_path / "x.png")
    result = invoke(plugins, "--db", str(db_path), "stats", "--plot", str(tmp_path / "x.png"))
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: plotting needs matplotlib: "
                                     "pip install 'hive-store[plot]'")


def test_memory_store_stats(plugins: Plugins) -> None:
    with hive_store.open(":memory:", plugins=plugins) as store:
        run(store, datetime.now(UTC), [(A, 1, 1, 0.1)] * 4)
        data = hive_store_health.stats(store)
    assert data["database"]["path"] == ":memory:" and data["database"]["size_bytes"] is None
    assert data["totals"]["conversations"] == 1


def test_stats_inside_a_transaction_see_its_writes(store: hive_store.Store) -> None:
    with store.transaction():
        run(store, at("2024-07-07T07:07:07"), [(A, 1, 1, 0.1)] * 4)
        data = hive_store_health.stats(store, since="2024-07-07", until="2024-07-07")
        assert data["totals"]["conversations"] == 1

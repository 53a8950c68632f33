"""``hive-store memory …`` through click's runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import hive_store
from hive_store import StageOutput
from hive_store.cli import make_cli
from hive_store.plugins import Plugins


def invoke(*args: str) -> Result:
    plugins = Plugins().ensure_loaded()
    result = CliRunner().invoke(make_cli(plugins), list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def db(db_path: Path) -> str:
    with hive_store.open(f"sqlite://{db_path}") as store:
        for question, answer in [
            ("How does SQLite's WAL mode handle readers?",
             "Readers see a snapshot while one writer appends to the WAL."),
            ("What is a WAL checkpoint?", "A checkpoint copies WAL pages back to the database."),
            ("How do I run Python asyncio tasks?", "Create tasks and await them in one loop."),
        ]:
            store.record_consensus(question, [StageOutput(stage=s, model="m", answer=answer)
                                              for s in ("generator", "refiner", "validator",
                                                        "curator")])
    return str(db_path)


def data(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_search_human_and_json(db: str) -> None:
    human = invoke("--db", db, "memory", "search", "checkpoint",
                   "--kind", "knowledge_conversations")
    assert human.exit_code == 0, human.output
    assert "1. knowledge_conversations" in human.output and "checkpoint" in human.output
    out = data(invoke("--db", db, "memory", "search", "wal", "--json", "--limit", "2"))
    assert len(out["hits"]) == 2 and out["advanced"] is False
    hit = out["hits"][0]
    assert {"kind", "key", "score", "snippet", "highlights", "marked", "entity"} <= set(hit)
    assert "[WAL]" in hit["marked"] or "[wal]" in hit["marked"].lower()
    same = data(invoke("--db", db, "--json", "memory", "search", "wal", "--limit", "2"))
    assert [h["key"] for h in same["hits"]] == [h["key"] for h in out["hits"]]
    none = invoke("--db", db, "memory", "search", "zzzunknownzzz")
    assert none.exit_code == 0 and "no matches" in none.output
    later = data(invoke("--db", db, "memory", "search", "wal", "--json", "--since", "2999-01-01"))
    assert later["hits"] == []


def test_search_errors_are_one_line(db: str) -> None:
    bad = invoke("--db", db, "memory", "search", "foo AND (", "--advanced")
    assert bad.exit_code == 1
    assert bad.output.startswith("Error: invalid MemorySearch: text: not a valid full-text query")
    assert len(bad.output.strip().splitlines()) == 1
    ok = data(invoke("--db", db, "memory", "search", "wal OR asyncio", "--advanced", "--json"))
    assert len(ok["hits"]) > 2
    assert invoke("--db", db, "memory", "search", "x", "--since", "yesterday").exit_code == 2
    assert invoke("--db", db, "memory", "search", "x", "--kind", "users").exit_code == 2
    assert invoke("--db", db, "memory", "search", "x", "--limit", "0").exit_code == 2


def test_themes(db: str) -> None:
    out = data(invoke("--db", db, "memory", "themes", "--json"))
    assert out["unassigned"] == 0 and out["stale"] is False and out["space"] == "tfidf"
    assert out["topics"] and out["themes_without_topic"] == []
    sizes = [t["member_count"] for t in out["topics"]]
    assert sum(sizes) == 3 and sizes == sorted(sizes, reverse=True)
    themes = [t for topic in out["topics"] for t in topic["themes"]]
    assert sum(t["member_count"] for t in themes) == 3
    assert all(t["keywords"] and t["topic"].startswith("theme:") for t in themes)
    assert all(t["topic_id"] == topic["id"] for topic in out["topics"] for t in topic["themes"])
    human = invoke("--db", db, "memory", "themes")
    assert human.exit_code == 0
    assert out["topics"][0]["name"] in human.output and themes[0]["name"] in human.output


def test_recluster_reindex_status(db: str) -> None:
    recluster = invoke("--db", db, "memory", "recluster", "--threshold", "0.99")
    assert recluster.exit_code == 0, recluster.output
    assert "3 entries in 3 themes" in recluster.output
    assert invoke("--db", db, "memory", "recluster", "--threshold", "0").exit_code == 2
    reindex = invoke("--db", db, "memory", "reindex")
    assert reindex.exit_code == 0 and "reindexed 21 documents" in reindex.output
    status = data(invoke("--db", db, "--json", "memory", "status"))
    assert status["in_step"] and status["pending"] == 0 and status["themes"] == 3
    assert status["rows"]["messages"] == 15
    assert "in step" in invoke("--db", db, "memory", "status").output


def test_context(db: str) -> None:
    out = data(invoke("--db", db, "memory", "context", "tell me more about WAL", "--json"))
    assert out["follow_up"]["rule"] == "tell_me_more"
    assert out["items"] and out["items"][0]["layer"] == "recent_24h"
    human = invoke("--db", db, "memory", "context", "tell me more about WAL")
    assert "follow-up: tell_me_more" in human.output and "recent_24h" in human.output
    usage = invoke("--db", db, "memory", "context", "q", "--record")
    assert usage.exit_code == 2 and "--conversation" in usage.output
    missing = invoke("--db", db, "memory", "context", "q", "--record", "--conversation", "nope")
    assert missing.exit_code == 1 and "not found" in missing.output

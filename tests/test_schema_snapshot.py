"""A fresh hive-store database has exactly the canonical Hive schema and seed rows.

The expected schema is derived independently of ``migrations/*.sql``:

* for the tables of Hive migrations 001-010, from the real legacy database
  ``hive-ai-v10.db`` (read through the same PRAGMAs), with the documented corrections applied
  here: ``conversations.consensus_profile_id`` references ``consensus_profiles`` (the fixture
  points at the dropped ``consensus_profiles_backup``), double-quoted string defaults become
  single-quoted, and the old runner's ``schema_migrations`` table is not part of the schema
  (a fresh file has it too, for the old Hive apps: it is compared on its own below);
* for ``licenses`` (011), ``daily_usage_summary`` (012) and ``consensus_facts`` (013), from the
  literal spec below (written from the Hive migration files as described in hive-schema.md).

hive-store's own bookkeeping tables (``hive_store_*`` / ``_hive_store*``) are ignored.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.conftest import legacy_fixture

LEGACY_DB = "hive-ai-v10.db"

# --------------------------------------------------------------------------------------------
# Spec records (NamedTuples compare equal to plain tuples; their repr names the fields)


class Column(NamedTuple):
    name: str
    type: str
    notnull: int
    default: str | None
    pk: int


class ForeignKey(NamedTuple):
    table: str
    from_: str
    to: str
    on_update: str
    on_delete: str


class Index(NamedTuple):
    name: str  # "sqlite_autoindex" for the indexes SQLite makes for PRIMARY KEY / UNIQUE
    origin: str  # "c" CREATE INDEX, "u" UNIQUE constraint, "pk" PRIMARY KEY
    unique: int
    partial: int
    columns: tuple[tuple[str, int, str], ...]  # (column, desc, collation)
    where: str | None


class Check(NamedTuple):
    column: str  # "" for a table constraint
    expr: str


# --------------------------------------------------------------------------------------------
# The tables of Hive migrations 011-013 (hive-schema.md, "Later migrations")

N = "NO ACTION"


def _key(col: str, desc: int = 0) -> tuple[str, int, str]:
    return (col, desc, "BINARY")


def _auto(origin: str, *cols: str) -> Index:
    return Index("sqlite_autoindex", origin, 1, 0, tuple(_key(c) for c in cols), None)


def _idx(name: str, *cols: str) -> Index:
    return Index(name, "c", 0, 0, tuple(_key(c) for c in cols), None)


NEW_TABLES: dict[str, dict[str, Any]] = {
    "licenses": {
        "columns": [
            Column("id", "INTEGER", 0, None, 1),
            Column("key", "TEXT", 1, None, 0),
            Column("tier", "TEXT", 1, None, 0),
            Column("daily_limit", "INTEGER", 1, None, 0),
            Column("features", "TEXT", 0, None, 0),
            Column("user_id", "TEXT", 1, None, 0),
            Column("email", "TEXT", 0, None, 0),
            Column("expires_at", "TEXT", 0, None, 0),
            Column("validated_at", "TEXT", 1, None, 0),
            Column("created_at", "TEXT", 0, "CURRENT_TIMESTAMP", 0),
            Column("updated_at", "TEXT", 0, "CURRENT_TIMESTAMP", 0),
        ],
        "foreign_keys": [],
        "indexes": sorted([
            _auto("u", "key"),
            _idx("idx_licenses_user_id", "user_id"),
            _idx("idx_licenses_key", "key"),
        ]),
        "checks": [],
        "unique": [("key",)],
        "autoincrement": ["id"],
    },
    "daily_usage_summary": {
        "columns": [
            Column("id", "TEXT", 0, None, 1),
            Column("user_id", "TEXT", 1, None, 0),
            Column("date", "DATE", 1, None, 0),
            Column("conversation_count", "INTEGER", 1, "0", 0),
            Column("total_cost", "REAL", 1, "0.0", 0),
            Column("total_tokens", "INTEGER", 1, "0", 0),
            Column("average_response_time", "REAL", 0, None, 0),
            Column("created_at", "TEXT", 1, None, 0),
            Column("updated_at", "TEXT", 1, None, 0),
        ],
        "foreign_keys": [ForeignKey("users", "user_id", "id", N, "CASCADE")],
        "indexes": sorted([
            _auto("pk", "id"),
            _auto("u", "user_id", "date"),
            _idx("idx_daily_usage_user_date", "user_id", "date"),
            _idx("idx_daily_usage_date", "date"),
        ]),
        "checks": [],
        "unique": [("user_id", "date")],
        "autoincrement": [],
    },
    "consensus_facts": {
        "columns": [
            Column("id", "TEXT", 0, None, 1),
            Column("semantic_fingerprint", "TEXT", 1, None, 0),
            Column("content", "TEXT", 1, None, 0),
            Column("curator_confidence", "REAL", 1, "0.0", 0),
            Column("source_question", "TEXT", 1, None, 0),
            Column("source_conversation_id", "TEXT", 0, None, 0),
            Column("consensus_stages", "TEXT", 1, "'[]'", 0),
            Column("created_at", "TEXT", 1, None, 0),
            Column("last_accessed", "TEXT", 1, None, 0),
            Column("access_count", "INTEGER", 1, "0", 0),
            Column("related_facts", "TEXT", 1, "'[]'", 0),
            Column("topics", "TEXT", 1, "'[]'", 0),
            Column("entities", "TEXT", 1, "'[]'", 0),
            Column("metadata", "TEXT", 1, "'{}'", 0),
        ],
        "foreign_keys": [],
        "indexes": sorted([
            _auto("pk", "id"),
            _auto("u", "semantic_fingerprint"),
            _idx("idx_consensus_facts_fingerprint", "semantic_fingerprint"),
            _idx("idx_consensus_facts_created_at", "created_at"),
            _idx("idx_consensus_facts_topics", "topics"),
            _idx("idx_consensus_facts_access_count", "access_count"),
            _idx("idx_consensus_facts_confidence", "curator_confidence"),
        ]),
        "checks": [],
        "unique": [("semantic_fingerprint",)],
        "autoincrement": [],
    },
}

# The documented corrections to the legacy (v10) schema: (table, column) -> (legacy, canonical)
FK_CORRECTIONS = {("conversations", "consensus_profile_id"):
                  ("consensus_profiles_backup", "consensus_profiles")}
DEFAULT_CORRECTIONS = {
    ("conversations", "success_rate"): ('"100"', "'100'"),
    ("conversations", "confidence_level"): ('"High"', "'High'"),
}
# The old Hive runner's record: bookkeeping, not schema (core migration 0003 writes it).
LEGACY_ONLY_TABLES = {"schema_migrations"}
HIVE_RECORD_FIXTURE = "hive-ai-v13.db"  # all 13 versions, as Hive's runner records them

# Seed rows (Hive migrations 007 and 009)
PROVIDER_IDS = ("anthropic", "openai", "google", "meta-llama", "mistralai")
PROFILE_IDS = (
    "lightning-fast", "precision-architect", "budget-optimizer", "research-deep-dive",
    "startup-mvp", "enterprise-grade", "creative-innovator", "security-focused",
    "ml-ai-specialist", "debugging-detective",
)
SEED_TIMESTAMP_COLUMNS = {
    "openrouter_providers": {"last_updated", "created_at"},
    "openrouter_models": {"created_at", "last_updated"},
    "consensus_profiles": {"created_at", "updated_at"},
    "consensus_settings": {"updated_at"},
}


# --------------------------------------------------------------------------------------------
# Locating and reading the legacy fixture


def _legacy_dir() -> Path:
    return legacy_fixture(LEGACY_DB).parent


@pytest.fixture(scope="module")
def legacy_conn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    """A read-only connection to a private copy of the legacy v10 database."""
    copy = tmp_path_factory.mktemp("legacy") / LEGACY_DB
    shutil.copyfile(_legacy_dir() / LEGACY_DB, copy)
    conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    yield conn
    conn.close()


@pytest.fixture
def fresh_conn(fresh_db: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the freshly created and migrated database."""
    conn = sqlite3.connect(f"file:{fresh_db}?mode=ro", uri=True)
    yield conn
    conn.close()


# --------------------------------------------------------------------------------------------
# A small SQL tokenizer for what PRAGMAs do not report (CHECK, UNIQUE, AUTOINCREMENT, WHERE)

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
      | (?P<string>'(?:[^']|'')*')
      | (?P<ident>"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\])
      | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
      | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<op><=|>=|<>|!=|==|\|\||<<|>>|.)""",
    re.S | re.X,
)
# Expression keywords, upper-cased when rendering a CHECK or WHERE clause (identifiers keep case)
_EXPR_KEYWORDS = {"AND", "OR", "NOT", "IN", "IS", "NULL", "BETWEEN", "LIKE", "GLOB", "ESCAPE",
                  "CASE", "WHEN", "THEN", "ELSE", "END", "COLLATE"}


def _tokens(sql: str) -> list[str]:
    """The tokens of ``sql`` without whitespace and comments (strings kept whole)."""
    return [m.group() for m in _TOKEN.finditer(sql) if m.lastgroup not in ("ws", "comment")]


def _render(tokens: list[str]) -> str:
    """Tokens joined by single spaces, none after "(" nor before ")" or ","."""
    out = ""
    for i, tok in enumerate(tokens):
        if i and tokens[i - 1] != "(" and tok not in (")", ","):
            out += " "
        out += tok.upper() if tok.upper() in _EXPR_KEYWORDS else tok
    return out


def _unquote(ident: str) -> str:
    if ident[:1] in "\"`[" and len(ident) > 1:
        return ident[1:-1].replace('""', '"').replace("``", "`")
    return ident


def _balanced(tokens: list[str], start: int) -> int:
    """Index just past the parenthesis group that opens at ``tokens[start]``."""
    depth = 0
    for i in range(start, len(tokens)):
        depth += {"(": 1, ")": -1}.get(tokens[i], 0)
        if depth == 0:
            return i + 1
    raise AssertionError(f"unbalanced parentheses in {_render(tokens)!r}")


def _split_top_level(tokens: list[str]) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    depth = 0
    for tok in tokens:
        if tok == "," and depth == 0:
            parts.append([])
            continue
        depth += {"(": 1, ")": -1}.get(tok, 0)
        parts[-1].append(tok)
    return [p for p in parts if p]


def table_constraints(create_sql: str) -> dict[str, list[Any]]:
    """CHECK clauses, UNIQUE constraints and AUTOINCREMENT columns of a CREATE TABLE."""
    tokens = _tokens(create_sql)
    open_at = tokens.index("(")
    body = tokens[open_at + 1:_balanced(tokens, open_at) - 1]
    checks: list[Check] = []
    unique: list[tuple[str, ...]] = []
    autoincrement: list[str] = []
    for part in _split_top_level(body):
        head = part[0].upper()
        if head == "CONSTRAINT":
            part = part[2:]
            head = part[0].upper()
        column = "" if head in ("PRIMARY", "UNIQUE", "CHECK", "FOREIGN") else _unquote(part[0])
        i = 0 if not column else 1
        while i < len(part):
            tok = part[i]
            if tok == "(":
                i = _balanced(part, i)
                continue
            if tok.upper() == "CHECK" and i + 1 < len(part) and part[i + 1] == "(":
                end = _balanced(part, i + 1)
                checks.append(Check(column, _render(part[i + 2:end - 1])))
                i = end
                continue
            if tok.upper() == "UNIQUE":
                if column:
                    unique.append((column,))
                else:
                    end = _balanced(part, i + 1)
                    cols = _split_top_level(part[i + 2:end - 1])
                    unique.append(tuple(_unquote(c[0]) for c in cols))
                    i = end
                    continue
            if tok.upper() == "AUTOINCREMENT" and column:
                autoincrement.append(column)
            i += 1
    return {"checks": sorted(checks), "unique": sorted(unique),
            "autoincrement": sorted(autoincrement)}


def index_where(create_sql: str | None) -> str | None:
    """The WHERE clause of a partial index, normalised."""
    if not create_sql:
        return None
    tokens = _tokens(create_sql)
    depth = 0
    for i, tok in enumerate(tokens):
        depth += {"(": 1, ")": -1}.get(tok, 0)
        if tok.upper() == "WHERE" and depth == 0:
            return _render([t for t in tokens[i + 1:] if t != ";"])
    return None


# --------------------------------------------------------------------------------------------
# Reading a schema through PRAGMAs


def _is_bookkeeping(name: str) -> bool:
    return name.startswith(("hive_store_", "_hive_store")) or name.startswith("sqlite_")


def user_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    return [name for (name,) in rows if not _is_bookkeeping(name)]


def table_spec(conn: sqlite3.Connection, table: str) -> dict[str, Any]:
    q = table.replace('"', '""')
    columns = [Column(name, type_, notnull, default, pk)
               for _cid, name, type_, notnull, default, pk
               in conn.execute(f'PRAGMA table_info("{q}")')]
    fks = sorted(ForeignKey(ref, from_, to, on_update, on_delete)
                 for _id, _seq, ref, from_, to, on_update, on_delete, _match
                 in conn.execute(f'PRAGMA foreign_key_list("{q}")'))
    indexes = []
    for _seq, name, unique, origin, partial in conn.execute(f'PRAGMA index_list("{q}")'):
        if name.startswith("hive_store_"):
            continue  # indexes that plugins own (e.g. hive_store_health_*) are not Hive schema
        iq = name.replace('"', '""')
        cols = tuple((cname, desc, coll)
                     for _seqno, _cid, cname, desc, coll, key
                     in conn.execute(f'PRAGMA index_xinfo("{iq}")') if key)
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?",
                              (name,)).fetchone()
        shown = "sqlite_autoindex" if name.startswith("sqlite_autoindex_") else name
        indexes.append(Index(shown, origin, unique, partial, cols, index_where(sql)))
    (create_sql,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    return {"columns": columns, "foreign_keys": fks, "indexes": sorted(indexes),
            **table_constraints(create_sql)}


def schema_spec(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    return {t: table_spec(conn, t) for t in user_tables(conn)}


def expected_schema(legacy: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """The legacy v10 schema with the documented corrections, plus the 011-013 tables."""
    spec = {t: s for t, s in schema_spec(legacy).items() if t not in LEGACY_ONLY_TABLES}
    for (table, column), (old, new) in FK_CORRECTIONS.items():
        fks = spec[table]["foreign_keys"]
        wrong = [fk for fk in fks if fk.from_ == column]
        assert [fk.table for fk in wrong] == [old], (
            f"the fixture's {table}.{column} FK is {wrong}, expected it to reference {old}")
        spec[table]["foreign_keys"] = sorted(
            fk._replace(table=new) if fk.from_ == column else fk for fk in fks)
    for (table, column), (old, new) in DEFAULT_CORRECTIONS.items():
        cols = spec[table]["columns"]
        [col] = [c for c in cols if c.name == column]
        assert col.default == old, f"the fixture's {table}.{column} default is {col.default!r}"
        spec[table]["columns"] = [c._replace(default=new) if c.name == column else c
                                  for c in cols]
    leftover = [(t, c.name, c.default) for t, s in spec.items() for c in s["columns"]
                if c.default and c.default.startswith('"')]
    assert not leftover, f"undocumented double-quoted defaults in the fixture: {leftover}"
    assert not set(spec) & set(NEW_TABLES), "the v10 fixture already has an 011-013 table"
    return {**spec, **NEW_TABLES}


@pytest.fixture(scope="module")
def expected(legacy_conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    return expected_schema(legacy_conn)


@pytest.fixture
def actual(fresh_conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    return {t: s for t, s in schema_spec(fresh_conn).items() if t not in LEGACY_ONLY_TABLES}


def _assert_aspect(actual: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]],
                   aspect: str) -> None:
    """Compare one aspect of every table; on failure show only the differing tables."""
    differing = sorted(t for t in expected
                       if t in actual and actual[t][aspect] != expected[t][aspect])
    got = {t: actual[t][aspect] for t in differing}
    want = {t: expected[t][aspect] for t in differing}
    assert got == want, f"{aspect} differ in tables {differing}"


# --------------------------------------------------------------------------------------------
# Schema tests


def test_table_set(actual: dict[str, dict[str, Any]],
                   expected: dict[str, dict[str, Any]]) -> None:
    assert sorted(actual) == sorted(expected)


def test_no_views_or_triggers(fresh_conn: sqlite3.Connection) -> None:
    rows = fresh_conn.execute(
        "SELECT type, name FROM sqlite_master WHERE type IN ('view', 'trigger')").fetchall()
    assert [r for r in rows if not _is_bookkeeping(r[1])] == []


@pytest.mark.parametrize("aspect", ["columns", "foreign_keys", "indexes"])
def test_pragmas_match(actual: dict[str, dict[str, Any]],
                       expected: dict[str, dict[str, Any]], aspect: str) -> None:
    _assert_aspect(actual, expected, aspect)


@pytest.mark.parametrize("aspect", ["checks", "unique", "autoincrement"])
def test_constraints_match(actual: dict[str, dict[str, Any]],
                           expected: dict[str, dict[str, Any]], aspect: str) -> None:
    _assert_aspect(actual, expected, aspect)


def test_expected_spec_sanity(expected: dict[str, dict[str, Any]]) -> None:
    """Guards against a tokenizer that silently finds nothing in the fixture."""
    assert len(expected) == 34
    assert expected["conversation_threads"]["checks"] == [Check(
        "thread_type",
        "thread_type IN ('follow_up', 'clarification', 'list_reference', 'continuation')")]
    assert [c.column for c in expected["activity_log"]["checks"]] == ["event_type", "stage"]
    assert expected["conversation_usage"]["unique"] == [("conversation_id",)]
    assert expected["openrouter_models"]["autoincrement"] == ["internal_id"]
    [partial] = [i for i in expected["conversation_usage"]["indexes"] if i.partial]
    assert partial.name == "idx_conversation_usage_token_unique" and partial.unique == 1
    assert partial.where == "conversation_token IS NOT NULL"
    assert [c.name for c in expected["users"]["columns"]][-2:] == [
        "subscription_tier", "last_d1_sync"]
    assert [c.name for c in expected["conversation_usage"]["columns"]][-5:] == [
        "license_key", "verified", "conversation_token", "question_hash", "d1_verified_at"]


def test_tokenizer_ignores_comments_and_strings() -> None:
    sql = """CREATE TABLE "t" (
        a TEXT CHECK (a IN ('x,(y', 'CHECK (z)')), -- a comment, with CHECK (b) UNIQUE
        b INTEGER PRIMARY KEY AUTOINCREMENT /* c UNIQUE */,
        CONSTRAINT named UNIQUE ("a", b),
        CHECK (length(a)   >=  1)
    )"""
    assert table_constraints(sql) == {
        "checks": [Check("", "length (a) >= 1"), Check("a", "a IN ('x,(y', 'CHECK (z)')")],
        "unique": [("a", "b")],
        "autoincrement": ["b"],
    }


def test_foreign_keys_resolve(fresh_conn: sqlite3.Connection) -> None:
    """Every FK of the fresh schema points at an existing table and its key columns."""
    problems = []
    tables = set(user_tables(fresh_conn))
    for table in tables:
        for fk in table_spec(fresh_conn, table)["foreign_keys"]:
            if fk.table not in tables:
                problems.append((table, fk))
                continue
            target = {c.name: c for c in table_spec(fresh_conn, fk.table)["columns"]}
            if fk.to not in target:
                problems.append((table, fk))
    assert problems == []
    assert fresh_conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert fresh_conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


# --------------------------------------------------------------------------------------------
# Seed rows (Hive 007 and 009)


def _typed(row: sqlite3.Row | tuple[Any, ...]) -> tuple[tuple[str, Any], ...]:
    """A row with each value's Python type, so 0 and 0.0 or '1' and 1 differ."""
    return tuple((type(v).__name__, v) for v in row)


def _seed_rows(conn: sqlite3.Connection, table: str, where: str,
               order: str) -> dict[str, Any]:
    cols = [c for (_, c, *_rest) in conn.execute(f"PRAGMA table_info({table})")
            if c not in SEED_TIMESTAMP_COLUMNS[table]]
    rows = conn.execute(
        f"SELECT {', '.join(cols)} FROM {table} WHERE {where} ORDER BY {order}").fetchall()
    return {"columns": cols, "rows": [_typed(r) for r in rows]}


SEEDS = {
    "openrouter_providers": (f"id IN ({', '.join(repr(p) for p in PROVIDER_IDS)})", "id"),
    "openrouter_models": ("internal_id BETWEEN 1 AND 13", "internal_id"),
    "consensus_profiles": (f"id IN ({', '.join(repr(p) for p in PROFILE_IDS)})", "id"),
    "consensus_settings": ("key = 'active_profile_id'", "key"),
}


def test_seed_row_counts(fresh_conn: sqlite3.Connection) -> None:
    count = {t: fresh_conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in SEEDS}
    assert count == {"openrouter_providers": 5, "openrouter_models": 13,
                     "consensus_profiles": 10, "consensus_settings": 1}
    ids = [r[0] for r in fresh_conn.execute(
        "SELECT internal_id FROM openrouter_models ORDER BY internal_id")]
    assert ids == list(range(1, 14))
    assert sorted(r[0] for r in fresh_conn.execute("SELECT id FROM openrouter_providers")) == \
        sorted(PROVIDER_IDS)
    assert sorted(r[0] for r in fresh_conn.execute("SELECT id FROM consensus_profiles")) == \
        sorted(PROFILE_IDS)
    assert fresh_conn.execute("SELECT key, value FROM consensus_settings").fetchall() == [
        ("active_profile_id", "lightning-fast")]
    # everything else starts empty
    others = {t: n for t in user_tables(fresh_conn) if t not in {*SEEDS, *LEGACY_ONLY_TABLES}
              for (n,) in [fresh_conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()] if n}
    assert others == {}


@pytest.mark.parametrize("table", list(SEEDS))
def test_seed_rows_equal_fixture(fresh_conn: sqlite3.Connection,
                                 legacy_conn: sqlite3.Connection, table: str) -> None:
    where, order = SEEDS[table]
    want = _seed_rows(legacy_conn, table, where, order)
    assert len(want["rows"]) == {"openrouter_providers": 5, "openrouter_models": 13,
                                 "consensus_profiles": 10, "consensus_settings": 1}[table]
    assert _seed_rows(fresh_conn, table, where, order) == want


def test_seed_timestamps_are_filled(fresh_conn: sqlite3.Connection) -> None:
    now = time.time()
    for (created,) in fresh_conn.execute("SELECT created_at FROM openrouter_models"):
        assert isinstance(created, int) and abs(created - now) < 86400
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")  # CURRENT_TIMESTAMP
    for table, cols in SEED_TIMESTAMP_COLUMNS.items():
        for col in cols - ({"created_at"} if table == "openrouter_models" else set()):
            values = [v for (v,) in fresh_conn.execute(f"SELECT {col} FROM {table}")]
            bad = [v for v in values if not (isinstance(v, str) and stamp.match(v))]
            assert bad == [], f"{table}.{col}"


def test_the_old_runners_record_is_there_for_the_old_apps(fresh_conn: sqlite3.Connection,
                                                          legacy_conn: sqlite3.Connection,
                                                          tmp_path: Path) -> None:
    """A fresh file carries Hive's own record (versions 1-13, in the runner's table shape and
    with the names its runner records), so an old Hive app opened on it applies nothing."""
    assert table_spec(fresh_conn, "schema_migrations") == table_spec(legacy_conn,
                                                                     "schema_migrations")
    copy = tmp_path / HIVE_RECORD_FIXTURE
    shutil.copyfile(_legacy_dir() / HIVE_RECORD_FIXTURE, copy)
    with sqlite3.connect(f"file:{copy}?mode=ro", uri=True) as v13:
        want = v13.execute("SELECT version, name FROM schema_migrations ORDER BY version"
                           ).fetchall()
    assert fresh_conn.execute("SELECT version, name FROM schema_migrations ORDER BY version"
                              ).fetchall() == want == [(v, n) for v, n in want if v <= 13]
    assert [v for v, _ in want] == list(range(1, 14))
    rfc3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")
    for (applied_at,) in fresh_conn.execute("SELECT applied_at FROM schema_migrations"):
        assert rfc3339.match(applied_at), applied_at

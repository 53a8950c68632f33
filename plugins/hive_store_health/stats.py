"""Statistics of a store: sizes, row counts and consensus analytics over a window of days.

Sources (all windows are whole UTC days, ``since`` and ``until`` both included; a row belongs
to the day of its timestamp's first ten characters, so hive-store's
``YYYY-MM-DDTHH:MM:SS.ffffff+00:00`` and the legacy ``YYYY-MM-DD HH:MM:SS`` form both work):

``daily``
    per day of ``conversations.created_at``: conversations, ``total_cost``, ``input_tokens`` and
    ``output_tokens`` summed over the conversations of that day (index
    ``hive_store_health_conversations_created``, added by this plugin's migration set;
    covering; named with the ``hive_store_`` prefix of bookkeeping objects, see below).
``by_model`` / ``by_stage``
    for the conversations of the window (same index), ``messages``: their stage messages
    (``messages.model_used`` / ``messages.stage``, through ``idx_messages_conversation``) and
    ``runs``, ``cost``, ``tokens_input``, ``tokens_output``: the per-stage entries of their
    ``pipeline_complete`` activity (``activity_log.metadata["stages"]``, written by
    ``Store.record_consensus``; through ``idx_activity_log_conversation``). Conversations
    without that activity (legacy rows) count in ``messages`` only. Everything is attributed
    to the conversation's day, so the numbers add up with ``daily``.
``usage``
    the usage ledger ``usage_records`` by its ``timestamp`` (``idx_usage_timestamp``): per day
    and per model, every ``action_type`` (conversations, model calls, syncs).
``events``
    ``activity_log`` entries per day and ``event_type`` by ``created_at``
    (``idx_activity_log_created``): errors, fallbacks, rate limits next to completions.

Every analytics query is driven by a range on an index (see :func:`query_plans`; the join
order is pinned with ``CROSS JOIN``); row counts use ``count(*)``, which SQLite answers from
the table's smallest index. All numbers come from one read snapshot.

On a PostgreSQL store the same questions are asked in PostgreSQL's SQL (:data:`PG_QUERIES`:
a day is the UTC date of a ``timestamptz``, stage entries come from the ``json`` metadata)
and give the same numbers; :func:`query_plans` is SQLite's only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from hive_store.errors import ConfigurationError, HiveStoreError
from hive_store.migrations import MigrationSet

# The one schema object this plugin adds to a core table. Its name carries the ``hive_store_``
# prefix that marks bookkeeping (not Hive schema) objects, so that schema comparisons can
# leave it out the way they leave out hive_store_* tables.
STATS_INDEX = "hive_store_health_conversations_created"
NAMESPACE = "hive_store_health"

_MIGRATION_0001 = f"""-- @name: stats_indexes
-- @description: A covering index on conversations(created_at, ...) for the per-day statistics.
CREATE INDEX IF NOT EXISTS {STATS_INDEX}
    ON conversations(created_at, total_cost, input_tokens, output_tokens, id);
-- @down
DROP INDEX IF EXISTS {STATS_INDEX};
"""


_SET: list[MigrationSet] = []


def migration_set() -> MigrationSet:
    """This plugin's migration set (namespace ``hive_store_health``; parsed once)."""
    if not _SET:
        _SET.append(MigrationSet.from_sql(
            NAMESPACE, [("0001_stats_indexes.sql", _MIGRATION_0001)], depends_on=("hive_store",)))
    return _SET[0]


SQL_DAILY = """
SELECT substr(c.created_at, 1, 10) AS day, count(*),
       total(c.total_cost), coalesce(sum(c.input_tokens), 0), coalesce(sum(c.output_tokens), 0)
FROM conversations AS c
WHERE c.created_at >= ? AND c.created_at < ?
GROUP BY day ORDER BY day"""

SQL_MESSAGES = """
SELECT m.model_used, m.stage, count(*)
FROM conversations AS c
CROSS JOIN messages AS m ON m.conversation_id = c.id
WHERE c.created_at >= ? AND c.created_at < ?
  AND (m.model_used IS NOT NULL OR m.stage IS NOT NULL)
GROUP BY m.model_used, m.stage"""

# ``+a.event_type`` keeps the planner on the conversation_id index (not the event_type one);
# json_each gets NULL (no rows) for metadata that is not valid JSON.
SQL_STAGE_RUNS = """
SELECT json_extract(s.value, '$.model'), json_extract(s.value, '$.stage'), count(*),
       total(CAST(json_extract(s.value, '$.cost') AS REAL)),
       coalesce(sum(CAST(json_extract(s.value, '$.tokens_input') AS INTEGER)), 0),
       coalesce(sum(CAST(json_extract(s.value, '$.tokens_output') AS INTEGER)), 0)
FROM conversations AS c
CROSS JOIN activity_log AS a ON a.conversation_id = c.id
CROSS JOIN json_each(CASE WHEN json_valid(a.metadata) THEN a.metadata END, '$.stages') AS s
WHERE c.created_at >= ? AND c.created_at < ?
  AND +a.event_type = 'pipeline_complete' AND s.type = 'object'
GROUP BY 1, 2"""

SQL_USAGE_DAILY = """
SELECT substr(u.timestamp, 1, 10) AS day, count(*), total(u.cost),
       coalesce(sum(u.tokens_input), 0), coalesce(sum(u.tokens_output), 0)
FROM usage_records AS u
WHERE u.timestamp >= ? AND u.timestamp < ?
GROUP BY day ORDER BY day"""

SQL_USAGE_MODELS = """
SELECT u.model_used, count(*), total(u.cost),
       coalesce(sum(u.tokens_input), 0), coalesce(sum(u.tokens_output), 0)
FROM usage_records AS u
WHERE u.timestamp >= ? AND u.timestamp < ?
GROUP BY u.model_used"""

SQL_EVENTS = """
SELECT substr(a.created_at, 1, 10) AS day, a.event_type, count(*)
FROM activity_log AS a
WHERE a.created_at >= ? AND a.created_at < ?
GROUP BY day, a.event_type ORDER BY day, a.event_type"""

# The same questions in PostgreSQL's words (timestamps are timestamptz there: a day is the
# UTC date of the instant; JSON is the json type; a non-number in the metadata counts as none).
_DAY_PG = "to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
_NUM_PG = "CASE WHEN json_typeof(s->'{key}') = 'number' THEN (s->>'{key}')::numeric END"
PG_QUERIES: dict[str, str] = {
    "daily": f"""
SELECT {_DAY_PG.format(col="c.created_at")} AS day, count(*),
       coalesce(sum(c.total_cost), 0)::float8, coalesce(sum(c.input_tokens), 0)::bigint,
       coalesce(sum(c.output_tokens), 0)::bigint
FROM conversations AS c
WHERE c.created_at >= %s AND c.created_at < %s
GROUP BY day ORDER BY day""",
    "messages": """
SELECT m.model_used, m.stage, count(*)
FROM conversations AS c
JOIN messages AS m ON m.conversation_id = c.id
WHERE c.created_at >= %s AND c.created_at < %s
  AND (m.model_used IS NOT NULL OR m.stage IS NOT NULL)
GROUP BY m.model_used, m.stage""",
    "stage_runs": f"""
SELECT s->>'model', s->>'stage', count(*),
       coalesce(sum({_NUM_PG.format(key="cost")}), 0)::float8,
       coalesce(sum(trunc({_NUM_PG.format(key="tokens_input")})), 0)::bigint,
       coalesce(sum(trunc({_NUM_PG.format(key="tokens_output")})), 0)::bigint
FROM conversations AS c
JOIN activity_log AS a ON a.conversation_id = c.id
CROSS JOIN LATERAL json_array_elements(
    CASE WHEN json_typeof(a.metadata) = 'object'
          AND json_typeof(a.metadata->'stages') = 'array' THEN a.metadata->'stages' END) AS s
WHERE c.created_at >= %s AND c.created_at < %s
  AND a.event_type = 'pipeline_complete' AND json_typeof(s) = 'object'
GROUP BY 1, 2""",
    "usage_daily": f"""
SELECT {_DAY_PG.format(col='u."timestamp"')} AS day, count(*), coalesce(sum(u.cost), 0)::float8,
       coalesce(sum(u.tokens_input), 0)::bigint, coalesce(sum(u.tokens_output), 0)::bigint
FROM usage_records AS u
WHERE u."timestamp" >= %s AND u."timestamp" < %s
GROUP BY day ORDER BY day""",
    "usage_models": """
SELECT u.model_used, count(*), coalesce(sum(u.cost), 0)::float8,
       coalesce(sum(u.tokens_input), 0)::bigint, coalesce(sum(u.tokens_output), 0)::bigint
FROM usage_records AS u
WHERE u."timestamp" >= %s AND u."timestamp" < %s
GROUP BY u.model_used""",
    "events": f"""
SELECT {_DAY_PG.format(col="a.created_at")} AS day, a.event_type, count(*)
FROM activity_log AS a
WHERE a.created_at >= %s AND a.created_at < %s
GROUP BY day, a.event_type ORDER BY day, a.event_type""",
}
"""The analytics queries on a PostgreSQL store (same results as :data:`QUERIES`)."""

QUERIES: dict[str, str] = {
    "daily": SQL_DAILY,
    "messages": SQL_MESSAGES,
    "stage_runs": SQL_STAGE_RUNS,
    "usage_daily": SQL_USAGE_DAILY,
    "usage_models": SQL_USAGE_MODELS,
    "events": SQL_EVENTS,
}
"""The analytics queries by name; each takes ``(since, until_exclusive)`` as ISO dates."""

STAGES = ("generator", "refiner", "validator", "curator")


# -- the window ----------------------------------------------------------------------------------


def _as_date(value: date | str | None, name: str) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise ConfigurationError(f"{name} must be a date YYYY-MM-DD, got {value!r}") from None
    raise ConfigurationError(f"{name} must be a date YYYY-MM-DD, got {type(value).__name__}")


def window(since: date | str | None = None, until: date | str | None = None, *,
           days: int = 30, today: date | None = None) -> tuple[date, date]:
    """The inclusive UTC day range ``(since, until)``; missing ends default to the last
    ``days`` days up to today. A datetime counts as its UTC day."""
    first = _as_date(since, "since")
    last = _as_date(until, "until")
    if last is None:
        last = today or datetime.now(UTC).date()
        if first is not None and first > last:
            last = first
    if first is None:
        first = last - timedelta(days=max(1, days) - 1)
    if first > last:
        raise ConfigurationError(f"since ({first}) is after until ({last})")
    return first, last


def _bounds(first: date, last: date) -> tuple[str, str]:
    """``col >= ? AND col < ?`` parameters: ISO dates compare right with both stored forms."""
    return first.isoformat(), (last + timedelta(days=1)).isoformat()


# -- collecting ----------------------------------------------------------------------------------


def _sqlite(store: Any) -> Any:
    backend = store.backend
    if getattr(backend, "dialect", None) != "sqlite":
        raise ConfigurationError("statistics need a SQLite store")
    return backend


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class _Snapshot:
    """A read transaction on a pooled connection (one consistent view for every query)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.own = not conn.in_transaction

    def __enter__(self) -> sqlite3.Connection:
        if self.own:
            self.conn.execute("BEGIN")
        return self.conn

    def __exit__(self, *exc: object) -> None:
        if self.own and self.conn.in_transaction:
            self.conn.execute("COMMIT")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _database_facts(backend: Any, conn: sqlite3.Connection) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    if backend.memory:
        facts.update(path=":memory:", size_bytes=None, wal_bytes=None)
    else:
        path = Path(backend.path)
        facts.update(path=str(path), size_bytes=_size(path),
                     wal_bytes=_size(Path(f"{path}-wal")))
    for name in ("page_size", "page_count", "freelist_count", "auto_vacuum", "journal_mode"):
        facts[name] = conn.execute(f"PRAGMA {name}").fetchone()[0]
    facts["auto_vacuum"] = {0: "none", 1: "full", 2: "incremental"}.get(
        facts["auto_vacuum"], facts["auto_vacuum"])
    return facts


def _merge(rows: dict[Any, dict[str, Any]], key: Any, label: str) -> dict[str, Any]:
    entry = rows.get(key)
    if entry is None:
        entry = rows[key] = {label: key, "messages": 0, "runs": 0, "cost": 0.0,
                             "tokens_input": 0, "tokens_output": 0}
    return entry


def stats(store: Any, since: date | str | None = None, until: date | str | None = None, *,
          days: int = 30) -> dict[str, Any]:
    """Sizes, row counts and the analytics of the window (see the module docstring).

    :param since: first UTC day (``date`` or ``"YYYY-MM-DD"``); default ``until - days + 1``
    :param until: last UTC day, included; default today
    :param days: window length when ``since`` is not given
    :return: a JSON-ready dict: ``window``, ``database``, ``row_counts``, ``totals``,
        ``daily``, ``by_model``, ``by_stage``, ``usage`` (``daily``, ``by_model``), ``events``
    """
    first, last = window(since, until, days=days)
    params = _bounds(first, last)
    if getattr(store.backend, "dialect", None) == "postgresql":
        return _report(first, last, *_collect_pg(store, params))
    backend = _sqlite(store)
    try:
        with backend.connection() as raw, _Snapshot(raw) as conn:
            database = _database_facts(backend, conn)
            tables = _tables(conn)
            row_counts = {
                name: conn.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()[0]
                for name in sorted(store.entities) if name in tables
            }
            have = tables.issuperset
            daily_rows = (conn.execute(SQL_DAILY, params).fetchall()
                          if have({"conversations"}) else [])
            message_rows = (conn.execute(SQL_MESSAGES, params).fetchall()
                            if have({"conversations", "messages"}) else [])
            run_rows = (conn.execute(SQL_STAGE_RUNS, params).fetchall()
                        if have({"conversations", "activity_log"}) else [])
            usage_rows = (conn.execute(SQL_USAGE_DAILY, params).fetchall()
                          if have({"usage_records"}) else [])
            usage_models = (conn.execute(SQL_USAGE_MODELS, params).fetchall()
                            if have({"usage_records"}) else [])
            event_rows = (conn.execute(SQL_EVENTS, params).fetchall()
                          if have({"activity_log"}) else [])
    except sqlite3.Error as exc:
        from hive_store_sqlite.backend import translate_error

        raise translate_error(exc, "collecting statistics") from None
    return _report(first, last, database, row_counts, daily_rows, message_rows, run_rows,
                   usage_rows, usage_models, event_rows)


def _collect_pg(store: Any, params: tuple[str, str]) -> tuple[Any, ...]:
    """:func:`stats`'s rows from a PostgreSQL store, in one read-only snapshot."""
    backend = store.backend
    try:
        with backend.connection() as conn:
            own = not backend.in_transaction()
            if own:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                facts = backend.describe()
                database = {"path": facts.get("path"), "size_bytes": facts.get("size_bytes"),
                            "wal_bytes": None, "server_version": facts.get("server_version")}
                tables = backend.sql.table_names(conn)
                row_counts = {
                    name: conn.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()[0]
                    for name in sorted(store.entities) if name in tables}
                rows = {name: conn.execute(sql, params).fetchall()
                        for name, sql in PG_QUERIES.items()}
            finally:
                if own:
                    conn.execute("COMMIT")
    except HiveStoreError:
        raise
    except backend.sql.errors as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HiveStoreError(f"collecting statistics: {first}") from None
    return (database, row_counts, rows["daily"], rows["messages"], rows["stage_runs"],
            rows["usage_daily"], rows["usage_models"], rows["events"])


def _report(first: date, last: date, database: dict[str, Any], row_counts: dict[str, int],
            daily_rows: Any, message_rows: Any, run_rows: Any, usage_rows: Any,
            usage_models: Any, event_rows: Any) -> dict[str, Any]:
    daily = [{"day": d, "conversations": n, "cost": cost, "tokens_input": ti,
              "tokens_output": to} for d, n, cost, ti, to in daily_rows]
    by_model: dict[Any, dict[str, Any]] = {}
    by_stage: dict[Any, dict[str, Any]] = {}
    for model, stage, n in message_rows:
        if model is not None:
            _merge(by_model, model, "model")["messages"] += n
        if stage is not None:
            _merge(by_stage, stage, "stage")["messages"] += n
    for model, stage, runs, cost, ti, to in run_rows:
        for entry in (_merge(by_model, model, "model"), _merge(by_stage, stage, "stage")):
            entry["runs"] += runs
            entry["cost"] += cost
            entry["tokens_input"] += ti
            entry["tokens_output"] += to
    order = {s: i for i, s in enumerate(STAGES)}
    return {
        "window": {"since": first.isoformat(), "until": last.isoformat(),
                   "days": (last - first).days + 1},
        "database": database,
        "row_counts": row_counts,
        "totals": {
            "conversations": sum(r["conversations"] for r in daily),
            "cost": sum(r["cost"] for r in daily),
            "tokens_input": sum(r["tokens_input"] for r in daily),
            "tokens_output": sum(r["tokens_output"] for r in daily),
        },
        "daily": daily,
        "by_model": sorted(by_model.values(),
                           key=lambda e: (-e["cost"], -e["messages"], str(e["model"]))),
        "by_stage": sorted(by_stage.values(),
                           key=lambda e: (order.get(e["stage"], len(order)), str(e["stage"]))),
        "usage": {
            "daily": [{"day": d, "records": n, "cost": cost, "tokens_input": ti,
                       "tokens_output": to} for d, n, cost, ti, to in usage_rows],
            "by_model": sorted(({"model": m, "records": n, "cost": cost, "tokens_input": ti,
                                 "tokens_output": to} for m, n, cost, ti, to in usage_models),
                               key=lambda e: (-e["cost"], str(e["model"]))),
        },
        "events": [{"day": d, "event_type": t, "count": n} for d, t, n in event_rows],
    }


def query_plans(store: Any) -> dict[str, list[str]]:
    """``EXPLAIN QUERY PLAN`` of every analytics query (the ``detail`` column)."""
    backend = _sqlite(store)
    params = _bounds(*window())
    with backend.connection() as conn:
        return {name: [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
                for name, sql in QUERIES.items()}


# -- the plot -------------------------------------------------------------------------------------


class PlotUnavailable(ConfigurationError):
    """matplotlib is not installed (``pip install 'hive-store[plot]'``)."""


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def plot(data: dict[str, Any], path: str | Path) -> Path:
    """Draw cost and conversations per day of a :func:`stats` result into ``path`` (PNG).

    Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch),
    imported only here. Days without conversations are drawn as zero.
    """
    try:
        import matplotlib.dates as mdates
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable(
            "plotting needs matplotlib: pip install 'hive-store[plot]'") from None
    target = Path(path)
    first = date.fromisoformat(data["window"]["since"])
    last = date.fromisoformat(data["window"]["until"])
    per_day = {date.fromisoformat(r["day"]): r for r in data["daily"]
               if _valid_day(r["day"])}
    if (last - first).days > 3660 and per_day:  # a huge window: draw the days with data
        first, last = max(first, min(per_day)), min(last, max(per_day))
    xs = list(_days(first, last))
    cost = [float(per_day[d]["cost"]) if d in per_day else 0.0 for d in xs]
    convs = [int(per_day[d]["conversations"]) if d in per_day else 0 for d in xs]

    fig = Figure(figsize=(10, 6), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.bar(xs, cost, color="#c0504d", width=0.8)
    top.set_ylabel("cost ($)")
    top.set_title(f"hive-store: cost and conversations per day, {first} .. {last} (UTC)")
    bottom.bar(xs, convs, color="#4f81bd", width=0.8)
    bottom.set_ylabel("conversations")
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(
        mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    for ax in (top, bottom):
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, format="png")
    except ValueError as exc:
        raise HiveStoreError(f"cannot draw {target}: {exc}") from None
    return target


def _valid_day(text: Any) -> bool:
    try:
        date.fromisoformat(str(text))
    except ValueError:
        return False
    return True

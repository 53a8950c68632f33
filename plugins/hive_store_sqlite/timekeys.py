"""Comparison keys in SQL: what filters and ``order_by`` compare timestamp, date and boolean
columns by, whatever shapes of stored values a table mixes.

A timestamp column of an adopted file holds hive-store's form
(``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``, which sorts as text in time order) next to the forms the
old apps wrote (``YYYY-MM-DD HH:MM:SS``, RFC 3339 with ``Z`` or offsets, epoch numbers …),
which do not sort with it as text. :func:`timestamp_key` is a SQL expression of built-in,
deterministic functions only that gives every value hive-store reads as a timestamp
(:func:`hive_store.values.parse_timestamp`) its instant in hive-store's form, and NULL to
every other value: comparing and sorting by it is comparing and sorting by instants (a test
checks it against the Python reader on random values). A value in hive-store's own form is
its own key after one GLOB of its layout, so tables written by hive-store pay little.

Expression indexes on the key (``hive_store_time_*``, migration 0004) keep the time columns
Hive indexed fast to filter and sort; the old apps keep reading and writing the tables (an
index of built-in functions never fails a write, and legacy values are never rewritten).
"""

from __future__ import annotations

_D = "[0-9]"
CANONICAL_GLOB = "????-??-??T??:??:??.??????+00:00"
"""The layout of hive-store's form. Only its separators are checked: a GLOB with a character
class per digit costs four times as much per row scanned."""
_DATE_GLOB = f"{_D * 4}-{_D * 2}-{_D * 2}"


def _micros_to_key(u: str) -> str:
    """The key of ``u`` microseconds since 1970 (an INTEGER expression, >= 0)."""
    return (f"(strftime('%Y-%m-%dT%H:%M:%S', ({u}) / 1000000, 'unixepoch') || '.' || "
            f"printf('%06d', ({u}) % 1000000) || '+00:00')")


def timestamp_key(col: str) -> str:
    """The comparison key of the timestamp column ``col`` (a quoted identifier)."""
    c = col
    # hive-store's own form is its own key (text order is time order). One GLOB of the
    # layout, nothing more: text in exactly this layout that is not a real timestamp (Feb 30,
    # 25:00, letters for digits) is compared as text too (values.timestamp_key says the
    # same); a read returns it as a RawValue.
    own = f"typeof({c}) = 'text' AND {c} GLOB '{CANONICAL_GLOB}'"
    # other date-time text: YYYY-MM-DD[( |T)HH:MM[:SS[.f+]][Z|z| UTC|±HH:MM]]
    zone = (f"(CASE WHEN {c} GLOB '*[+-]{_D}{_D}:{_D}{_D}' THEN 6 WHEN {c} GLOB '* UTC' THEN 4 "
            f"WHEN {c} GLOB '*[Zz]' THEN 1 ELSE 0 END)")
    body = f"(length({c}) - {zone})"
    shape = (f"substr({c}, 1, 10) GLOB '{_DATE_GLOB}' AND (({body} = 10 AND {zone} = 0) OR "
             f"(substr({c}, 11, 1) IN ('T', ' ') AND substr({c}, 12, 2) < '24' AND ("
             f"({body} = 16 AND substr({c}, 12, 5) GLOB '{_D}{_D}:{_D}{_D}') OR "
             f"({body} >= 19 AND substr({c}, 12, 8) GLOB '{_D}{_D}:{_D}{_D}:{_D}{_D}' AND "
             f"({body} = 19 OR ({body} >= 21 AND substr({c}, 20, 1) = '.' AND "
             f"substr({c}, 21, {body} - 20) NOT GLOB '*[^0-9]*'))))))")
    valid_date = (f"date(substr({c}, 1, 10), '+0 days') = substr({c}, 1, 10) "
                  f"AND substr({c}, 1, 4) <> '0000'")
    hms = (f"(CASE {body} WHEN 10 THEN '00:00:00' WHEN 16 THEN substr({c}, 12, 5) || ':00' "
           f"ELSE substr({c}, 12, 8) END)")
    offset = f"(CASE {zone} WHEN 6 THEN substr({c}, {body} + 1, 6) ELSE '' END)"
    fraction = (f"(CASE WHEN {body} >= 21 THEN substr(substr({c}, 21, {body} - 20) || "
                f"'000000', 1, 6) ELSE '000000' END)")
    text_key = (f"(strftime('%Y-%m-%dT%H:%M:%S', substr({c}, 1, 10) || ' ' || {hms} || "
                f"{offset}) || '.' || {fraction} || '+00:00')")
    # epoch digits: seconds below 10**11, else milliseconds below 10**14 (exact decimals)
    dot = f"instr({c}, '.')"
    whole = f"(CASE {dot} WHEN 0 THEN {c} ELSE substr({c}, 1, {dot} - 1) END)"
    frac = f"(CASE {dot} WHEN 0 THEN '' ELSE substr({c}, {dot} + 1) END)"
    digits = (f"length({whole}) BETWEEN 1 AND 20 AND {whole} NOT GLOB '*[^0-9]*' AND "
              f"({dot} = 0 OR ({frac} <> '' AND {frac} NOT GLOB '*[^0-9]*'))")
    w = f"CAST({whole} AS INTEGER)"
    text_micros = (f"(CASE WHEN {w} < 100000000000 THEN {w} * 1000000 + "
                   f"CAST(substr({frac} || '000000', 1, 6) AS INTEGER) "
                   f"WHEN {w} < 100000000000000 THEN {w} * 1000 + "
                   f"CAST(substr({frac} || '000', 1, 3) AS INTEGER) END)")
    int_micros = (f"(CASE WHEN {c} < 0 THEN NULL WHEN {c} < 100000000000 THEN {c} * 1000000 "
                  f"WHEN {c} < 100000000000000 THEN {c} * 1000 END)")
    real_micros = (f"(CASE WHEN NOT ({c} >= 0.0) THEN NULL WHEN {c} < 100000000000 THEN "
                   f"CAST({c} * 1000000.0 AS INTEGER) WHEN {c} < 100000000000000 THEN "
                   f"CAST({c} * 1000.0 AS INTEGER) END)")
    # an offset can move a date out of years 1-9999 (datetime's range): no instant then
    in_range = (f"CASE WHEN {text_key} GLOB '{_D * 4}-*' AND substr({text_key}, 1, 4) <> '0000' "
                f"THEN {text_key} END")
    return (
        f"(CASE WHEN {own} THEN {c} "
        f"WHEN typeof({c}) = 'text' THEN CASE "
        f"WHEN {shape} THEN CASE WHEN {valid_date} THEN {in_range} END "
        f"WHEN {digits} THEN {_micros_to_key(text_micros)} END "
        f"WHEN typeof({c}) = 'integer' THEN {_micros_to_key(int_micros)} "
        f"WHEN typeof({c}) = 'real' THEN {_micros_to_key(real_micros)} END)"
    )


def date_key(col: str) -> str:
    """The comparison key (``YYYY-MM-DD``) of the date column ``col``
    (:func:`hive_store.values.parse_date`)."""
    c = col
    n = (f"(CASE typeof({c}) WHEN 'integer' THEN {c} "
         f"WHEN 'real' THEN CASE WHEN {c} >= 0.0 AND {c} < 100000000000000 "
         f"AND {c} = CAST({c} AS INTEGER) THEN CAST({c} AS INTEGER) END "
         f"WHEN 'text' THEN CASE WHEN length({c}) BETWEEN 1 AND 20 AND "
         f"{c} NOT GLOB '*[^0-9]*' THEN CAST({c} AS INTEGER) END END)")
    ymd = f"printf('%04d-%02d-%02d', {n} / 10000, {n} / 100 % 100, {n} % 100)"
    return (
        f"(CASE WHEN typeof({c}) = 'text' AND {c} GLOB '{_DATE_GLOB}' THEN "
        f"CASE WHEN date({c}, '+0 days') = {c} AND substr({c}, 1, 4) <> '0000' THEN {c} END "
        f"WHEN {n} BETWEEN 10000101 AND 99991231 THEN "
        f"CASE WHEN date({ymd}, '+0 days') = {ymd} THEN {ymd} END "
        f"WHEN {n} >= 0 AND {n} < 100000000000 AND {n} % 86400 = 0 THEN date({n}, 'unixepoch') "
        f"WHEN {n} >= 100000000000 AND {n} < 100000000000000 AND {n} % 86400000 = 0 "
        f"THEN date({n} / 1000, 'unixepoch') END)"
    )


def bool_key(col: str) -> str:
    """The comparison key of the boolean column ``col``: ``'true'``/``'false'`` text (any
    case) as 1/0, every other value as it is (0/1 and 0.0/1.0 compare equal to 0/1)."""
    c = col
    return (f"(CASE WHEN typeof({c}) = 'text' THEN CASE lower({c}) WHEN 'true' THEN 1 "
            f"WHEN 'false' THEN 0 END ELSE {c} END)")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


INDEXED: tuple[tuple[str, str], ...] = (
    # (table, timestamp column): where Hive's own schema indexes the raw column
    ("usage_records", "timestamp"),
    ("conversation_usage", "timestamp"),
    ("knowledge_conversations", "created_at"),
    ("conversation_threads", "created_at"),
    ("pending_sync", "created_at"),
    ("provider_performance", "measured_at"),
    ("model_rankings", "collected_at"),
    ("consensus_metrics", "created_at"),
    ("cost_analytics", "created_at"),
    ("feature_usage", "created_at"),
    ("model_selection_history", "created_at"),
    ("performance_metrics", "timestamp"),
    ("activity_log", "created_at"),
    ("consensus_facts", "created_at"),
)
"""The timestamp columns that get an expression index on their key."""


def index_name(table: str, column: str) -> str:
    return f"hive_store_time_{table}_{column}"


def index_statements() -> list[str]:
    """``CREATE INDEX`` statements of the key indexes (the text of migration 0004)."""
    return [f"CREATE INDEX {index_name(t, c)} ON {_q(t)} ({timestamp_key(_q(c))});"
            for t, c in INDEXED]


def migration_text() -> str:
    """The migration file ``0004_time_keys.sql`` (generated from this module; a test checks
    the file matches, so queries and indexes use the same expression)."""
    header = ("-- @name: time_keys\n"
              "-- @description: Expression indexes on the comparison key of the timestamp "
              "columns Hive indexes (hive_store_sqlite.timekeys), so time filters and "
              "ordering compare instants on tables that mix legacy and hive-store forms. "
              "Generated by `python -m hive_store_sqlite.timekeys`; do not edit.\n\n")
    down = "\n-- @down\n" + "".join(f"DROP INDEX IF EXISTS {index_name(t, c)};\n"
                                    for t, c in INDEXED)
    return header + "\n\n".join(index_statements()) + "\n" + down


if __name__ == "__main__":
    import sys

    sys.stdout.write(migration_text())

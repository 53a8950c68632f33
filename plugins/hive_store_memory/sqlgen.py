"""SQL generated from one description of the indexed tables (:data:`SOURCES`).

Everything the plugin writes per indexed table — the change-log triggers, the statements that
register and re-time documents, the text a document is indexed with — is produced here from
the :class:`Source` records, never written out table by table. Three users:

* :mod:`hive_store_memory.index` (the catch-up, rebuilds) and ``reindex``, which restores the
  triggers a table rebuild dropped from :func:`trigger_statements`;
* migration files, through ``-- @include: NAME`` lines: :func:`expand` replaces each with
  :data:`INCLUDES` ``[NAME]()`` when the plugin loads its migration set. An include is part of
  the applied migration's checksum, so **an include used by a released migration never
  changes**: a new shape gets a new name (``…_v2``). ``tests/test_memory_sqlgen.py`` pins the
  checksums of the released files and checks that the generated triggers behave exactly like
  the ones migration 0002 wrote out by hand.

Times: Hive's tables hold several forms of one instant (``YYYY-MM-DD HH:MM:SS`` from
``CURRENT_TIMESTAMP``, RFC 3339 with ``Z`` or an offset and 0-9 fraction digits, epoch seconds
or milliseconds from some writers). :func:`instant_sql` turns any of them into a julian day
number (UTC), which is what ``hive_store_memory_docs.at`` holds and what the plugin's time
windows compare.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from hive_store.entities import ConsensusFact, CuratorTruth, KnowledgeConversation, Message

PREFIX = "hive_store_memory"
DOCS = f"{PREFIX}_docs"
LOG = f"{PREFIX}_log"
MEMBERS = f"{PREFIX}_members"
MARKS = f"{PREFIX}_marks"
THEMES = f"{PREFIX}_themes"
META = f"{PREFIX}_meta"


@attrs.frozen
class Source:
    """One indexed table.

    :ivar table: its name; ``short`` the abbreviation in trigger names
    :ivar entity: its hive_store entity; ``pk`` its primary key column
    :ivar title_sql: the document's title as SQL over a row alias ``{x}`` (weighted 2 in bm25)
    :ivar body_sql: the document's body, likewise
    :ivar columns: the columns title and body are made of (a change to them re-indexes)
    :ivar conversation: the column naming the row's conversation
    :ivar time: the column with the row's time
    :ivar uniques: other UNIQUE columns by which ``INSERT OR REPLACE`` replaces a row
    :ivar integer_key: an ``INTEGER PRIMARY KEY``: an insert may choose the key itself, so the
        rows it replaces are logged before it and the new key after it
    """

    table: str
    short: str
    entity: type
    pk: str
    title_sql: str
    body_sql: str
    columns: tuple[str, ...]
    conversation: str
    time: str
    uniques: tuple[str, ...] = ()
    integer_key: bool = False

    def title_of(self, x: str) -> str:
        return self.title_sql.format(x=x)

    def body_of(self, x: str) -> str:
        return self.body_sql.format(x=x)

    @property
    def watched(self) -> tuple[str, ...]:
        """The columns whose change changes the document (key, text, conversation, time)."""
        return (self.pk, self.conversation, *self.columns, self.time)


SOURCES: tuple[Source, ...] = (
    Source("knowledge_conversations", "kc", KnowledgeConversation, "id", "{x}.question",
           "CASE WHEN {x}.source_of_truth = {x}.final_answer THEN {x}.final_answer "
           "ELSE {x}.final_answer || char(10) || {x}.source_of_truth END",
           ("question", "final_answer", "source_of_truth"), "conversation_id", "created_at"),
    Source("curator_truths", "ct", CuratorTruth, "id", "coalesce({x}.topic_summary, '')",
           "{x}.curator_output", ("curator_output", "topic_summary"), "conversation_id",
           "created_at", ("conversation_id",), integer_key=True),
    Source("consensus_facts", "cf", ConsensusFact, "id", "{x}.source_question", "{x}.content",
           ("source_question", "content"), "source_conversation_id", "created_at",
           ("semantic_fingerprint",)),
    Source("messages", "msg", Message, "id", "''", "{x}.content", ("content",),
           "conversation_id", "timestamp"),
)
SOURCE_BY_TABLE = {s.table: s for s in SOURCES}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- times ----------------------------------------------------------------------------------------


def _epoch(v: str) -> str:
    # milliseconds from 1e11 on (that is 1973 in ms and year 5138 in s), seconds from 1e7 on;
    # smaller numbers are taken as julian day numbers, as SQLite itself does
    return (f"CASE WHEN abs({v}) >= 1e11 THEN julianday({v} / 1000.0, 'unixepoch') "
            f"WHEN abs({v}) >= 1e7 THEN julianday({v}, 'unixepoch') ELSE julianday({v}) END")


def instant_sql(column: str) -> str:
    """SQL turning a stored time (``column``, any of the forms in the module docstring) into a
    julian day number in UTC, or NULL when it is none of them."""
    c = column
    return (f"(CASE WHEN typeof({c}) IN ('integer', 'real') THEN {_epoch(c)} "
            f"WHEN typeof({c}) = 'text' AND trim({c}) <> '' "
            f"AND trim({c}) NOT GLOB '*[^0-9.]*' THEN {_epoch(f'CAST(trim({c}) AS REAL)')} "
            f"ELSE julianday({c}) END)")


# -- triggers -------------------------------------------------------------------------------------


def _log(source: Source) -> str:
    return f"INSERT INTO {LOG} (kind, key, title, body)"


def _triggers_of(s: Source) -> list[tuple[str, str]]:
    table, pk, kind = _q(s.table), s.pk, f"'{s.table}'"
    name = f"{PREFIX}_{s.short}"
    out: list[tuple[str, str]] = []
    # BEFORE INSERT: the key, and the text of every row the insert may replace
    if s.integer_key:
        replaced = " OR ".join([f"t.{pk} = new.{pk}", *(f"t.{u} = new.{u}" for u in s.uniques)])
        body = (f"    {_log(s)}\n    SELECT {kind}, t.{pk}, {s.title_of('t')}, {s.body_of('t')}\n"
                f"    FROM {table} AS t WHERE {replaced};\n")
    else:
        body = (f"    {_log(s)}\n"
                f"    SELECT {kind}, new.{pk}, CASE WHEN t.rowid IS NOT NULL THEN "
                f"{s.title_of('t')} END,\n"
                f"           CASE WHEN t.rowid IS NOT NULL THEN {s.body_of('t')} END\n"
                f"    FROM (SELECT 1) LEFT JOIN {table} AS t ON t.{pk} = new.{pk};\n")
        for u in s.uniques:
            body += (f"    {_log(s)}\n    SELECT {kind}, t.{pk}, {s.title_of('t')}, "
                     f"{s.body_of('t')}\n    FROM {table} AS t\n"
                     f"    WHERE t.{u} = new.{u} AND t.{pk} IS NOT new.{pk};\n")
    out.append((f"{name}_bi", f"CREATE TRIGGER {name}_bi BEFORE INSERT ON {table} BEGIN\n"
                              f"{body}END"))
    if s.integer_key:  # the key the insert chose
        out.append((f"{name}_ai", f"CREATE TRIGGER {name}_ai AFTER INSERT ON {table} BEGIN\n"
                                  f"    INSERT INTO {LOG} (kind, key) VALUES ({kind}, new.{pk});\n"
                                  "END"))
    # AFTER UPDATE of what the document is made of: the old text (if indexed), the new key
    watched = ", ".join(s.watched)
    changed = "\n  OR ".join(f"old.{c} IS NOT new.{c}" for c in s.watched)
    out.append((f"{name}_au", (
        f"CREATE TRIGGER {name}_au\nAFTER UPDATE OF {watched} ON {table}\nWHEN {changed}\nBEGIN\n"
        f"    {_log(s)}\n"
        f"    SELECT {kind}, old.{pk},\n"
        f"           CASE WHEN d.doc_id IS NOT NULL THEN {s.title_of('old')} END,\n"
        f"           CASE WHEN d.doc_id IS NOT NULL THEN {s.body_of('old')} END\n"
        f"    FROM (SELECT 1) LEFT JOIN {DOCS} AS d\n"
        f"    ON d.kind = {kind} AND d.key = old.{pk};\n"
        f"    INSERT INTO {LOG} (kind, key)\n"
        f"    SELECT {kind}, new.{pk} WHERE new.{pk} IS NOT old.{pk};\nEND")))
    # AFTER DELETE: the text, where the index holds some
    out.append((f"{name}_ad", (
        f"CREATE TRIGGER {name}_ad AFTER DELETE ON {table} BEGIN\n"
        f"    {_log(s)}\n"
        f"    SELECT {kind}, old.{pk}, {s.title_of('old')}, {s.body_of('old')}\n"
        f"    FROM {DOCS} AS d WHERE d.kind = {kind} AND d.key = old.{pk};\nEND")))
    return out


def trigger_statements() -> dict[str, str]:
    """Every trigger of the plugin by name: ``CREATE TRIGGER`` statements (without ``;``)."""
    out: dict[str, str] = {}
    for source in SOURCES:
        out.update(_triggers_of(source))
    out[f"{PREFIX}_docs_ad"] = (
        f"CREATE TRIGGER {PREFIX}_docs_ad AFTER DELETE ON {DOCS} BEGIN\n"
        f"    DELETE FROM {MEMBERS} WHERE doc_id = old.doc_id;\n"
        f"    DELETE FROM {MARKS} WHERE doc_id = old.doc_id;\nEND")
    out[f"{PREFIX}_members_ad"] = (
        f"CREATE TRIGGER {PREFIX}_members_ad AFTER DELETE ON {MEMBERS} BEGIN\n"
        f"    UPDATE {THEMES} SET member_count = member_count - 1 WHERE id = old.theme_id;\n"
        f"    DELETE FROM {THEMES} WHERE id = old.theme_id AND member_count <= 0;\n"
        f"    UPDATE {META} SET value = value + 1 WHERE key = 'generation';\nEND")
    return out


TRIGGERS: tuple[str, ...] = tuple(trigger_statements())


# -- statements over documents --------------------------------------------------------------------


def retime_sql(source: Source, where: str = "") -> str:
    """``UPDATE`` of the documents of ``source``: their conversation and time from the rows
    (``where`` narrows it: SQL over ``{DOCS}``)."""
    extra = f" AND {where}" if where else ""
    return (f"UPDATE {DOCS} SET conversation_id = t.{_q(source.conversation)}, "
            f"at = {instant_sql('t.' + _q(source.time))} FROM {_q(source.table)} AS t "
            f"WHERE {DOCS}.kind = '{source.table}' AND t.{_q(source.pk)} = {DOCS}.key{extra}")


def register_sql(source: Source, where: str) -> str:
    """``INSERT`` of documents for rows of ``source`` chosen by ``where`` (SQL over ``t``), in
    the rows' order."""
    return (f"INSERT INTO {DOCS} (kind, key, conversation_id, at) "
            f"SELECT '{source.table}', t.{_q(source.pk)}, t.{_q(source.conversation)}, "
            f"{instant_sql('t.' + _q(source.time))} FROM {_q(source.table)} AS t WHERE {where}")


# -- includes of migration files ------------------------------------------------------------------


def _instants_v1() -> str:
    """0003: every document's time again, through :func:`instant_sql` (0001/0002 took
    ``julianday()`` of the stored text, which is NULL for epoch numbers)."""
    return "\n".join(retime_sql(s) + ";" for s in SOURCES)


INCLUDES: dict[str, Callable[[], str]] = {
    "instants_v1": _instants_v1,
}


def expand(text: str) -> str:
    """A migration file's text with every ``-- @include: NAME`` line replaced by the
    generated SQL (an unknown name is left as it is: a comment)."""
    out = []
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("-- @include:"):
            name = stripped.split(":", 1)[1].strip()
            make = INCLUDES.get(name)
            if make is not None:
                out.append(f"-- generated by hive_store_memory.sqlgen ({name}):")
                out.append(make())
                continue
        out.append(line)
    return "\n".join(out)

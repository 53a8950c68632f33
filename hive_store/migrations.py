"""Migration sets: versioned SQL files, their checksums and a statement splitter.

A migration file is named ``NNNN_snake_name.sql`` and looks like::

    -- @name: hive_schema
    -- @description: what it does
    CREATE TABLE ...;
    CREATE TRIGGER ... BEGIN ...; ...; END;
    -- @down
    DROP TABLE ...;

Everything before the ``-- @down`` line is the up step, everything after it the (optional)
down step. SQLite statements are split with SQLite's own completeness test
(:func:`sqlite3.complete_statement`), so triggers with ``BEGIN … END`` and semicolons inside
strings or comments are handled (the old Hive runner split on every ``;``); other dialects
with a scanner that knows quotes, comments and PostgreSQL's dollar quotes (``$$ … $$``). The
checksum is the SHA-256 of the file with line endings normalised. The runner that applies sets
is a plugin (``hive_store_migrate``); each plugin owns its own set (namespace and version
sequence).

Dialects
--------
A backend names the SQL dialect it speaks (``backend.dialect``: ``"sqlite"``,
``"postgresql"``). A set's files are written for SQLite; a set may carry a *variant* per other
dialect, the same versions written for that dialect (``migrations/postgresql/0001_….sql``
beside ``migrations/0001_….sql`` in a package), each file with its own checksum.
:func:`for_dialect` gives the sets a backend runs: a set's variant for the dialect if it has
one, its own files otherwise, and no set at all when its ``dialects`` (or its plugin's,
``hive_store_supported_dialects``) leave the dialect out — nor the sets that depend on it.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any, Protocol

import attrs

from hive_store.errors import MigrationError

_FILE = re.compile(r"^(\d{1,6})_([a-z0-9][a-z0-9_]*)\.sql$")
_HEADER = re.compile(r"^--\s*@(\w+):\s*(.*?)\s*$")
_DOWN = re.compile(r"^--\s*@down\s*$", re.M)


BASE_DIALECT = "sqlite"
"""The dialect a set's own files are written in."""


def split_statements(sql: str, dialect: str = BASE_DIALECT) -> list[str]:
    """Split SQL text into complete statements (comments kept inside, empty ones dropped)."""
    if dialect != BASE_DIALECT:
        return _split_scanned(sql)
    statements: list[str] = []
    start = 0
    for match in re.finditer(";", sql):
        end = match.end()
        candidate = sql[start:end]
        if sqlite3.complete_statement(candidate):
            if _has_code(candidate):
                statements.append(candidate.strip())
            start = end
    tail = sql[start:]
    if _has_code(tail):
        raise MigrationError(f"incomplete SQL statement at the end: {tail.strip()[:80]!r}")
    return statements


_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def _split_scanned(sql: str) -> list[str]:
    """Split on ``;`` outside quotes (``'…'``, ``"…"``), comments (``--``, nested ``/* */``)
    and dollar quotes (``$tag$ … $tag$``)."""
    statements: list[str] = []
    start, i, n = 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            if j >= n:
                break
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                break
            i = j
        elif c == "$" and (m := _DOLLAR.match(sql, i)) and not (
                i and (sql[i - 1].isalnum() or sql[i - 1] == "_")):
            close = sql.find(m.group(0), m.end())
            if close < 0:
                break
            i = close + len(m.group(0))
        elif c == ";":
            candidate = sql[start:i + 1]
            if _has_code(candidate):
                statements.append(candidate.strip())
            start = i = i + 1
        else:
            i += 1
    tail = sql[start:]
    if _has_code(tail):
        raise MigrationError(f"incomplete SQL statement at the end: {tail.strip()[:80]!r}")
    return statements


def _has_code(sql: str) -> bool:
    """Whether the text holds anything but whitespace and comments."""
    text = re.sub(r"--[^\n]*", "", sql)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return bool(text.strip(" \t\r\n;"))


@attrs.frozen
class Migration:
    """One versioned migration of a set."""

    version: int
    name: str
    up: str
    down: str | None
    checksum: str
    description: str = ""
    dialect: str = BASE_DIALECT

    @property
    def statements(self) -> list[str]:
        return split_statements(self.up, self.dialect)

    @property
    def down_statements(self) -> list[str]:
        return split_statements(self.down, self.dialect) if self.down else []

    @classmethod
    def parse(cls, filename: str, text: str, dialect: str = BASE_DIALECT) -> Migration:
        """Parse a migration file written in ``dialect`` (see the module docstring)."""
        match = _FILE.match(filename)
        if not match:
            raise MigrationError(
                f"bad migration file name {filename!r}: expected NNNN_snake_name.sql"
            )
        text = text.replace("\r\n", "\n")
        headers: dict[str, str] = {}
        for line in text.splitlines():
            head = _HEADER.match(line)
            if head:
                headers[head.group(1).lower()] = head.group(2)
            elif line.strip() and not line.lstrip().startswith("--"):
                break
        parts = _DOWN.split(text, maxsplit=1)
        up = parts[0]
        down = parts[1] if len(parts) > 1 and _has_code(parts[1]) else None
        checksum = hashlib.sha256(text.encode("utf-8")).hexdigest()
        migration = cls(int(match.group(1)), headers.get("name", match.group(2)), up, down,
                        checksum, headers.get("description", ""), dialect)
        try:
            migration.statements  # noqa: B018 - validate now, not halfway through applying
            migration.down_statements  # noqa: B018
        except MigrationError as exc:
            raise MigrationError(f"{filename}: {exc}") from None
        return migration


@attrs.frozen
class MigrationSet:
    """The migrations of one namespace (the core's is ``"hive_store"``), in version order.

    :ivar depends_on: namespaces whose migrations must be applied before this set's
    :ivar variants: ``(dialect, migrations)`` pairs: the set written for another dialect
    :ivar dialects: the dialects this set can run on (``None``: any; its own files serve a
        dialect without a variant)
    """

    namespace: str
    migrations: tuple[Migration, ...]
    depends_on: tuple[str, ...] = ()
    variants: tuple[tuple[str, tuple[Migration, ...]], ...] = ()
    dialects: tuple[str, ...] | None = None

    def __attrs_post_init__(self) -> None:
        for label, migrations in (("", self.migrations), *(
                (f" ({d})", ms) for d, ms in self.variants)):
            versions = [m.version for m in migrations]
            if len(set(versions)) != len(versions):
                dupes = sorted({v for v in versions if versions.count(v) > 1})
                raise MigrationError(
                    f"migration set {self.namespace!r}{label} repeats versions {dupes}")
        if [m.version for m in self.migrations] != sorted(m.version for m in self.migrations):
            object.__setattr__(self, "migrations",
                               tuple(sorted(self.migrations, key=lambda m: m.version)))
        object.__setattr__(self, "variants", tuple(
            (d, tuple(sorted(ms, key=lambda m: m.version))) for d, ms in self.variants))

    @property
    def latest(self) -> int:
        return self.migrations[-1].version if self.migrations else 0

    def get(self, version: int) -> Migration | None:
        return next((m for m in self.migrations if m.version == version), None)

    def supports(self, dialect: str) -> bool:
        """Whether this set can run on a backend of ``dialect``."""
        return (dialect in dict(self.variants) or self.dialects is None
                or dialect in self.dialects)

    def for_dialect(self, dialect: str) -> MigrationSet:
        """The set a backend of ``dialect`` runs: its variant's files, or its own."""
        variant = dict(self.variants).get(dialect)
        if variant is None:
            return self
        return attrs.evolve(self, migrations=variant, variants=(), dialects=(dialect,))

    @classmethod
    def from_package(cls, namespace: str, package: str, depends_on: Sequence[str] = (),
                     dialects: Sequence[str] | None = None) -> MigrationSet:
        """Load every ``*.sql`` file of an importable package (shipped in a wheel), and each
        subfolder named after a dialect (``postgresql/*.sql``) as that dialect's variant."""
        try:
            root = resources.files(package)
        except ModuleNotFoundError:
            raise MigrationError(f"migration package {package!r} is not installed") from None

        def load(folder: Any, dialect: str) -> tuple[Migration, ...]:
            files = sorted((entry.name, entry.read_text(encoding="utf-8"))
                           for entry in folder.iterdir() if entry.name.endswith(".sql"))
            return tuple(Migration.parse(n, t, dialect) for n, t in files)

        variants = tuple((entry.name, load(entry, entry.name)) for entry in sorted(
            root.iterdir(), key=lambda e: e.name)
            if entry.is_dir() and _DIALECT.fullmatch(entry.name))
        return cls(namespace, load(root, BASE_DIALECT), tuple(depends_on), variants,
                   None if dialects is None else tuple(dialects))

    @classmethod
    def from_sql(cls, namespace: str, files: Iterable[tuple[str, str]],
                 depends_on: Sequence[str] = (), *,
                 variants: dict[str, Iterable[tuple[str, str]]] | None = None,
                 dialects: Sequence[str] | None = None) -> MigrationSet:
        """Build a set from ``(filename, text)`` pairs (for plugins that embed their SQL);
        ``variants`` maps a dialect to its own files."""
        return cls(namespace, tuple(Migration.parse(n, t) for n, t in files), tuple(depends_on),
                   tuple((d, tuple(Migration.parse(n, t, d) for n, t in fs))
                         for d, fs in (variants or {}).items()),
                   None if dialects is None else tuple(dialects))


_DIALECT = re.compile(r"[a-z][a-z0-9_]*")


def for_dialect(sets: Sequence[MigrationSet], dialect: str) -> list[MigrationSet]:
    """The sets a backend of ``dialect`` runs (see the module docstring): each in its variant
    for the dialect; the sets that cannot run on it left out, with those depending on them."""
    kept = {s.namespace: s.for_dialect(dialect) for s in sets if s.supports(dialect)}
    changed = True
    while changed:
        changed = False
        for ns, mset in list(kept.items()):
            if any(dep not in kept and dep in {s.namespace for s in sets}
                   for dep in mset.depends_on):
                del kept[ns]
                changed = True
    return [kept[s.namespace] for s in sets if s.namespace in kept]


def order_sets(sets: Sequence[MigrationSet]) -> list[MigrationSet]:
    """Sets in dependency order; a missing dependency or a cycle is a :class:`MigrationError`."""
    by_ns: dict[str, MigrationSet] = {}
    for s in sets:
        if s.namespace in by_ns:
            raise MigrationError(f"two plugins register the migration namespace {s.namespace!r}")
        by_ns[s.namespace] = s
    ordered: list[MigrationSet] = []
    state: dict[str, int] = {}

    def visit(ns: str, path: tuple[str, ...]) -> None:
        if state.get(ns) == 2:
            return
        if state.get(ns) == 1:
            cycle = " -> ".join((*path, ns))
            raise MigrationError(f"migration sets depend on each other: {cycle}")
        if ns not in by_ns:
            raise MigrationError(
                f"migration set {path[-1]!r} depends on {ns!r}, which no loaded plugin provides"
            )
        state[ns] = 1
        for dep in by_ns[ns].depends_on:
            visit(dep, (*path, ns))
        state[ns] = 2
        ordered.append(by_ns[ns])

    core_first = sorted(by_ns, key=lambda ns: (ns != "hive_store", ns))
    for ns in core_first:
        visit(ns, ())
    return ordered


@attrs.frozen
class AppliedMigration:
    """A row of the migration record."""

    namespace: str
    version: int
    name: str
    checksum: str
    applied_at: str
    duration_ms: float


class SQLDialect(Protocol):
    """What a migration runner needs to know of a backend's SQL: a backend that gives one as
    ``backend.sql`` can be migrated by ``hive_store_migrate``'s runner. Every method takes the
    backend's native connection (inside ``backend.transaction()`` for the writing ones)."""

    name: str
    """The dialect (``"sqlite"``, ``"postgresql"``): which variant of a set runs."""
    param: str
    """The placeholder of a bound parameter (``"?"``, ``"%s"``)."""
    errors: tuple[type[Exception], ...]
    """The driver's exceptions a failing statement raises."""

    def table_names(self, conn: Any) -> set[str]:
        """The tables of the database (its schema in use, on a server)."""
        ...

    def lock_migrations(self, conn: Any) -> None:
        """Make migration runs of other processes wait for this transaction's end (SQLite's
        write lock already does: nothing to do there)."""
        ...

    def defer_foreign_keys(self, conn: Any) -> None:
        """Check foreign keys at ``COMMIT`` instead of after each statement, for the rest of
        this transaction (down steps delete parents before dropping their children)."""
        ...


class Migrator(Protocol):
    """Applies migration sets to a backend (returned by the ``hive_store_migrator`` hook)."""

    def applied(self) -> list[AppliedMigration]:
        """Every migration recorded as applied."""
        ...

    def pending(self, sets: Sequence[MigrationSet]) -> list[tuple[str, Migration]]:
        """``(namespace, migration)`` pairs not applied yet, in the order they would run."""
        ...

    def upgrade(self, sets: Sequence[MigrationSet], *, allow_drift: bool = False) -> list[Any]:
        """Apply what is pending, each migration atomically; returns what was applied."""
        ...

"""Migration sets: versioned SQL files, their checksums and a statement splitter.

A migration file is named ``NNNN_snake_name.sql`` and looks like::

    -- @name: hive_schema
    -- @description: what it does
    CREATE TABLE ...;
    CREATE TRIGGER ... BEGIN ...; ...; END;
    -- @down
    DROP TABLE ...;

Everything before the ``-- @down`` line is the up step, everything after it the (optional)
down step. Statements are split with SQLite's own completeness test
(:func:`sqlite3.complete_statement`), so triggers with ``BEGIN … END`` and semicolons inside
strings or comments are handled (the old Hive runner split on every ``;``). The checksum is the
SHA-256 of the file with line endings normalised. The runner that applies sets is a plugin
(``hive_store_migrate``); each plugin owns its own set (namespace and version sequence).
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


def split_statements(sql: str) -> list[str]:
    """Split SQL text into complete statements (comments kept inside, empty ones dropped)."""
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

    @property
    def statements(self) -> list[str]:
        return split_statements(self.up)

    @property
    def down_statements(self) -> list[str]:
        return split_statements(self.down) if self.down else []

    @classmethod
    def parse(cls, filename: str, text: str) -> Migration:
        """Parse a migration file (see the module docstring)."""
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
                        checksum, headers.get("description", ""))
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
    """

    namespace: str
    migrations: tuple[Migration, ...]
    depends_on: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        versions = [m.version for m in self.migrations]
        if len(set(versions)) != len(versions):
            dupes = sorted({v for v in versions if versions.count(v) > 1})
            raise MigrationError(f"migration set {self.namespace!r} repeats versions {dupes}")
        if versions != sorted(versions):
            object.__setattr__(self, "migrations",
                               tuple(sorted(self.migrations, key=lambda m: m.version)))

    @property
    def latest(self) -> int:
        return self.migrations[-1].version if self.migrations else 0

    def get(self, version: int) -> Migration | None:
        return next((m for m in self.migrations if m.version == version), None)

    @classmethod
    def from_package(cls, namespace: str, package: str,
                     depends_on: Sequence[str] = ()) -> MigrationSet:
        """Load every ``*.sql`` file of an importable package (shipped in a wheel)."""
        try:
            root = resources.files(package)
        except ModuleNotFoundError:
            raise MigrationError(f"migration package {package!r} is not installed") from None
        files = sorted((entry.name, entry.read_text(encoding="utf-8"))
                       for entry in root.iterdir() if entry.name.endswith(".sql"))
        return cls(namespace, tuple(Migration.parse(n, t) for n, t in files), tuple(depends_on))

    @classmethod
    def from_sql(cls, namespace: str, files: Iterable[tuple[str, str]],
                 depends_on: Sequence[str] = ()) -> MigrationSet:
        """Build a set from ``(filename, text)`` pairs (for plugins that embed their SQL)."""
        return cls(namespace, tuple(Migration.parse(n, t) for n, t in files), tuple(depends_on))


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

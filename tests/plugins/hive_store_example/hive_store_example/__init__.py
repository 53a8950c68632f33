"""An example third-party hive-store plugin (a test fixture and a template for plugin authors).

It shows every extension point a typical plugin uses:

* an entity of its own (:class:`ExampleNote`, table ``example_notes``), so the store gets
  ``store.example_notes`` and ``store.repo(ExampleNote)``;
* its own migration set (namespace ``"example"``) that creates that table after the core
  schema (it references ``conversations``);
* a command, ``hive-store example-count``;
* a post-commit change listener that records the tables of committed changes in
  :data:`COMMITTED_TABLES`.

Registered in its ``pyproject.toml``::

    [project.entry-points.hive_store]
    example = "hive_store_example"
"""

# No ``from __future__ import annotations``: attrs and hive_store's converters read the real
# field types of the entity.

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

import attrs
import click

import hive_store
from hive_store.entities import utcnow
from hive_store.migrations import MigrationSet

__all__ = ["COMMITTED_TABLES", "NAMESPACE", "SQL", "ExampleNote"]

NAMESPACE = "example"

COMMITTED_TABLES: list[str] = []
"""The table of every committed change this plugin has seen, in commit order (tests clear it)."""


@attrs.frozen(kw_only=True)
class ExampleNote:
    """A note, optionally attached to a conversation (a row of ``example_notes``)."""

    __table__: ClassVar[str] = "example_notes"
    __pk__: ClassVar[str] = "id"

    id: str = attrs.field(factory=hive_store.uuid7)
    conversation_id: str | None = None
    body: str
    created_at: datetime = attrs.field(factory=utcnow)


SQL = """\
-- @name: example_notes
-- @description: Notes of the example plugin, optionally attached to a conversation.
CREATE TABLE example_notes (
    id TEXT PRIMARY KEY,
    conversation_id TEXT,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (conversation_id) REFERENCES conversations(id) ON DELETE CASCADE
);
CREATE INDEX idx_example_notes_conversation ON example_notes(conversation_id);
-- @down
DROP INDEX IF EXISTS idx_example_notes_conversation;
DROP TABLE IF EXISTS example_notes;
"""


@hive_store.hookimpl
def hive_store_register_entities() -> Sequence[type]:
    return [ExampleNote]


@hive_store.hookimpl
def hive_store_register_migrations() -> Sequence[MigrationSet]:
    return [MigrationSet.from_sql(NAMESPACE, [("0001_example_notes.sql", SQL)],
                                  depends_on=("hive_store",))]


@click.command("example-count")
@click.pass_obj
def example_count(obj: Any) -> None:
    """Print how many example notes the database holds."""
    with obj.open() as store:
        count = store.repo(ExampleNote).count()
    obj.emit({"example_notes": count}, lambda: click.echo(str(count)))


@hive_store.hookimpl
def hive_store_register_commands(cli: click.Group) -> None:
    cli.add_command(example_count)


@hive_store.hookimpl
def hive_store_after_commit(store: Any, changes: Sequence[hive_store.Change]) -> None:
    COMMITTED_TABLES.extend(change.table for change in changes)

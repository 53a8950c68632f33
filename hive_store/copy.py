"""Copy a whole store to another backend: ``hive-store copy SRC_URL DST_URL``.

What is copied: the rows of every Hive table (the core entities) that both stores have, in
table-creation order (parents before children) and primary-key order, ``batch_size`` rows per
transaction of the destination. Plugins' own tables are not copied: they hold what a plugin
derives (the memory plugin's index: ``hive-store memory reindex`` rebuilds it) or what belongs
to one device (the D1 mirror's outbox and clocks).

* **Nothing changes in the source.** It is opened read-only and must be at the schema
  version the code knows (``hive-store migrate --db SRC`` adopts or upgrades it first).
* **Resumable.** Each batch commits on its own; a copy that was stopped (Ctrl-C, ``kill -9``,
  a lost connection) is finished by running the same command again: rows already there are
  skipped (or brought up to date if they differ), the rest are added.
* **Exact.** The destination ends with the source's rows and nothing else: rows its own
  migrations seeded (the model catalog) that the source does not have are deleted at the
  end. A destination that holds rows of its own (neither the source's nor seeded) is refused
  before anything is written.
* **Verified.** At the end every table's row count and a digest of its typed values (each
  entity's values as the codec writes them: UTC timestamps, JSON text, 0/1 booleans; summed
  over rows so that both sides may list rows in any order) are compared; a difference is a
  :class:`CopyError`.
* **Rows that cannot be copied** — a row whose parent is missing (old Hive apps did not
  enforce foreign keys; adoption reports such rows), text PostgreSQL cannot hold (NUL) — stop
  the copy with a :class:`CopyError` naming them; with ``skip_invalid=True`` they are left out
  and listed in the report instead (the source still holds them).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

from hive_store.entities import CORE_ENTITIES
from hive_store.errors import ConfigurationError, HiveStoreError, IntegrityError, ValidationError

Progress = Callable[[str, int, int | None], None]
"""``progress(table, rows_done, rows_total)``."""


class CopyError(HiveStoreError):
    """A copy that cannot go on (or did not verify); what was committed stays, and running the
    same copy again resumes it."""


@attrs.define
class TableReport:
    """What happened to one table."""

    table: str
    source_rows: int
    added: int = 0
    updated: int = 0
    present: int = 0  # already there, equal (a resumed copy)
    deleted: int = 0  # seeded by the destination's migrations, not in the source
    skipped: list[dict[str, Any]] = attrs.field(factory=list)
    digest: str = ""
    verified: bool = False


@attrs.define
class CopyReport:
    source: str
    destination: str
    tables: list[TableReport] = attrs.field(factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(t.source_rows for t in self.tables)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "destination": self.destination, "rows": self.rows,
                "seconds": self.seconds, "tables": [attrs.asdict(t) for t in self.tables]}


def _classes(src: Any, dst: Any) -> list[type]:
    """The core entities whose tables both stores have, parents first."""
    src_tables, dst_tables = set(src.backend.table_counts()), set(dst.backend.table_counts())
    return [cls for cls in CORE_ENTITIES
            if cls.__table__ in src_tables and cls.__table__ in dst_tables  # type: ignore[attr-defined]
            and cls in src.entities.values() and cls in dst.entities.values()]


def _seeded(plugins: Any) -> dict[str, set[Any]]:
    """The keys a freshly migrated store holds (its migrations' seed rows), by table."""
    from hive_store.store import open as open_store

    with open_store(":memory:", plugins=plugins) as fresh:
        seeded: dict[str, set[Any]] = {}
        for cls in CORE_ENTITIES:
            codec: Any = fresh.codec(cls)
            rows: Any = fresh.repo(cls).iter()
            seeded[codec.table] = {codec.key_of(e) for e in rows}
        return seeded


def _row_digest(codec: Any, entity: Any) -> int:
    row = codec.to_row(entity)
    return int.from_bytes(hashlib.sha256(repr(row).encode("utf-8", "surrogatepass"))
                          .digest()[:16], "big")


def digest(store: Any, cls: type, batch_size: int = 2000) -> tuple[int, str]:
    """``(rows, digest)`` of a table: the digest sums each row's SHA-256 (of its values as the
    codec writes them) modulo 2**128, so it does not depend on the order rows come in."""
    codec = store.codec(cls)
    total, n = 0, 0
    for entity in store.repo(cls).iter(batch_size=batch_size):
        total = (total + _row_digest(codec, entity)) % (1 << 128)
        n += 1
    return n, f"{total:032x}"


def _batches(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def copy_store(src: Any, dst: Any, *, batch_size: int = 1000, skip_invalid: bool = False,
               progress: Progress | None = None) -> CopyReport:
    """Copy ``src``'s Hive tables into ``dst`` (see the module docstring)."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not (
            1 <= batch_size <= 100_000):
        raise ConfigurationError("batch_size must be an integer from 1 to 100000")
    start = time.perf_counter()
    report = CopyReport(str(src.url), str(dst.url))
    classes = _classes(src, dst)
    seeded = _seeded(dst.plugins)
    _refuse_foreign_rows(src, dst, classes, seeded)
    for cls in classes:
        report.tables.append(_copy_table(src, dst, cls, batch_size, skip_invalid, progress))
    for cls, table in reversed(list(zip(classes, report.tables, strict=True))):
        table.deleted = _delete_extra(src, dst, cls, seeded.get(table.table, set()))
    for cls, table in zip(classes, report.tables, strict=True):
        _verify(src, dst, cls, table, batch_size)
    report.seconds = round(time.perf_counter() - start, 3)
    return report


def _keys(store: Any, cls: type, keys: Sequence[Any]) -> dict[Any, Any]:
    codec = store.codec(cls)
    return {codec.key_of(e): e for e in store.repo(cls).get_many(keys)}


def _refuse_foreign_rows(src: Any, dst: Any, classes: list[type],
                         seeded: dict[str, set[Any]]) -> None:
    """Refuse a destination holding rows that are neither the source's nor seeded."""
    for cls in classes:
        table = cls.__table__  # type: ignore[attr-defined]
        codec = dst.codec(cls)
        if dst.repo(cls).count() == 0:
            continue
        for batch in _batches(dst.repo(cls).iter(batch_size=1000), 1000):
            keys = [codec.key_of(e) for e in batch]
            in_src = _keys(src, cls, keys)
            foreign = [k for k in keys if k not in in_src and k not in seeded.get(table, ())]
            if foreign:
                raise CopyError(
                    f"the destination already holds rows of its own in {table} (e.g. key "
                    f"{foreign[0]!r:.60}; {len(foreign)}+ rows that are not the source's): "
                    "copy into a new, empty database")


def _copy_table(src: Any, dst: Any, cls: type, batch_size: int, skip_invalid: bool,
                progress: Progress | None) -> TableReport:
    table = cls.__table__  # type: ignore[attr-defined]
    codec = src.codec(cls)
    total = src.repo(cls).count()
    report = TableReport(table, total)
    done = 0
    if progress is not None:
        progress(table, 0, total)
    for batch in _batches(src.repo(cls).iter(order_by=codec.pk, batch_size=batch_size),
                          batch_size):
        keys = [codec.key_of(e) for e in batch]
        there = _keys(dst, cls, keys)
        missing = [e for e in batch if codec.key_of(e) not in there]
        changed = [e for e in batch if codec.key_of(e) in there
                   and codec.to_row(there[codec.key_of(e)]) != codec.to_row(e)]
        report.present += len(batch) - len(missing) - len(changed)
        try:
            with dst.transaction():
                if missing:
                    dst.repo(cls).add_many(missing)
                for entity in changed:
                    dst.repo(cls).upsert(entity)
            report.added += len(missing)
            report.updated += len(changed)
        except (IntegrityError, ValidationError):
            # Find the rows that cannot go in, one by one (each under its own savepoint).
            bad = _one_by_one(dst, cls, missing, changed, report)
            if bad and not skip_invalid:
                first = bad[0]
                raise CopyError(
                    f"{table}: {len(bad)} row(s) cannot be copied, e.g. key "
                    f"{first['key']!r:.60}: {first['reason']} (the rows before them are "
                    "copied; fix the source, or copy with --skip-invalid to leave them out "
                    "and list them)") from None
            report.skipped.extend(bad)
        done += len(batch)
        if progress is not None:
            progress(table, done, total)
    return report


def _one_by_one(dst: Any, cls: type, missing: list[Any], changed: list[Any],
                report: TableReport) -> list[dict[str, Any]]:
    codec = dst.codec(cls)
    bad: list[dict[str, Any]] = []
    with dst.transaction():
        for entity, write in ([(e, "add") for e in missing] + [(e, "upsert") for e in changed]):
            try:
                with dst.transaction():
                    getattr(dst.repo(cls), write)(entity)
                if write == "add":
                    report.added += 1
                else:
                    report.updated += 1
            except (IntegrityError, ValidationError) as exc:
                bad.append({"key": codec.key_of(entity), "reason": str(exc)[:300]})
    return bad


def _delete_extra(src: Any, dst: Any, cls: type, seeded: set[Any]) -> int:
    """Delete the destination's seeded rows the source does not have."""
    if not seeded:
        return 0
    present = _keys(dst, cls, sorted(seeded, key=repr))
    in_src = _keys(src, cls, list(present))
    extra = [k for k in present if k not in in_src]
    with dst.transaction():
        for key in extra:
            dst.repo(cls).delete(key)
    return len(extra)


def _verify(src: Any, dst: Any, cls: type, table: TableReport, batch_size: int) -> None:
    n_src, d_src = digest(src, cls, batch_size)
    n_dst, d_dst = digest(dst, cls, batch_size)
    skipped = len(table.skipped)
    if skipped:  # the digest cannot match; the counts must differ by exactly those rows
        if n_dst != n_src - skipped:
            raise CopyError(f"{table.table}: {n_dst} rows copied, expected {n_src - skipped} "
                            f"({n_src} minus {skipped} left out)")
        table.digest = d_dst
        return
    if n_src != n_dst or d_src != d_dst:
        raise CopyError(f"{table.table} did not verify: {n_src} rows (digest {d_src[:12]}) in "
                        f"the source, {n_dst} (digest {d_dst[:12]}) in the destination; run "
                        "the copy again")
    table.digest, table.verified = d_src, True

"""The backup adoption writes next to a legacy file before it changes anything.

The copy is written under a temporary name (``….bak.partial``) and renamed into place only
once it is complete and on disk, so a ``….bak`` file is always a whole database. A partial copy
left by a process that died while writing one is removed by the next adoption of that file
(under the write lock, when no other process can be writing one).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

PARTIAL = ".partial"
STEP_PAGES = 16384  # 64 MiB of 4 KiB pages per step: a progress report per step

PagesFn = Callable[[int, int], None]
"""``pages(done, total)`` while the backup copies pages."""


def backup_path(db_path: Path) -> Path:
    """A backup name next to ``db_path`` that is not taken yet (nor its partial name)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = db_path.with_name(f"{db_path.name}.pre-hive-store-{stamp}.bak")
    n = 1
    while candidate.exists() or _partial(candidate).exists():
        n += 1
        candidate = db_path.with_name(f"{db_path.name}.pre-hive-store-{stamp}-{n}.bak")
    return candidate


def _partial(dest: Path) -> Path:
    return dest.with_name(dest.name + PARTIAL)


def stale_partials(db_path: Path) -> list[Path]:
    """Partial backups (and their journals) a process that died while writing one left."""
    pattern = f"{db_path.name}.pre-hive-store-*.bak{PARTIAL}*"
    return sorted(db_path.parent.glob(pattern))


def remove_stale_partials(db_path: Path) -> list[Path]:
    """Remove :func:`stale_partials`; call it only while holding the database's write lock."""
    removed = []
    for path in stale_partials(db_path):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def write_backup(source: Path, dest: Path, pages: PagesFn | None = None) -> None:
    """Online backup (SQLite's backup API) of the database file ``source`` to ``dest`` (0600).

    Call it while holding the write lock but before writing: a separate reading connection
    then copies a consistent snapshot (the backup API cannot read through a connection that
    is itself writing). ``dest`` appears only when the copy is complete and synced.
    """
    partial = _partial(dest)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        src = sqlite3.connect(source)  # only reads (a snapshot, while we hold the write lock)
        target = sqlite3.connect(partial)
        # No journal and no syncs while copying: the copy only counts once it is complete,
        # synced (below) and renamed; a crash leaves a partial file the next run removes.
        target.execute("PRAGMA journal_mode = OFF")
        target.execute("PRAGMA synchronous = OFF")
        try:
            progress = None
            if pages is not None:
                def progress(_status: int, remaining: int, total: int) -> None:
                    pages(total - remaining, total)
            src.backup(target, pages=STEP_PAGES, progress=progress)
        finally:
            target.close()
            src.close()
        with open(partial, "rb+") as f:  # the backup API committed; make sure it is on disk
            os.fsync(f.fileno())
        os.replace(partial, dest)
        _sync_dir(dest.parent)
    except BaseException:
        for leftover in (partial, partial.with_name(partial.name + "-journal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        raise


def _sync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not possible on this platform (Windows); the rename itself is atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

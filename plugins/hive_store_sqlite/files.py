"""Database files on disk: what the SQLite backend (and the health plugin's backup and restore)
check before touching a path.

* Paths in SQLite ``file:`` URIs are percent-encoded (:func:`uri`): a ``?``, ``#`` or ``%`` in a
  file name is part of the name, never a query, a fragment or an escape.
* Only regular files are databases or backups (:func:`require_regular`): a device, FIFO,
  socket or directory is refused before SQLite opens it (opening a FIFO would hang) and never
  replaced by a rename.
* Folders are not created on the caller's behalf (:func:`require_folder`), except hive-store's
  default folder ``~/.hive``, created 0700.
* A database readable by other users is reported once per process (:func:`check_private`) and
  its ``-wal``/``-shm`` files, which SQLite creates with the database's mode, are made 0600.
* :func:`unwritable` says why a database cannot be written in place (a read-only file, folder
  or mount), so the backend can open it read-only instead of failing every command.
* Temporary files are written as ``.NAME.partial-PID-…`` next to their destination and renamed;
  :func:`clean_partials` removes the ones a killed process left.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import urllib.parse
from pathlib import Path

from hive_store.errors import StorageError
from hive_store.url import DEFAULT_PATH

log = logging.getLogger("hive_store.sqlite")

SIDECARS = ("-wal", "-shm", "-journal")
_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket",
          stat.S_IFDIR: "a directory"}

_warned: set[str] = set()
_warned_lock = threading.Lock()


def quote_uri_path(path: Path) -> str:
    """``path`` for a SQLite ``file:`` URI: absolute, every special character
    percent-encoded (a ``?`` or ``#`` in a file name is not a query or a fragment)."""
    return urllib.parse.quote(str(path.absolute()), safe="/")


def uri(path: Path, **params: str) -> str:
    """A ``file:`` URI for ``path`` with query ``params`` (e.g. ``mode="ro"``)."""
    query = urllib.parse.urlencode(params)
    return f"file:{quote_uri_path(path)}" + (f"?{query}" if query else "")


def kind(path: Path) -> str | None:
    """What ``path`` is if it exists and is not a regular file (following symlinks), else
    ``None`` (a regular file, or nothing there)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            return None
        raise
    if stat.S_ISREG(mode):
        return None
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def require_regular(path: Path, what: str = "database") -> None:
    """Refuse a ``path`` that exists but is not a regular file (a device, a FIFO, a socket,
    a directory): a :class:`StorageError` naming what it is."""
    try:
        found = kind(path)
    except OSError as exc:
        raise StorageError(f"cannot inspect {path}: {exc.strerror or exc}") from None
    if found is not None:
        raise StorageError(f"{path} is {found}, not a {what} file; give the path of a "
                           f"regular file")


def default_folder() -> Path:
    """``~/.hive``: the one folder hive-store creates itself."""
    return DEFAULT_PATH.expanduser().parent


def require_folder(path: Path) -> None:
    """The folder of ``path`` must exist: a mistyped path is an error, not a new directory
    tree. hive-store's default folder (``~/.hive``) is created, 0700, when missing."""
    folder = path.absolute().parent
    if folder.is_dir():
        return
    if folder.exists():
        raise StorageError(f"{folder} is not a folder (in the path {path})")
    if folder == default_folder().absolute():
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot create the folder {folder}: "
                               f"{exc.strerror or exc}") from None
        return
    raise StorageError(f"the folder {folder} does not exist (is the path {path} right? "
                       "create the folder first)")


def create_private(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 whatever the umask (a database holds API keys);
    ``False`` if it exists already."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def check_private(path: Path, *, fix: bool = True) -> str | None:
    """If the database ``path`` can be read by other users, say so (a warning logged once per
    path and process) and, with ``fix``, make its ``-wal``/``-shm`` files 0600 (an empty file,
    a database hive-store is about to create in it, is made 0600 itself). Returns the
    warning, or ``None`` when the file is private."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return None
    if fix and st.st_size == 0:
        try:
            os.chmod(path, 0o600)
            return None
        except OSError:
            pass
    if fix:
        private_sidecars(path)
    if not mode & 0o044:
        return None  # writable or executable by others but not readable: not a leak
    who = "every user" if mode & 0o004 else "its group"
    message = (f"{path} is readable by {who} (mode {mode:04o}) and holds API keys and license "
               f"keys: make it private with `chmod 600 {path}`")
    with _warned_lock:
        first = str(path) not in _warned
        _warned.add(str(path))
    if first:
        log.warning("%s", message)
    return message


def private_sidecars(path: Path) -> None:
    """Make the ``-wal``/``-shm``/``-journal`` files of ``path`` 0600 if they are not."""
    for suffix in SIDECARS:
        side = Path(f"{path}{suffix}")
        try:
            if stat.S_IMODE(os.stat(side).st_mode) & 0o077:
                os.chmod(side, 0o600)
        except OSError:
            continue


def unwritable(path: Path) -> str | None:
    """Why the existing database ``path`` cannot be written in place, or ``None`` if it can:
    SQLite needs to write the file and to create its ``-wal``/``-shm`` (or ``-journal``)
    files in its folder."""
    folder = path.absolute().parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"it is on a read-only file system (the mount holding {folder})"
    except (OSError, AttributeError):
        pass
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"its folder {folder} is read-only"
    if not os.access(path, os.W_OK):
        return f"the file {path} is read-only"
    return None


def alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def partial_name(dest: Path) -> Path:
    """A temporary name next to ``dest`` for a file written and then renamed over it."""
    import time

    return dest.with_name(f".{dest.name}.partial-{os.getpid()}-{time.monotonic_ns()}")


def clean_partials(dest: Path) -> list[Path]:
    """Remove the temporary files (and their journals) that writers of ``dest`` killed before
    they finished left next to it; those of running processes stay. Returns what went."""
    gone: list[Path] = []
    prefix = f".{dest.name}.partial-"
    try:
        entries = list(dest.parent.iterdir())
    except OSError:
        return gone
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix):
            continue
        pid_text = name[len(prefix):].split("-", 1)[0]
        if not pid_text.isdigit() or alive(int(pid_text)):
            continue
        try:
            if entry.is_symlink() or not entry.is_file():
                continue
            entry.unlink()
            gone.append(entry)
        except OSError:
            continue
    if gone:
        log.info("removed %d unfinished temporary file(s) next to %s", len(gone), dest)
    return gone

"""The background indexer: one thread per open store that applies the change log to the
full-text index and puts new knowledge entries into themes, after the commits that logged them.

Writes only append to ``hive_store_memory_log`` (triggers); the cost of indexing (tokenizing,
~30-40 us per knowledge entry) and of theme assignment is paid here, off the commit path:

* ``hive_store_after_commit`` calls :meth:`Indexer.committed` after each commit: it notes the
  time (one float) and, when a change touched an indexed table, wakes the thread (an
  ``Event.set()``): nothing per row in the committing thread;
* the thread catches up with ``Memory._catch_up``: batches of at most ``Memory.batch_size``
  log rows, each in its own short write transaction, then theme assignment of the entries it
  indexed, also in batches;
* it is polite to writers: each batch is a short transaction (about
  ``Memory.write_seconds``, 4 ms, while a commit happened in the last second, else 50 ms: the
  batch size adapts), theme assignment is computed outside the write lock in slices of the
  same length, and before each batch it waits until no commit
  has happened for :attr:`Indexer.quiet` seconds (0.05), but at most
  :attr:`Indexer.max_delay` seconds (1.0); while writers are active it also rests as long as
  its last batch took (at most half of the time is its). So a bulk import is not slowed by
  indexing (it waits for the pause after it, or does one batch a second), and an interactive
  write is indexed ~50 ms after its commit. A reader with a small backlog catches up itself
  (:meth:`Memory.flush`); :meth:`wait_idle` makes the thread skip the waiting;
* it also looks at the log every ``poll_interval`` seconds (``HIVE_STORE_MEMORY_POLL``;
  default 5, 0 = never), for rows other programs wrote;
* errors are logged once per streak (type and message; never row text, settings or a
  traceback) and kept for the ``memory_index`` health check; an error that goes away is
  retried with a back-off (0.1 s doubling to 30 s), one that stays (a read-only or damaged
  file, rows the index cannot take) stops the work until ``flush``/``reindex`` or the next
  open (``Memory.stopped``). Nothing is ever raised into a writer.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hive_store_memory.service import Memory

log = logging.getLogger("hive_store.memory")

THREAD_NAME = "hive-store-memory-indexer"
MAX_BACKOFF = 30.0


class Indexer:
    """The background indexer of one :class:`~hive_store_memory.Memory` (see the module
    docstring). :meth:`start` once; :meth:`stop` joins the thread.

    :ivar quiet: seconds without a commit before the next batch (writers first)
    :ivar max_delay: ... but never more than this between batches
    :ivar poll_interval: seconds between looks at the log without a wake-up (``None``: never)
    """

    def __init__(self, memory: Memory, *, poll_interval: float | None = 5.0,
                 quiet: float = 0.05, max_delay: float = 1.0) -> None:
        self.memory = memory
        self.poll_interval = poll_interval if poll_interval and poll_interval > 0 else None
        self.quiet = quiet
        self.max_delay = max_delay
        self.last_commit = 0.0  # time.monotonic() of the store's latest commit
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._requested = 0  # wake-ups asked for by wait_idle
        self._done = 0  # the latest request a finished pass covered
        self._ok = 0  # ... and a pass that succeeded covered
        self._thread: threading.Thread | None = None
        self.passes = 0
        self.failures = 0
        self._retry_at = 0.0
        self._backoff = 0.0
        self._resumed = 0.0  # when the last pause ended (a batch started)

    def __repr__(self) -> str:
        return f"<hive_store_memory.Indexer {'running' if self.running else 'stopped'}>"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Indexer:
        self._thread = threading.Thread(target=self._loop, name=THREAD_NAME, daemon=True)
        self._thread.start()
        return self

    def committed(self, indexed: bool) -> None:
        """After a commit of the store (the plugin's ``hive_store_after_commit``): note the
        time, and wake the thread when the commit touched an indexed table."""
        self.last_commit = time.monotonic()
        if indexed:
            self._wake.set()

    def wake(self) -> None:
        """Ask for a catch-up."""
        self._wake.set()

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Stop the thread and wait for it (it finishes the batch it is in); idempotent.
        Returns whether it has stopped."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            self._cond.notify_all()
        stopped = thread is None or not thread.is_alive()
        if not stopped:
            log.warning("memory: the indexer thread did not stop within %s s", timeout)
        return stopped

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wake the thread and wait until it has applied everything committed before this
        call (index and themes), without pausing for writers. ``True`` when it did; ``False``
        on timeout, when its catch-up failed (see ``Memory.last_error``) or when it is not
        running."""
        if not self.running:
            return False
        self._retry_at = 0.0  # asked for: no back-off
        with self._cond:
            self._requested += 1
            target = self._requested
            self._wake.set()
            self._cond.wait_for(lambda: self._done >= target or self._stop.is_set(), timeout)
            return self._ok >= target

    # -- the thread -------------------------------------------------------------------------------

    def _pause(self) -> bool:
        """Before a batch: wait until the writers pause (no commit for :attr:`quiet` s), at
        most :attr:`max_delay` s; not at all while someone waits in :meth:`wait_idle`. Then,
        on an in-memory store, until its one connection is free. ``False``: stop."""
        start = time.monotonic()
        took = start - self._resumed if self._resumed else 0.0  # the batch just done
        while not self._stop.is_set() and self._requested <= self._done:
            now = time.monotonic()
            quiet_for = now - self.last_commit
            waited = now - start
            if waited >= self.max_delay:
                break
            if quiet_for >= self.quiet and (waited >= min(took, 0.05) or quiet_for >= 1.0):
                break  # writers pause; while they are active, rest as long as the last batch
            self._stop.wait(max(0.0005, min(self.quiet - quiet_for if quiet_for < self.quiet
                                            else took - waited, self.max_delay - waited)))
        if self._stop.is_set():
            return False
        self._free_connection()
        self._resumed = time.monotonic()
        return not self._stop.is_set()

    def _free_connection(self) -> None:
        """An in-memory store has one connection, and a thread reading with it may write
        with it too (inside ``iter()``): the indexer must not take the write lock while that
        connection is busy, or both would wait for each other until ``connection_timeout``."""
        backend: Any = self.memory.store.backend
        if not getattr(backend, "memory", False) or not hasattr(backend, "pool_stats"):
            return
        deadline = time.monotonic() + 5.0
        while not self._stop.is_set() and time.monotonic() < deadline:
            if backend.pool_stats().get("idle", 1) > 0:
                return
            self._stop.wait(0.002)

    def _loop(self) -> None:
        memory = self.memory
        while not self._stop.is_set():
            self._wake.wait(self.poll_interval)
            if self._stop.is_set():
                break
            self._wake.clear()
            # Backing off after a failure: commits do not cut it short, wait_idle does.
            while not self._stop.is_set() and self._requested <= self._done:
                wait = self._retry_at - time.monotonic()
                if wait <= 0:
                    break
                self._wake.wait(wait)
                self._wake.clear()
            if self._stop.is_set():
                break
            with self._cond:  # the requests this pass answers (those before it reads the log)
                covers = self._requested
            ok = False
            self._resumed = 0.0
            try:
                ok = memory._catch_up(themes=True, pause=self._pause)[0]
                ok = ok and memory.last_error is None
            except BaseException as exc:  # never let the thread die silently
                if self._stop.is_set() or memory.store.closed:
                    break
                memory._failed("catching up", exc)
                if not isinstance(exc, Exception):
                    raise
            finally:
                self.passes += 1
                if ok:
                    self._backoff = 0.0
                    self._retry_at = 0.0
                elif memory.stopped is not None or memory.read_only:
                    pass  # retrying cannot help: wait for a wake-up; the catch-up returns at
                    # once until flush/reindex (or the next open) clears it
                elif not self._stop.is_set():
                    self.failures += 1
                    self._backoff = min(MAX_BACKOFF, max(0.1, self._backoff * 2))
                    self._retry_at = time.monotonic() + self._backoff
                with self._cond:
                    self._done = max(self._done, covers)
                    if ok:
                        self._ok = max(self._ok, covers)
                    self._cond.notify_all()

    def facts(self) -> dict[str, Any]:
        return {"running": self.running, "passes": self.passes, "failures": self.failures,
                "poll_interval": self.poll_interval, "quiet": self.quiet,
                "max_delay": self.max_delay}

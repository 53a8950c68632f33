"""Hook specs added by the memory plugin (pluggy project ``hive_store``, the same markers as the
core's: ``@hive_store.hookimpl``).

The core's hook specs live in :mod:`hive_store.hookspecs`, which a plugin cannot extend, so the
memory plugin adds these to a store's plugin manager itself (:func:`add_hookspecs`) when a store
opens. A plugin registered *before* that (every plugin loaded from an entry point is) must mark
its implementation ``optionalhook=True``, or hive_store's loader rejects it as a misspelled
hook::

    import hive_store

    class SentenceEmbedder:
        name = "all-MiniLM-L6-v2"
        threshold = 0.55

        def embed(self, texts):
            return model.encode(list(texts)).tolist()

    @hive_store.hookimpl(optionalhook=True)
    def hive_store_memory_embedder(store):
        return SentenceEmbedder()

Registered with ``HIVE_STORE_LOAD_PLUGINS``/the ``hive_store`` entry-point group like any
plugin. Call :func:`add_hookspecs` on a hand-made :class:`hive_store.plugins.Plugins` to
register implementations without ``optionalhook``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from hive_store.hookspecs import hookspec

if TYPE_CHECKING:
    from hive_store.plugins import Plugins
    from hive_store.store import Store
    from hive_store_memory.clustering import Embedder


@hookspec(firstresult=True)
def hive_store_memory_embedder(store: Store) -> Embedder | None:
    """Supply the vectors the memory plugin clusters knowledge entries with, instead of its
    built-in TF-IDF (e.g. sentence embeddings from a local model).

    firstresult: the first non-``None`` result is used. Called once per opened store.

    The returned object has a ``name`` (identifies the vector space; themes built in another
    space are reported stale until ``hive-store memory recluster``), an optional ``threshold``
    (cosine similarity to join a theme, default 0.6) and ``embed(texts) -> vectors``: one
    vector per text, all of one length, finite numbers. ``embed`` is called after a commit with
    the new entries' texts (outside the write lock), by ``recluster`` and for a question in
    ``context_for``.

    :param store: the store being opened
    :return: an embedder (see :class:`hive_store_memory.clustering.Embedder`), or ``None``
    """
    return None


_lock = threading.Lock()


def add_hookspecs(plugins: Plugins | Any) -> None:
    """Add this module's hook specs to ``plugins``' manager (idempotent, thread-safe).
    Implementations registered earlier with ``optionalhook=True`` are validated now."""
    import sys

    pm = plugins.pm
    with _lock:
        caller = getattr(pm.hook, "hive_store_memory_embedder", None)
        if caller is None or caller.spec is None:
            pm.add_hookspecs(sys.modules[__name__])

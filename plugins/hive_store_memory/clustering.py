"""Thematic clustering of knowledge entries: single-pass, threshold-based assignment of
TF-IDF vectors to theme centroids.

Method and why
==============

Each knowledge entry (question weighted twice, plus the curator's answer) becomes a TF-IDF
vector: sublinear term frequency ``1 + ln(tf)``, smoothed inverse document frequency
``ln((1 + N) / (1 + df)) + 1`` over the entries seen so far, the ``doc_terms`` heaviest terms
kept and the vector L2-normalised. An entry joins the theme whose centroid is most similar
(cosine) if that similarity is at least ``threshold``; otherwise it founds a new theme. A
theme's centroid is the mean of its members' vectors, truncated to its ``centroid_terms``
heaviest terms; its keywords are the centroid's heaviest terms.

This is the single-pass clustering of Topic Detection and Tracking (Allan, Carbonell,
Doddington, Yamron & Yang, *Topic Detection and Tracking Pilot Study*, 1998; Yang, Pierce &
Carbonell, *A study on retrospective and on-line event detection*, SIGIR 1998), which fits
Hive's memory well:

* it is **incremental**: a new entry is compared with the centroids that hold one of its ten
  most distinctive terms (an inverted index), not re-clustered with everything, so it runs on
  the post-commit event;
* it needs **no number of themes** in advance (unlike k-means or LDA) and no model download:
  the vocabulary and document frequencies are learnt from the knowledge base itself;
* it is **deterministic**: no random initialisation; ties break by theme id and term order, and
  floating-point sums run in a fixed order, so the same entries in the same order give the same
  themes, names, keywords and centroids (floats survive the JSON round trip exactly);
* ``threshold`` is the one knob, and it reads as "how similar must an entry be to join";
* Hive's own design notes used greedy threshold clustering (``pattern_learning.rs``, 0.8 on
  embeddings).

Themes are deliberately small and pure (*micro-themes*): the subjects a person would name are
the *topics* above them (:mod:`hive_store_memory.topics`), which merge themes and are rebuilt
as the themes grow. The default ``threshold`` 0.25 (48 terms per entry vector and per
centroid) was chosen with ``bench/memory_quality.py --split tune`` (standard-library
docstrings of 16 modules that are not in its evaluation split): at 0.15 a theme mixes
subjects (purity 0.75 on the evaluation split) and topics built on such themes cannot be
better than them; at 0.25 themes are ~0.9 pure and the topics above them reach the best
agreement with the true subjects. Assigning an entry costs about 0.1 ms of Python.

Each theme also keeps the raw counts of its members' terms (``tf``, the
:data:`TF_TERMS` most frequent): the topics and every keyword or name are computed from them
with the current document frequencies, so early entries' small-corpus IDF does not linger in
names.

Known limits, by design: the result depends on the order of the entries (that is what makes
it incremental; ``recluster`` replays them in insertion order); early entries were weighted
with the IDF of a small corpus; deleting an entry lowers its theme's member count but does not
take it out of the centroid. ``hive-store memory recluster`` rebuilds everything from the
current entries (and is how a new threshold or embedder takes effect).

Replacing the vectors
=====================

A plugin that implements ``hive_store_memory_embedder`` (see :mod:`hive_store_memory.hookspecs`)
supplies dense vectors (e.g. sentence embeddings) for the assignment instead of TF-IDF. The
same algorithm then runs on those vectors (cosine against every centroid, one matrix product
with numpy: ~0.3 ms per entry at 5,000 themes of 384 dimensions); TF-IDF is still kept for
the themes' names, keywords and topics.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Protocol, runtime_checkable

import attrs
import numpy as np

from hive_store_memory.text import term_counts

Sparse = dict[str, float]
Dense = list[float]
Vector = Sparse | Dense

TFIDF = "tfidf"
PROBE_TERMS = 10  # candidate themes come from the entry's heaviest (most distinctive) terms
MAX_CANDIDATES = 256
DEFAULT_THRESHOLD = 0.25
DEFAULT_EMBEDDER_THRESHOLD = 0.6
TF_TERMS = 200  # raw term counts kept per theme (its most frequent terms)
UNTHEMED = "unthemed"


@runtime_checkable
class Embedder(Protocol):
    """What a ``hive_store_memory_embedder`` hook returns.

    :ivar name: identifies the vector space (stored with the themes: a different name means
        the themes must be rebuilt with ``hive-store memory recluster``)
    :ivar threshold: optional attribute, the cosine similarity an entry needs to join a theme
        in this space (default 0.6)
    """

    name: str

    def embed(self, texts: Sequence[str]) -> Sequence[Sequence[float]]:
        """One vector per text, all of the same length, finite numbers."""
        ...


@attrs.frozen(kw_only=True)
class ClusterParams:
    """The clustering settings, stored with the themes (``hive_store_memory_meta``)."""

    space: str = TFIDF
    threshold: float = DEFAULT_THRESHOLD
    doc_terms: int = 48
    centroid_terms: int = 48
    keywords: int = 8

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClusterParams:
        known = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@attrs.define
class ThemeState:
    """A theme as the model holds it.

    :ivar centroid: the mean of the members' vectors (TF-IDF: ``{term: weight}``, the
        ``centroid_terms`` heaviest; an embedder's: a list)
    :ivar terms: the TF-IDF centroid (the same object as ``centroid`` in the TF-IDF space)
    :ivar tf: raw counts of the members' terms (the :data:`TF_TERMS` most frequent)
    """

    id: int
    name: str
    centroid: Vector
    terms: Sparse
    count: int
    last_activity: str | None = None  # RFC 3339 UTC time of the newest member
    created: bool = False  # founded in this run (not yet stored)
    norm: float = attrs.field(default=0.0)
    tf: dict[str, float] = attrs.field(factory=dict)
    topic_id: int | None = None

    def __attrs_post_init__(self) -> None:
        self.norm = norm(self.centroid)


@attrs.frozen
class Entry:
    """A knowledge entry to assign: its document id, text and time (RFC 3339, UTC; these
    compare in time order as text)."""

    doc_id: int
    title: str
    body: str
    at: str | None = None


@attrs.frozen
class Assignment:
    """Where an entry went: its theme and its similarity to the theme when it joined."""

    doc_id: int
    theme_id: int
    score: float
    founded: bool


# -- vector arithmetic (fixed summation order) ----------------------------------------------------


def norm(vector: Vector) -> float:
    """The Euclidean length (``math.hypot``: exact to the last bit or so, in C)."""
    values = vector.values() if isinstance(vector, dict) else vector
    return math.hypot(*values)


def dense_unit(values: Sequence[float]) -> Dense:
    """``values`` as a unit-length list of floats (all zeros stay zeros)."""
    out = [float(v) for v in values]
    length = norm(out)
    return [v / length for v in out] if length else out


def _top(weights: Mapping[str, float], k: int) -> list[tuple[str, float]]:
    """The ``k`` heaviest ``(term, weight)`` pairs, heaviest first, ties by term (two stable
    sorts: faster than a tuple key, and independent of the mapping's order)."""
    return sorted(sorted(weights.items()), key=itemgetter(1), reverse=True)[:k]


def _mean_update(centroid: Sparse, count: int, vector: Sparse, keep: int) -> Sparse:
    merged = {t: (centroid.get(t, 0.0) * count + vector.get(t, 0.0)) / (count + 1)
              for t in centroid.keys() | vector.keys()}
    return dict(sorted(_top(merged, keep)))


def _dense_update(centroid: Dense, count: int, vector: Dense) -> Dense:
    return [(c * count + v) / (count + 1) for c, v in zip(centroid, vector, strict=True)]


def add_counts(tf: Mapping[str, float], counts: Mapping[str, float],
               keep: int = TF_TERMS) -> dict[str, float]:
    """``tf`` plus ``counts``, the ``keep`` most frequent terms (ties by term), by term."""
    merged = dict(tf)
    for term, c in counts.items():
        merged[term] = merged.get(term, 0.0) + float(c)
    if len(merged) > keep:
        merged = dict(_top(merged, keep))
    return dict(sorted(merged.items()))


def top_terms(weights: Mapping[str, float], k: int) -> list[str]:
    """The ``k`` heaviest terms, heaviest first (ties by term)."""
    return [t for t, _ in _top(weights, k)]


def idf(df: int, documents: int) -> float:
    """The smoothed inverse document frequency used everywhere in the plugin."""
    return math.log((1 + documents) / (1 + df)) + 1.0


# -- the model ------------------------------------------------------------------------------------


class ThemeModel:
    """Themes plus the corpus statistics, updated entry by entry.

    ``df`` may hold only the terms the caller will need (the store loads the document
    frequencies of a batch's terms); a missing term counts as never seen. In an embedder's
    space the normalised centroids are also rows of one numpy matrix, so that the most similar
    theme is one matrix-vector product.
    """

    def __init__(self, params: ClusterParams, *, documents: int = 0,
                 df: dict[str, int] | None = None, themes: Iterable[ThemeState] = ()) -> None:
        self.params = params
        self.documents = documents
        self.df: Counter[str] = Counter(df or {})
        self.themes: dict[int, ThemeState] = {}
        self._postings: dict[str, set[int]] = {}  # term -> themes whose TF-IDF centroid has it
        self.names: set[str] = set()
        self.dirty_terms: set[str] = set()
        self.dirty_themes: set[int] = set()
        self._unthemed: int | None = None
        self._rows: dict[int, int] = {}  # theme id -> row of the dense matrix
        self._ids: list[int] = []
        self._matrix: Any = None  # np.ndarray (rows, dims), float32: unit centroids (embedders)
        self._suffix: dict[str, int] = {}  # the next free suffix of a name
        self._used = 0
        self.topic_centroids: dict[int, dict[str, float]] = {}  # the stored topics' centroids
        for theme in sorted(themes, key=lambda t: t.id):
            self._index(theme)
            if theme.name == UNTHEMED:
                self._unthemed = theme.id
        self._next_id = max(self.themes, default=0) + 1

    # -- bookkeeping --------------------------------------------------------------------------

    def _index(self, theme: ThemeState) -> None:
        self.themes[theme.id] = theme
        self.names.add(theme.name)
        for term in theme.terms:
            self._postings.setdefault(term, set()).add(theme.id)
        if isinstance(theme.centroid, list):
            self._set_row(theme)

    def _set_row(self, theme: ThemeState) -> None:
        centroid = theme.centroid
        assert isinstance(centroid, list)
        vec = np.asarray(centroid, dtype=np.float64)
        if theme.norm:
            vec = vec / theme.norm
        row = self._rows.get(theme.id)
        if self._matrix is None:
            self._matrix = np.zeros((max(16, len(self.themes)), len(vec)), dtype=np.float32)
        elif self._matrix.shape[1] != len(vec):
            return  # a vector of another length (a stale theme): never the best
        if row is None:
            if self._used == self._matrix.shape[0]:
                grown = np.zeros((self._used * 2, self._matrix.shape[1]), dtype=np.float32)
                grown[:self._used] = self._matrix
                self._matrix = grown
            row = self._used
            self._used += 1
            self._rows[theme.id] = row
            self._ids.append(theme.id)
        self._matrix[row] = vec

    def unique_name(self, base: str) -> str:
        """``base``, or ``base-2``, ``base-3`` … whichever no other theme has."""
        label, n = base, self._suffix.get(base, 1)
        if n > 1:
            label = f"{base}-{n}"
        while label in self.names:
            n += 1
            label = f"{base}-{n}"
        self._suffix[base] = n
        return label

    @property
    def dense(self) -> bool:
        return self.params.space != TFIDF

    # -- vectors ----------------------------------------------------------------------------------

    def observe(self, counts: Counter[str]) -> None:
        """Count one more document containing ``counts``' terms."""
        self.documents += 1
        self.df.update(counts.keys())  # a Counter: +1 per term (in C)
        self.dirty_terms.update(counts)

    def tfidf(self, counts: Mapping[str, float]) -> Sparse:
        """The unit TF-IDF vector of term counts under the current statistics (sorted by
        term; empty when there are no terms)."""
        n = self.documents
        weights = {t: (1.0 + math.log(c)) * (math.log((1 + n) / (1 + self.df.get(t, 0))) + 1.0)
                   for t, c in counts.items() if c > 0}
        top = _top(weights, self.params.doc_terms)
        length = math.sqrt(math.fsum(w * w for _, w in top))
        if not length:
            return {}
        return {t: w / length for t, w in sorted(top)}

    # -- assignment -------------------------------------------------------------------------------

    def best(self, vector: Vector, *, use_terms: bool = False) -> tuple[ThemeState | None, float]:
        """The most similar theme and its cosine similarity (``None, 0`` if none shares
        anything). ``use_terms`` compares a TF-IDF vector with the themes' TF-IDF centroids
        even when the assignment space is an embedder's."""
        if isinstance(vector, dict):
            return self._best_sparse(vector, terms=use_terms and self.dense)
        return self._best_dense(vector)

    def ranked(self, vector: Sparse, *, use_terms: bool = False) -> list[tuple[ThemeState, float]]:
        """The themes sharing one of the vector's heaviest terms, most similar first (ties by
        id), by the TF-IDF centroids (``use_terms``) or the assignment centroids."""
        terms = use_terms and self.dense
        out = []
        for tid in self._candidates(vector):
            theme = self.themes[tid]
            centroid = theme.terms if terms else theme.centroid
            if not isinstance(centroid, dict):
                continue
            length = norm(centroid) if terms else theme.norm
            if length:
                dot = math.fsum(w * centroid.get(t, 0.0) for t, w in vector.items())
                if dot > 0:
                    out.append((theme, dot / length))
        out.sort(key=lambda pair: -pair[1])  # stable: candidates come in id order
        return out

    def _best_sparse(self, vector: Sparse, *, terms: bool) -> tuple[ThemeState | None, float]:
        if not vector:
            return None, 0.0
        best: ThemeState | None = None
        best_score = 0.0
        for tid in self._candidates(vector):
            theme = self.themes[tid]
            centroid = theme.terms if terms else theme.centroid
            if not isinstance(centroid, dict):
                continue
            length = norm(centroid) if terms else theme.norm
            if not length:
                continue
            dot = 0.0
            # few shared terms: intersect in C; sorted, so the sum is the same in every process
            for term in sorted(vector.keys() & centroid.keys()):
                dot += vector[term] * centroid[term]
            score = dot / length
            if score > best_score:  # candidates come in id order: ties keep the lowest id
                best, best_score = theme, score
        return best, best_score

    def _best_dense(self, vector: Dense) -> tuple[ThemeState | None, float]:
        matrix = self._matrix
        if matrix is None or not self._used or matrix.shape[1] != len(vector):
            return None, 0.0
        # float32 and einsum's own loop: half the memory to read, and no BLAS threads (which
        # cost more than they bring on a busy machine): ~0.8 ms at 5,000 x 384
        scores = np.einsum("ij,j->i", matrix[:self._used], np.asarray(vector, dtype=np.float32))
        row = int(np.argmax(scores))  # the first of equal maxima: the lowest id
        return self.themes[self._ids[row]], float(scores[row])

    def _candidates(self, vector: Sparse) -> list[int]:
        """Themes whose centroid holds one of the vector's :data:`PROBE_TERMS` heaviest terms
        (the most distinctive ones, so their posting lists are short), at most
        :data:`MAX_CANDIDATES` of them (those sharing most probe terms), in id order. A theme
        sharing only light, common terms with an entry could not reach the threshold anyway."""
        hits: dict[int, int] = {}
        for term, _ in _top(vector, PROBE_TERMS):
            for tid in self._postings.get(term, ()):
                hits[tid] = hits.get(tid, 0) + 1
        if len(hits) > MAX_CANDIDATES:
            return sorted(sorted(hits, key=lambda tid: (-hits[tid], tid))[:MAX_CANDIDATES])
        return sorted(hits)

    def add(self, entry: Entry, dense: Sequence[float] | None = None,
            counts: Counter[str] | None = None) -> Assignment:
        """Assign one entry (in order): count its terms (unless given ``counts``, from
        :func:`hive_store_memory.text.term_counts`), vectorise it, join the most similar theme
        at or above the threshold or found a new one."""
        if counts is None:
            counts = term_counts(entry.title, entry.body)
        self.observe(counts)
        terms_vec = self.tfidf(counts)
        vector: Vector
        if self.dense:
            if dense is None:
                raise ValueError("this model clusters embedder vectors: give the entry's vector")
            vector = dense_unit(dense)
        else:
            vector = terms_vec
        theme, score = self.best(vector)
        empty = not terms_vec if not self.dense else not norm(vector)
        if empty:
            theme = self.themes.get(self._unthemed) if self._unthemed is not None else None
            score = 0.0
            if theme is None:
                return self._found(entry, vector, terms_vec, counts, name=UNTHEMED, score=0.0)
        elif theme is None or score < self.params.threshold:
            return self._found(entry, vector, terms_vec, counts, score=1.0)
        self._join(theme, entry, vector, terms_vec, counts)
        return Assignment(entry.doc_id, theme.id, round(score, 6), False)

    def _found(self, entry: Entry, vector: Vector, terms_vec: Sparse, counts: Counter[str], *,
               score: float, name: str | None = None) -> Assignment:
        tid = self._next_id
        self._next_id += 1
        label = self.unique_name(name or "-".join(top_terms(terms_vec, 3)) or UNTHEMED)
        keep = self.params.centroid_terms
        terms_top = dict(sorted(_top(terms_vec, keep)))
        centroid: Vector = terms_top if isinstance(vector, dict) else list(vector)
        theme = ThemeState(id=tid, name=label, centroid=centroid, terms=terms_top, count=1,
                           last_activity=entry.at, created=True, tf=add_counts({}, counts))
        self._index(theme)
        if name == UNTHEMED:
            self._unthemed = tid
        self.dirty_themes.add(tid)
        return Assignment(entry.doc_id, tid, score, True)

    def _join(self, theme: ThemeState, entry: Entry, vector: Vector, terms_vec: Sparse,
              counts: Counter[str]) -> None:
        keep = self.params.centroid_terms
        before = set(theme.terms)
        if isinstance(theme.centroid, dict):
            assert isinstance(vector, dict)
            theme.centroid = _mean_update(theme.centroid, theme.count, vector, keep)
            theme.terms = theme.centroid
        else:
            assert isinstance(vector, list)
            theme.centroid = _dense_update(theme.centroid, theme.count, vector)
            theme.terms = _mean_update(theme.terms, theme.count, terms_vec, keep)
        theme.norm = norm(theme.centroid)
        theme.count += 1
        theme.tf = add_counts(theme.tf, counts)
        if entry.at is not None and (theme.last_activity is None
                                     or entry.at > theme.last_activity):
            theme.last_activity = entry.at
        after = set(theme.terms)  # postings change only where the terms do
        for term in before - after:
            ids = self._postings.get(term)
            if ids is not None:
                ids.discard(theme.id)
                if not ids:
                    del self._postings[term]
        for term in after - before:
            self._postings.setdefault(term, set()).add(theme.id)
        if isinstance(theme.centroid, list):
            self._set_row(theme)
        self.dirty_themes.add(theme.id)

    def keywords(self, theme: ThemeState) -> list[str]:
        return top_terms(theme.terms, self.params.keywords)

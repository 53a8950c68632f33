"""Topics: the subjects of a knowledge base, built above its themes.

Themes (:mod:`hive_store_memory.clustering`) are small, pure and incremental; a subject a
person would name ("email", "asyncio") is spread over many of them. Topics merge themes:

1. **Vectors.** Each theme is the class-based TF-IDF vector of its members' terms (the raw
   counts it keeps, ``1 + ln(tf)`` times the current inverse document frequency, its
   :data:`VECTOR_TERMS` heaviest terms, unit length): computed now, with today's document
   frequencies, so the order in which entries arrived matters less than it does for themes.
2. **Average-link agglomerative clustering** (UPGMA) of the largest :data:`CORE_MAX` themes by
   cosine similarity, cut by a similarity threshold (:data:`SIMILARITY`), not a fixed number
   of topics. A merge is the average similarity of every pair across the two groups, which
   does not chain two subjects together through one shared word.
3. **Small groups dissolve**: a group holding less than :data:`MIN_SHARE` of the entries joins
   the most similar large group (a topic is a subject, not an outlier); themes outside the
   core join the most similar group too.
4. **Refinement**: a few rounds of spherical k-means over all themes (weighted by their member
   counts) move each theme to the topic whose centroid it is most similar to, which repairs
   early merges the greedy step got wrong and makes the result depend less on ties.
5. **Names** come from class-based TF-IDF over the topics' term counts (each term weighted by
   how much more frequent it is in the topic than across topics, as topic-modelling libraries
   such as BERTopic do): the keywords are the heaviest terms, the name the first three. A
   topic keeps its id across rebuilds when it keeps most of its entries, and is renamed when
   its keywords change.

The defaults were chosen on ``bench/memory_quality.py --split tune`` (standard-library
docstrings of 16 modules outside the evaluation split). Everything here is deterministic (ties
break by id and term) and pure: the store loads the themes and writes the result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from operator import itemgetter

import attrs
import numpy as np

from hive_store_memory.clustering import idf

SIMILARITY = 0.08  # average cosine similarity at which two groups of themes still merge
MIN_SHARE = 0.02  # a topic holds at least 2% of the entries (so: at most 50 topics)
CORE_MAX = 1500  # themes clustered pairwise (the largest); the others join the nearest topic
VECTOR_TERMS = 100
REFINE_ROUNDS = 10
KEYWORDS = 8
CENTROID_TERMS = 100


@attrs.frozen
class ThemeInput:
    """What the topic builder needs of a theme."""

    id: int
    count: int
    tf: Mapping[str, float]
    topic_id: int | None = None


@attrs.frozen
class TopicOut:
    """One topic of a build.

    :ivar centroid: its heaviest terms with their weights (to place new themes between builds)
    """

    id: int
    name: str
    keywords: tuple[str, ...]
    theme_ids: tuple[int, ...]
    member_count: int
    centroid: dict[str, float]


@attrs.frozen
class Params:
    similarity: float = SIMILARITY
    min_share: float = MIN_SHARE
    core_max: int = CORE_MAX
    vector_terms: int = VECTOR_TERMS
    refine_rounds: int = REFINE_ROUNDS


def _top(weights: Mapping[str, float], k: int) -> list[tuple[str, float]]:
    return sorted(sorted(weights.items()), key=itemgetter(1), reverse=True)[:k]


def theme_vector(tf: Mapping[str, float], df: Mapping[str, int], documents: int,
                 terms: int = VECTOR_TERMS) -> dict[str, float]:
    """A theme's unit class-based TF-IDF vector (its ``terms`` heaviest terms)."""
    weights = {t: math.log1p(c) * idf(df.get(t, 0), documents) for t, c in tf.items() if c > 0}
    top = _top(weights, terms)
    length = math.sqrt(math.fsum(w * w for _, w in top))
    return {t: w / length for t, w in sorted(top)} if length else {}


class _Sparse:
    """Rows of sparse vectors over one vocabulary (CSR arrays)."""

    def __init__(self, rows: Sequence[Mapping[str, float]]) -> None:
        vocab: dict[str, int] = {}
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        for row in rows:
            for term, weight in row.items():
                indices.append(vocab.setdefault(term, len(vocab)))
                data.append(weight)
            indptr.append(len(indices))
        self.vocab = vocab
        self.terms = sorted(vocab, key=vocab.__getitem__)
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.data = np.asarray(data, dtype=np.float64)
        self.n = len(rows)

    def rows_of(self, picked: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row position in ``picked``, column, value) of the picked rows' entries."""
        starts, ends = self.indptr[picked], self.indptr[picked + 1]
        lengths = ends - starts
        pos = np.repeat(np.arange(len(picked)), lengths)
        if len(pos) == 0:
            return pos, pos, np.zeros(0)
        offsets = np.arange(len(pos)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        at = np.repeat(starts, lengths) + offsets
        return pos, self.indices[at], self.data[at]

    def gram(self, picked: np.ndarray) -> np.ndarray:
        """Dot products of the picked rows with each other (dense)."""
        n = len(picked)
        out = np.zeros((n, n))
        pos, cols, vals = self.rows_of(picked)
        if len(cols) == 0:
            return out
        order = np.argsort(cols, kind="stable")
        pos, cols, vals = pos[order], cols[order], vals[order]
        bounds = np.flatnonzero(np.diff(cols)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [len(cols)]))
        for s, e in zip(starts[ends - starts > 1], ends[ends - starts > 1], strict=True):
            r, v = pos[s:e], vals[s:e]
            out[np.ix_(r, r)] += np.outer(v, v)
        return out

    def times(self, dense: np.ndarray, *, chunk: int = 2_000_000) -> np.ndarray:
        """``rows @ dense.T`` for a dense matrix (k, vocabulary): (n, k)."""
        k = dense.shape[0]
        out = np.zeros((self.n, k))
        if k == 0:
            return out
        step = max(1, chunk // max(1, k * max(1, int(np.diff(self.indptr).mean() or 1))))
        for start in range(0, self.n, step):
            picked = np.arange(start, min(self.n, start + step))
            pos, cols, vals = self.rows_of(picked)
            if len(cols) == 0:
                continue
            contrib = dense[:, cols] * vals  # (k, nnz)
            sums = np.zeros((k, len(picked)))
            np.add.at(sums.T, pos, contrib.T)
            out[picked] = sums.T
        return out

    def centroids(self, labels: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
        """Unit centroids (k, vocabulary) of the rows by label, weighted."""
        out = np.zeros((k, len(self.vocab)))
        pos, cols, vals = self.rows_of(np.arange(self.n))
        if len(cols):
            np.add.at(out, (labels[pos], cols), vals * weights[pos])
        lengths = np.linalg.norm(out, axis=1, keepdims=True)
        lengths[lengths == 0] = 1.0
        unit: np.ndarray = out / lengths
        return unit


def average_link(similarity: np.ndarray, threshold: float) -> list[list[int]]:
    """Groups of average-link (UPGMA) agglomerative clustering, merging while the best pair's
    average similarity is at least ``threshold``. O(n²) memory, about O(n²) time (each row
    keeps its nearest neighbour; only rows that pointed at a merged group look again)."""
    n = len(similarity)
    if n == 0:
        return []
    s = np.array(similarity, dtype=np.float64)
    np.fill_diagonal(s, -np.inf)
    size = np.ones(n)
    active = np.ones(n, dtype=bool)
    nearest = np.argmax(s, axis=1)
    best = s[np.arange(n), nearest]
    members: list[list[int]] = [[i] for i in range(n)]
    while True:
        i = int(np.argmax(best))
        if not best[i] >= threshold:
            break
        j = int(nearest[i])
        merged = (size[i] * s[i] + size[j] * s[j]) / (size[i] + size[j])
        s[i] = merged
        s[:, i] = merged
        s[i, i] = -np.inf
        s[j] = -np.inf
        s[:, j] = -np.inf
        size[i] += size[j]
        active[j] = False
        best[j] = -np.inf
        members[i].extend(members[j])
        members[j] = []
        stale = np.flatnonzero(active & ((nearest == i) | (nearest == j)))
        for k in {i, *stale.tolist()}:
            nearest[k] = int(np.argmax(s[k]))
            best[k] = s[k, nearest[k]]
    return [sorted(m) for m in members if m]


def class_tfidf(tfs: Sequence[Mapping[str, float]], keep: int = KEYWORDS) -> list[list[str]]:
    """The ``keep`` heaviest terms of each class by class-based TF-IDF: a term's share of the
    class's terms times ``ln(1 + A / f)``, A the average number of terms per class and f the
    term's frequency over all classes."""
    totals = [math.fsum(tf.values()) for tf in tfs]
    across: dict[str, float] = {}
    for tf in tfs:
        for term, c in tf.items():
            across[term] = across.get(term, 0.0) + c
    average = math.fsum(totals) / len(tfs) if tfs else 0.0
    out: list[list[str]] = []
    for tf, total in zip(tfs, totals, strict=True):
        if not total:
            out.append([])
            continue
        weights = {t: (c / total) * math.log(1.0 + average / across[t])
                   for t, c in tf.items() if c > 0}
        out.append([t for t, _ in _top(weights, keep)])
    return out


def build(themes: Sequence[ThemeInput], df: Mapping[str, int], documents: int, *,
          params: Params = Params(), taken: Mapping[int, str] | None = None) -> list[TopicOut]:
    """Topics over ``themes`` (see the module docstring). ``df``/``documents``: the document
    frequencies of the knowledge entries' terms; a theme's ``topic_id`` (its previous topic)
    lets a topic keep its id. ``taken``: the previous topics' names by id (a topic that keeps
    its id keeps its name while its keywords still start with it)."""
    if not themes:
        return []
    ordered = sorted(themes, key=lambda t: t.id)
    vectors = [theme_vector(t.tf, df, documents, params.vector_terms) for t in ordered]
    counts = np.asarray([max(1, t.count) for t in ordered], dtype=np.float64)
    matrix = _Sparse(vectors)
    n = len(ordered)
    by_size = sorted(range(n), key=lambda i: (-counts[i], ordered[i].id))
    core = np.asarray(sorted(by_size[:params.core_max]), dtype=np.int64)
    groups = average_link(matrix.gram(core), params.similarity)
    labels = np.full(n, -1, dtype=np.int64)
    for g, group in enumerate(groups):
        labels[core[group]] = g
    total = float(counts.sum())
    sizes = np.bincount(labels[core], weights=counts[core], minlength=len(groups))
    big = sorted((g for g in range(len(groups)) if sizes[g] >= params.min_share * total),
                 key=lambda g: (-sizes[g], g)) or sorted(range(len(groups)),
                                                           key=lambda g: (-sizes[g], g))
    member = np.isin(labels, big)
    if not member.all():
        # small groups and the themes outside the core join the most similar large group
        centroids = matrix.centroids(np.where(member, labels, 0),
                                     np.where(member, counts, 0.0), len(groups))[big]
        sims = matrix.times(centroids)
        labels[~member] = np.asarray(big)[np.argmax(sims[~member], axis=1)]
    labels = _refine(matrix, labels, counts, params.refine_rounds)
    return _name(ordered, labels, counts, matrix, taken or {})


def _refine(matrix: _Sparse, labels: np.ndarray, counts: np.ndarray,
            rounds: int) -> np.ndarray:
    """Spherical k-means rounds (weighted by member counts) from ``labels``; empty topics
    vanish; a theme with an empty vector keeps its topic."""
    empty = np.diff(matrix.indptr) == 0
    for _ in range(rounds):
        ids, compact = np.unique(labels, return_inverse=True)
        centroids = matrix.centroids(compact, counts, len(ids))
        sims = matrix.times(centroids)
        moved = ids[np.argmax(sims, axis=1)]
        moved[empty] = labels[empty]
        if np.array_equal(moved, labels):
            break
        labels = moved
    return labels


def _name(themes: Sequence[ThemeInput], labels: np.ndarray, counts: np.ndarray,
          matrix: _Sparse, taken: Mapping[int, str]) -> list[TopicOut]:
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(labels.tolist()):
        groups.setdefault(g, []).append(i)
    order = sorted(groups, key=lambda g: (-sum(counts[i] for i in groups[g]),
                                          min(themes[i].id for i in groups[g])))
    tfs: list[dict[str, float]] = []
    for g in order:
        tf: dict[str, float] = {}
        for i in groups[g]:
            for term, c in themes[i].tf.items():
                tf[term] = tf.get(term, 0.0) + float(c)
        tfs.append(tf)
    keywords = class_tfidf(tfs)
    ids = _match_ids([[themes[i] for i in groups[g]] for g in order])
    compact = np.zeros(len(labels), dtype=np.int64)
    for n, g in enumerate(order):
        compact[groups[g]] = n
    centroids = matrix.centroids(compact, counts, len(order))
    names: set[str] = set()
    out = []
    for n, g in enumerate(order):
        kw = keywords[n]
        previous = taken.get(ids[n])
        if previous is not None and still_fits(previous, kw) and previous not in names:
            name = previous
        else:
            name = _unique("-".join(kw[:3]) or "misc", names)
        names.add(name)
        row = centroids[n]
        top = np.argsort(-row, kind="stable")[:CENTROID_TERMS]
        centroid = {matrix.terms[c]: float(row[c]) for c in sorted(top.tolist()) if row[c] > 0}
        members = [themes[i] for i in groups[g]]
        out.append(TopicOut(id=ids[n], name=name, keywords=tuple(kw),
                            theme_ids=tuple(sorted(t.id for t in members)),
                            member_count=int(sum(t.count for t in members)),
                            centroid=centroid))
    return out


def still_fits(name: str, keywords: Sequence[str]) -> bool:
    """A name still fits while each of its words is among the first five keywords."""
    words = base_words(name)
    return bool(words) and set(words) <= set(keywords[:5])


def base_words(name: str) -> list[str]:
    """The keywords a name was made of (``wal-checkpoint-2`` → ``wal``, ``checkpoint``)."""
    parts = name.split("-")
    if len(parts) > 1 and parts[-1].isdigit():
        parts = parts[:-1]
    return [p for p in parts if p]


def _unique(base: str, names: set[str]) -> str:
    label, n = base, 1
    while label in names:
        n += 1
        label = f"{base}-{n}"
    return label


def _match_ids(groups: Sequence[Sequence[ThemeInput]]) -> list[int]:
    """Ids for new topics: the previous topic with the largest share of a new topic's entries
    keeps its id (greedily, largest overlaps first); the others get new ids."""
    overlap: dict[tuple[int, int], int] = {}
    used_before: set[int] = set()
    for n, group in enumerate(groups):
        for t in group:
            if t.topic_id is not None:
                used_before.add(t.topic_id)
                overlap[(n, t.topic_id)] = overlap.get((n, t.topic_id), 0) + t.count
    ids: dict[int, int] = {}
    taken: set[int] = set()
    for (n, old), _ in sorted(overlap.items(), key=lambda kv: (-kv[1], kv[0])):
        if n not in ids and old not in taken:
            ids[n] = old
            taken.add(old)
    next_id = max(used_before, default=0) + 1
    out = []
    for n in range(len(groups)):
        if n not in ids:
            ids[n] = next_id
            next_id += 1
        out.append(ids[n])
    return out


def nearest_topic(vector: Mapping[str, float],
                  centroids: Mapping[int, Mapping[str, float]]) -> int | None:
    """The topic whose centroid is most similar to ``vector`` (``None`` if none shares a
    term); ties by id."""
    best: int | None = None
    best_score = 0.0
    for tid in sorted(centroids):
        centroid = centroids[tid]
        score = math.fsum(w * centroid.get(t, 0.0) for t, w in vector.items())
        if score > best_score:
            best, best_score = tid, score
    return best

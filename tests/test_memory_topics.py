"""Topics above the themes: average-link clustering (against a plain reference), class-based
TF-IDF names, ids kept across rebuilds, and topics in the store; the embedder's vectorised
centroid search; theme assignment computed outside the write lock."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import numpy as np
import pytest
from hive_store_memory import topics as tp
from hive_store_memory.clustering import ClusterParams, Entry, ThemeModel
from hypothesis import given, settings
from hypothesis import strategies as st

import hive_store
from hive_store.entities import KnowledgeConversation


def knowledge(question: str, answer: str) -> KnowledgeConversation:
    return KnowledgeConversation(question=question, final_answer=answer, source_of_truth=answer)


def reference_average_link(sim: list[list[float]], threshold: float) -> list[list[int]]:
    """UPGMA as the textbook says: merge the pair of groups with the highest average
    pairwise similarity while it is at least ``threshold`` (ties: the first pair found)."""
    groups = [[i] for i in range(len(sim))]
    while len(groups) > 1:
        best, pair = -math.inf, (0, 0)
        for a, b in itertools.combinations(range(len(groups)), 2):
            avg = sum(sim[i][j] for i in groups[a] for j in groups[b]) / (
                len(groups[a]) * len(groups[b]))
            if avg > best + 1e-12:
                best, pair = avg, (a, b)
        if best < threshold:
            break
        a, b = pair
        groups[a] = sorted(groups[a] + groups[b])
        del groups[b]
    return sorted(groups)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 9), seed=st.integers(0, 10**6), threshold=st.sampled_from([0.1, 0.3, 0.5]))
def test_average_link_is_upgma(n: int, seed: int, threshold: float) -> None:
    rng = random.Random(seed)
    # distinct similarities (no ties): both must merge the same pairs in the same order
    values = rng.sample(range(1, 10**6), n * n)
    sim = [[0.0] * n for _ in range(n)]
    for i, j in itertools.combinations(range(n), 2):
        sim[i][j] = sim[j][i] = values[i * n + j] / 10**6
    assert sorted(tp.average_link(np.asarray(sim), threshold)) == reference_average_link(
        sim, threshold)


def test_class_tfidf_prefers_what_is_frequent_here_and_rare_elsewhere() -> None:
    classes = [{"return": 10, "socket": 6, "timeout": 3}, {"return": 12, "widget": 5,
                                                            "canvas": 4},
               {"return": 9, "thread": 7, "lock": 2}]
    first, second, third = tp.class_tfidf(classes, keep=3)
    assert first == ["socket", "timeout", "return"]
    assert second == ["widget", "canvas", "return"] and third[0] == "thread"


def themes_of(words: list[str], start: int, count: int) -> list[tp.ThemeInput]:
    return [tp.ThemeInput(id=start + n, count=2 + n % 3,
                          tf={w: float(3 + (n + k) % 4) for k, w in enumerate(words)})
            for n in range(count)]


def test_two_subjects_are_two_topics_and_keep_their_ids() -> None:
    a = themes_of(["socket", "timeout", "connect", "host"], 1, 6)
    b = themes_of(["widget", "canvas", "pixel", "window"], 100, 6)
    df = {w: 10 for w in ["socket", "timeout", "connect", "host", "widget", "canvas", "pixel",
                          "window"]}
    built = tp.build([*a, *b], df, 40)
    assert sorted(sorted(t.theme_ids) for t in built) == [[t.id for t in a], [t.id for t in b]]
    assert {t.name.split("-")[0] for t in built} <= {"socket", "timeout", "connect", "host",
                                                     "widget", "canvas", "pixel", "window"}
    assert tp.build([*a, *b], df, 40) == built  # deterministic
    # rebuilt with the topics remembered in the other order: ids and names stay
    where = {tid: t.id for t in built for tid in t.theme_ids}
    swapped = {t.id: 1000 - t.id for t in built}
    again = tp.build([tp.ThemeInput(id=t.id, count=t.count, tf=t.tf,
                                    topic_id=swapped[where[t.id]]) for t in [*a, *b]], df, 40,
                     taken={swapped[t.id]: t.name for t in built})
    assert {t.id: (t.name, t.theme_ids) for t in again} == {
        swapped[t.id]: (t.name, t.theme_ids) for t in built}


def test_a_tiny_group_joins_the_nearest_topic() -> None:
    a = themes_of(["socket", "timeout", "connect", "host"], 1, 20)
    b = themes_of(["widget", "canvas", "pixel", "window"], 100, 20)
    stray = [tp.ThemeInput(id=500, count=1, tf={"socket": 1.0, "zebra": 3.0})]
    built = tp.build([*a, *b, *stray], {}, 100)
    assert len(built) == 2
    assert any(500 in t.theme_ids and 1 in t.theme_ids for t in built)


SUBJECTS = {
    "sqlite": "sqlite wal checkpoint journal page writer reader transaction database",
    "asyncio": "asyncio event loop task coroutine future await callback scheduler",
    "tkinter": "tkinter widget canvas window button frame label pixel geometry",
}


def corpus(n: int, seed: int = 1) -> list[KnowledgeConversation]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = SUBJECTS[list(SUBJECTS)[i % 3]].split()
        out.append(knowledge(" ".join(rng.sample(words, 4)) + "?", " ".join(rng.choices(words,
                                                                                          k=30))))
    return out


def test_topics_in_the_store(mem_store: hive_store.Store) -> None:
    mem_store.knowledge_conversations.add_many(corpus(60))
    mem = mem_store.memory
    topics = mem.topics()
    assert len(topics) == 3
    assert sum(t.member_count for t in topics) == 60
    for topic in topics:
        assert topic.themes and all(t.topic_id == topic.id for t in topic.themes)
        words = {w for t in topic.themes for w in t.keywords}
        assert set(topic.name.split("-")) <= words
    assert {t.id for t in mem.themes()} == {t.id for topic in topics for t in topic.themes}
    assert mem.recluster().topics == 3
    # a theme founded between two builds joins the nearest topic at once
    mem_store.knowledge_conversations.add(knowledge(
        "tkinter canvas pixel geometry frame?", "zzfresh tkinter canvas pixel geometry frame"))
    assert mem.wait_idle(timeout=60)
    themes = mem.themes()
    assert all(t.topic_id is not None for t in themes)


def test_assignment_is_computed_outside_the_write_lock(mem_store: hive_store.Store,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    backend = mem_store.backend
    real = ThemeModel.add
    inside: list[bool] = []

    def spy(self: ThemeModel, *args: Any, **kw: Any) -> Any:
        inside.append(backend.in_transaction())
        return real(self, *args, **kw)

    monkeypatch.setattr(ThemeModel, "add", spy)
    mem_store.memory.theming.slice_seconds = 0.0  # one entry per write transaction
    mem_store.knowledge_conversations.add_many(corpus(12))
    assert mem_store.memory.wait_idle(timeout=60)
    assert len(inside) == 12 and not any(inside)
    assert mem_store.memory.status().unassigned == 0


def test_dense_centroid_search_is_the_best_cosine() -> None:
    rng = np.random.default_rng(3)
    model = ThemeModel(ClusterParams(space="embedder:test", threshold=0.99))
    vectors = rng.normal(size=(300, 16))
    for n, v in enumerate(vectors):  # threshold 0.99: almost every entry founds a theme
        model.add(Entry(n + 1, f"t{n}", "b"), dense=v.tolist())
    for query in rng.normal(size=(20, 16)):
        unit = query / np.linalg.norm(query)
        theme, score = model.best(unit.tolist())
        exact = {t.id: sum(c * q for c, q in zip(t.centroid, unit, strict=True)) / t.norm
                 for t in model.themes.values()}
        assert theme is not None
        assert exact[theme.id] == pytest.approx(max(exact.values()), abs=1e-5)  # float32
        assert score == pytest.approx(exact[theme.id], abs=1e-5)

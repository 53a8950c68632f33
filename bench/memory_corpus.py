"""A labelled corpus of real English built from text that ships with Python: the docstrings of
the standard library, labelled by the top-level package or module they come from.

No download, no import of the modules (the files are parsed with :mod:`ast`), deterministic for
one Python version. Used by ``bench/memory_quality.py`` (and its tuning split).

Rules (fixed before any measurement, so that nobody picks the subjects that flatter a method):

* every ``*.py`` file under the standard library's directory, except test suites (``test``,
  ``tests``, ``idle_test`` folders) and ``site-packages``;
* the label of a file is its top-level package (``email/mime/text.py`` → ``email``) or, for a
  single-file module, the module (``turtle.py`` → ``turtle``); private ones (``_…``) are left out;
* a document is the docstring of a module, class or function with at least
  :data:`MIN_CHARS` characters whose first sentence has at least four words; its *question* is
  that first sentence, its *answer* the whole docstring;
* the evaluation subjects are the :data:`SUBJECTS` labels with the most documents, each capped at
  :data:`CAP` documents (a deterministic sample); the next :data:`SUBJECTS` labels form the
  *tuning* split (used only to choose parameters, never to report).
"""

from __future__ import annotations

import ast
import hashlib
import re
import sysconfig
from collections import defaultdict
from pathlib import Path

import attrs

MIN_CHARS = 120
SUBJECTS = 16
CAP = 250
_SENTENCE = re.compile(r"(.+?[.!?])(?:\s|$)", re.S)


@attrs.frozen
class Doc:
    """One docstring: where it comes from, its label and its text."""

    name: str  # dotted: package.module.Class.method
    label: str
    question: str  # the first sentence
    answer: str  # the whole docstring

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def rest(self) -> str:
        """The docstring without its first sentence."""
        return self.answer[len(self.question):].strip() or self.answer


def first_sentence(text: str) -> str:
    flat = " ".join(text.split())
    match = _SENTENCE.match(flat)
    sentence = match.group(1) if match else flat
    return sentence[:300]


def _skip(parts: tuple[str, ...]) -> bool:
    return (parts[0] in ("site-packages", "dist-packages")
            or any(p in ("test", "tests", "idle_test") for p in parts))


def _docs_of(path: Path, dotted: str, label: str) -> list[Doc]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    out: list[Doc] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}.{child.name}"
                add(child, name)
                visit(child, name)

    def add(node: ast.AST, name: str) -> None:
        doc = ast.get_docstring(node)  # type: ignore[arg-type]
        if not doc or len(doc) < MIN_CHARS:
            return
        question = first_sentence(doc)
        if len(question.split()) < 4:
            return
        out.append(Doc(name=name, label=label, question=question, answer=doc.strip()))

    add(tree, dotted)
    visit(tree, dotted)
    return out


def all_docs(root: Path | None = None) -> dict[str, list[Doc]]:
    """Every eligible document of the standard library, by label (sorted by name)."""
    base = Path(root or sysconfig.get_paths()["stdlib"])
    by_label: dict[str, list[Doc]] = defaultdict(list)
    for path in sorted(base.rglob("*.py")):
        parts = path.relative_to(base).parts
        if _skip(parts):
            continue
        label = parts[0] if len(parts) > 1 else path.stem
        if label.startswith("_") or not label.isidentifier():
            continue
        module = ".".join((*parts[:-1], path.stem) if path.stem != "__init__" else parts[:-1])
        by_label[label].extend(_docs_of(path, module, label))
    seen: set[str] = set()
    out: dict[str, list[Doc]] = {}
    for label, docs in by_label.items():
        unique = []
        for d in sorted(docs, key=lambda d: d.name):
            if d.answer not in seen:  # the same docstring copied into two places counts once
                seen.add(d.answer)
                unique.append(d)
        out[label] = unique
    return out


def _key(doc: Doc) -> str:
    return hashlib.sha256(doc.name.encode()).hexdigest()


def corpus(split: str = "eval", *, subjects: int = SUBJECTS, cap: int = CAP) -> list[Doc]:
    """The ``eval`` split (the largest ``subjects`` labels) or the ``tune`` split (the next
    ones), each label capped at ``cap`` documents (the first by a hash of the name)."""
    docs = all_docs()
    ranked = sorted(docs, key=lambda label: (-len(docs[label]), label))
    chosen = ranked[:subjects] if split == "eval" else ranked[subjects:2 * subjects]
    out: list[Doc] = []
    for label in chosen:
        out.extend(sorted(sorted(docs[label], key=_key)[:cap], key=lambda d: d.name))
    return out


if __name__ == "__main__":
    from collections import Counter

    for split in ("eval", "tune"):
        c = corpus(split)
        print(split, len(c), dict(Counter(d.label for d in c)))

"""What the README and ``docs/*.md`` show, for the tests that run it: Python blocks, and the
``hive-store …`` command lines (fenced shell blocks, the README's "at a glance" synopsis and
inline code), expanded from their synopsis grammar (``[optional]``, ``a | b``, ``a|b``,
placeholders such as ``DEST`` or ``N``) into concrete argument lists.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import attrs
import click

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)\s*$")
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(.+?)\s*-->$")
INLINE = re.compile(r"`(hive-store [^`]+)`")
PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_.|-]*|…|\"…\")$")


@attrs.frozen
class Block:
    """A fenced code block: where it is, its language, its text and a not-run reason."""

    path: Path
    line: int
    lang: str
    text: str
    not_run: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file; ``<!-- not run: reason -->`` on the line right
    before a block (blank lines between allowed) marks it."""
    out: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2).lower(), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith(fence[0] * len(fence)):
            j += 1
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = NOT_RUN.match(lines[k].strip()) if k >= 0 else None
        out.append(Block(path, start + 1, lang, "\n".join(lines[start + 1:j]) + "\n",
                         marker.group(1) if marker else None))
        i = j + 1
    return out


def python_blocks() -> list[Block]:
    return [b for path in DOCS for b in blocks(path) if b.lang in ("python", "py")]


# -- hive-store command lines ---------------------------------------------------------------


@attrs.frozen
class Line:
    """A ``hive-store`` synopsis line: where it is, its text, and whether it belongs to a
    sequence (a fenced shell block, run in order on one database)."""

    where: str
    text: str
    sequence: str | None  # the block's location for lines of one shell block


def command_lines() -> list[Line]:
    """Every ``hive-store …`` line shown: shell blocks (in order), the README synopsis (its
    indented lines are commands) and inline code in the prose."""
    out: list[Line] = []
    for path in DOCS:
        fenced: set[int] = set()
        for b in blocks(path):
            first = b.line + 1
            fenced.update(range(b.line, b.line + b.text.count("\n") + 2))
            if b.lang not in ("", "bash", "sh", "shell", "console"):
                continue
            synopsis = False
            for n, raw in enumerate(b.text.splitlines()):
                text = raw.strip().removeprefix("$ ")
                where = f"{path.relative_to(ROOT)}:{first + n}"
                if text.startswith("hive-store "):
                    synopsis = "COMMAND" in text.split("#")[0]
                    if not synopsis:
                        out.append(Line(where, text, f"{path.relative_to(ROOT)}:{b.line}"))
                elif synopsis and raw.startswith("  ") and text:
                    out.append(Line(where, "hive-store " + re.split(r"\s{2,}", text)[0], None))
        for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if n in fenced:
                continue
            for m in INLINE.finditer(raw):
                out.append(Line(f"{path.relative_to(ROOT)}:{n}", m.group(1), None))
    return out


# -- the synopsis grammar ---------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    text = text.replace("[", " [ ").replace("]", " ] ")
    return [t for t in shlex.split(text, comments=True)]


def _parse_alts(tokens: list[str], i: int) -> tuple[list[list[object]], int]:
    alts: list[list[object]] = [[]]
    while i < len(tokens):
        t = tokens[i]
        if t == "]":
            return alts, i
        if t == "|":
            alts.append([])
        elif t == "[":
            inner, i = _parse_alts(tokens, i + 1)
            alts[-1].append(("opt", inner))
        else:
            alts[-1].append(t)
        i += 1
    return alts, i


def _expand_item(item: object) -> list[list[str]]:
    if isinstance(item, tuple):
        return [[], *_expand_alts(item[1])]
    word = str(item)
    if "|" in word and not PLACEHOLDER.match(word):
        return [[w] for w in word.split("|")]
    return [[word]]


def _expand_seq(seq: list[object]) -> list[list[str]]:
    options = [_expand_item(item) for item in seq]
    n = max((len(o) for o in options), default=1)
    return [[t for o in options for t in o[min(k, len(o) - 1)]] for k in range(n)]


def _expand_alts(alts: list[list[object]]) -> list[list[str]]:
    return [variant for seq in alts for variant in _expand_seq(seq)]


def expand(text: str) -> list[list[str]]:
    """Concrete token lists (without ``hive-store``) covering every alternative and optional
    part of a synopsis line at least once."""
    tokens = _tokens(text)
    assert tokens and tokens[0] == "hive-store", text
    alts, _ = _parse_alts(tokens[1:], 0)
    out: list[list[str]] = []
    for variant in _expand_alts(alts):
        if variant not in out:
            out.append(variant)
    return out


# -- resolving commands, options and placeholders ----------------------------------------------


@attrs.define
class Invocation:
    """A command to run: its path (``["memory", "search"]``), its arguments, the ``--db``
    the docs named (if any), and the options it exercises."""

    path: list[str]
    args: list[str]
    db: str | None = None
    options: set[str] = attrs.field(factory=set)

    @property
    def name(self) -> str:
        return " ".join(self.path)


def resolve(cli: click.Group, tokens: list[str], samples: dict[str, str]) -> Invocation:
    """Split ``tokens`` into the command path and its arguments; take out the global
    ``--db``/``--json`` (the tests place them); fill placeholders and missing required
    arguments with ``samples`` (by parameter name)."""
    db = None
    rest = list(tokens)
    kept: list[str] = []
    i = 0
    while i < len(rest):  # the global options, wherever they are
        if rest[i] == "--json":
            i += 1
        elif rest[i] == "--db":
            db = rest[i + 1]
            i += 2
        else:
            kept.append(rest[i])
            i += 1
    command: click.Command = cli
    path: list[str] = []
    while isinstance(command, click.Group) and kept and kept[0] in command.commands:
        path.append(kept[0])
        command = command.commands[kept.pop(0)]
    if command is cli and kept and all(t.startswith("-") for t in kept):
        pass  # the group's own options: --version, --help
    elif isinstance(command, click.Group):
        raise AssertionError(f"{' '.join(tokens)!r}: no such command under {path}")
    by_opt = {o: p for p in command.params if isinstance(p, click.Option) for o in p.opts}
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    args: list[str] = []
    used: set[str] = set()
    positional = 0
    i = 0
    while i < len(kept):
        t = kept[i]
        if t.startswith("-") and t != "-":
            param = by_opt.get(t.split("=")[0])
            if param is None:
                raise AssertionError(f"{' '.join(tokens)!r}: {path} has no option {t}")
            used.add(param.opts[0])
            args.append(t)
            if not param.is_flag and "=" not in t:
                value = kept[i + 1]
                args.append(sample(param, samples) if PLACEHOLDER.match(value) else value)
                i += 1
        else:
            param = arguments[positional] if positional < len(arguments) else None
            if param is None:
                raise AssertionError(f"{' '.join(tokens)!r}: too many arguments for {path}")
            args.append(sample(param, samples) if PLACEHOLDER.match(t) else t)
            positional += 1
        i += 1
    for param in arguments[positional:]:
        if param.required:
            args.append(sample(param, samples))
    return Invocation(path, args, db, used)


def sample(param: click.Parameter, samples: dict[str, str]) -> str:
    """A value for a parameter: from ``samples`` by name, else from its type."""
    name = param.name or ""
    if name in samples:
        return samples[name]
    kind = param.type
    if isinstance(kind, click.Choice):
        return str(kind.choices[0])
    if isinstance(kind, (click.IntRange, click.FloatRange)):
        low = kind.min if kind.min is not None else 1
        return str(low + 1 if kind.min_open else low)
    if kind in (click.INT, click.FLOAT):
        return "1"
    raise AssertionError(f"no sample value for the parameter {name!r}: add one to SAMPLES")


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], click.Command]]:
    """Every command and group under ``command`` with its path."""
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from walk(sub, (*path, name))

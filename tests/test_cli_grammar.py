"""One grammar for every command: each command and option the README, ``docs/*.md`` and every
``--help`` show is run, with the global ``--db``/``--json`` before the command, after it and
(for sub-commands) between group and command; exit codes as expected, every ``--json`` output
valid JSON and the same wherever the options stand.

Runs in-process (click's runner) with ``HOME`` pointing at a temporary folder. Shell blocks of
the docs run in order on one database, as a reader would; everything else starts from a
database quickstart wrote (so there is data to search and a conversation to name).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import click
import pytest
from click.testing import CliRunner, Result
from hive_store_migrate import core_migrations

from hive_store.cli import make_cli
from tests.conftest import legacy_fixture
from tests.docs_commands import Invocation, command_lines, expand, resolve, sample, walk

CLI = make_cli()

# Sample values for placeholders and options, by parameter name ({...}: filled per run).
SAMPLES = {
    "text": "wal", "question": "tell me more about wal checkpoints",
    "dest": "{scratch}/copy.db", "src": "{backup}", "plot_to": "{scratch}/plot.png",
    "source": "{backup}", "destination": "{scratch}/copied.db",
    "to": str(core_migrations().migrations[-1].version), "namespace": "hive_store",  # no-op
    "since": "2026-01-01", "until": "2026-01-31", "now": "2026-01-01T00:00:00+00:00",
    "conversation_id": "{conversation}", "tables": "messages", "chunk": "10",
    "options": "wal_warn_bytes=1073741824", "threshold": "0.2",
}
# An option that needs another one to make sense (else it is a usage error, exit 2).
NEEDS = {("memory context", "--record"): ["--conversation", "{conversation}"]}


def expected_exit(inv: Invocation) -> tuple[int, str]:
    """The exit code a command must end with here, and a part of its message if not 0."""
    if inv.path[:1] == ["d1"] and inv.path[1:] != ["status"]:
        return 1, "D1 mirroring is not configured"  # no HIVE_STORE_D1_* settings here
    return 0, ""


@attrs.frozen
class Case:
    where: str
    inv: Invocation
    sequence: str | None = None
    error: str | None = None  # the docs show something the command does not have

    @property
    def id(self) -> str:
        return f"{self.where}: {' '.join([*self.inv.path, *self.inv.args])}"


def _cases() -> list[Case]:
    cases: list[Case] = []
    seen: set[tuple[str, ...]] = set()
    exercised: set[tuple[str, str]] = set()
    for line in command_lines():
        for tokens in expand(line.text):
            try:
                inv = resolve(CLI, tokens, SAMPLES)
            except AssertionError as exc:
                cases.append(Case(line.where, Invocation(tokens, []), error=str(exc)))
                continue
            for (name, opt), extra in NEEDS.items():
                if inv.name == name and opt in inv.args and extra[0] not in inv.args:
                    inv.args.extend(extra)
            exercised.update((inv.name, o) for o in inv.options)
            key = (line.sequence or "", inv.db or "", inv.name, *inv.args)
            if key not in seen:
                seen.add(key)
                cases.append(Case(line.where, inv, line.sequence))
    # Every command of every --help, and each of its options the docs do not show.
    for path, command in walk(CLI):
        if isinstance(command, click.Group):
            continue
        name = " ".join(path)
        required = [sample(p, SAMPLES) for p in command.params
                    if isinstance(p, click.Argument) and p.required]
        options = [p for p in command.params if isinstance(p, click.Option)
                   and not p.hidden and p.expose_value and p.opts[0] not in ("--help",)]
        base = Invocation(list(path), list(required))
        if not any(c.inv.name == name for c in cases):
            cases.append(Case("--help", base))
        for p in options:
            if (name, p.opts[0]) in exercised:
                continue
            args = [*required, p.opts[0]] + ([] if p.is_flag else [sample(p, SAMPLES)])
            args += NEEDS.get((name, p.opts[0]), [])
            cases.append(Case("--help", Invocation(list(path), args, options={p.opts[0]})))
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("cli")
    home = root / "home"
    (home / ".hive").mkdir(parents=True)
    (root / "scratch").mkdir()
    (root / "cwd").mkdir()  # relative paths in the docs (--plot cost.png) land here
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root / "cwd")
        yield _world(root, home)


def _world(root: Path, home: Path) -> dict[str, Any]:
    env = {"HOME": str(home), "HIVE_STORE_DB": None, "HIVE_STORE_DEBUG": None,
           **{f"HIVE_STORE_D1_{k}": None for k in ("ACCOUNT_ID", "DATABASE_ID", "TOKEN",
                                                    "TOKEN_FILE", "CONFIG", "URL")}}
    template = root / "template.db"
    made = invoke(env, ["--db", str(template), "--json", "quickstart"])
    assert made.exit_code == 0, made.output
    shutil.copy(template, root / "backup.db")
    shutil.copy(legacy_fixture("hive-ai-v10.db"), root / "legacy.db")
    return {"root": root, "home": home, "env": env, "template": template,
            "conversation": json.loads(made.stdout)["conversation_id"]}


def invoke(env: dict[str, Any], args: list[str]) -> Result:
    result = CliRunner(env=env).invoke(CLI, args, catch_exceptions=False, prog_name="hive-store")
    assert "Traceback" not in result.output, result.output
    return result


# times, durations, new ids, and counters of background threads and the pool
VOLATILE = re.compile(r"seconds|duration|_ms$|^ms$|age_s|_at$|elapsed|^id$|_id$|"
                      r"^passes$|^checkouts$|^phases$")
STAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d[.\d]*(?:[+-]\d\d:\d\d|Z)?|"
                   r"\d{8}T\d{6,}Z?|"
                   r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def masked(value: Any, key: str = "") -> Any:
    """JSON output without what differs between two runs of the same command (times,
    durations, new ids; what the health checks measured, e.g. while quickstart's memory
    indexer works: their names and statuses stay)."""
    if VOLATILE.search(key):
        return "<volatile>"
    if isinstance(value, dict):
        if key == "checks[]" and "status" in value:  # health measured while threads work
            return {"name": value.get("name"), "status": value["status"]}
        return {k: masked(v, k) for k, v in value.items()}
    if key == "checks" and isinstance(value, list):
        return [masked(v, "checks[]") for v in value]
    if isinstance(value, list):
        return [masked(v, key) for v in value]
    if isinstance(value, str):
        return STAMP.sub("<t>", value)
    return value


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in _differences(a.get(k), b.get(k), f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in _differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r:.80} != {b!r:.80}"]


def _state(world: dict[str, Any], case: Case) -> Path:
    """The database a case starts from: the sequence's database as the earlier lines left
    it, or a fresh copy of the template (of the legacy file for ``~/.hive/hive-ai.db``)."""
    legacy = case.inv.db is not None and "hive-ai.db" in case.inv.db
    source = world["root"] / ("legacy.db" if legacy else "template.db")
    if case.sequence is None:
        return source
    chains = world.setdefault("chains", {})
    key = (case.sequence, legacy)
    if key not in chains:
        chain = world["root"] / f"chain-{len(chains)}.db"
        shutil.copy(source, chain)
        chains[key] = chain
    return chains[key]


def _fresh(world: dict[str, Any], state: Path, case: Case) -> Path:
    """A copy of ``state`` where the command expects its database, scratch files cleared."""
    for f in (world["root"] / "scratch").iterdir():
        if f.is_file():
            f.unlink()
    target = (Path(str(case.inv.db).replace("~", str(world["home"]))) if case.inv.db
              else world["root"] / "work" / "hive.db")
    target.parent.mkdir(parents=True, exist_ok=True)
    for f in target.parent.glob(f"{target.name}*"):  # -wal, -shm, backups of earlier runs
        f.unlink()
    shutil.copy(state, target)
    return target


def _fill(world: dict[str, Any], args: list[str]) -> list[str]:
    values = {"scratch": str(world["root"] / "scratch"), "backup": str(world["root"] /
              "backup.db"), "conversation": world["conversation"]}
    return [a.format(**values) if "{" in a else a for a in args]


def variants(path: list[str], args: list[str], db: str) -> Iterator[tuple[str, list[str]]]:
    yield "before", ["--db", db, "--json", *path, *args]
    yield "after", [*path, *args, "--json", "--db", db]
    if len(path) > 1:
        yield "between", [path[0], "--db", db, "--json", *path[1:], *args]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_command_and_option_shown(world: dict[str, Any], case: Case) -> None:
    assert case.error is None, f"{case.where} shows {case.error}"
    inv = case.inv
    args = _fill(world, inv.args)
    if not inv.path:  # the group's own options (--version)
        assert invoke(world["env"], args).exit_code == 0
        return
    code, message = expected_exit(inv)
    state = _state(world, case)
    outputs = {}
    for where, argv in variants(inv.path, args, "{db}"):
        db = _fresh(world, state, case)
        result = invoke(world["env"], [str(db) if a == "{db}" else a for a in argv])
        assert result.exit_code == code, (where, argv, result.output)
        if result.stdout.strip():
            try:
                outputs[where] = masked(json.loads(result.stdout))
            except ValueError:
                pytest.fail(f"--json {where} the command printed no JSON: {result.stdout!r}")
        else:  # an error: one line on stderr, nothing on stdout
            assert code != 0 and message in result.stderr, (where, result.output)
            assert result.stderr.strip().count("\n") == 0, result.stderr
    first = next(iter(outputs.values()), None)
    for where, output in outputs.items():
        assert output == first, f"--json {where}: {_differences(first, output)}"
    # The human form, with --db after the command; in a sequence it moves the database on.
    db = _fresh(world, state, case)
    human = invoke(world["env"], [*inv.path, *args, "--db", str(db)])
    assert human.exit_code == code, human.output
    assert message in human.output
    if case.sequence is not None:
        shutil.copy(db, state)
        for suffix in ("-wal", "-shm"):
            Path(f"{state}{suffix}").unlink(missing_ok=True)


def test_help_of_every_command_and_the_version(world: dict[str, Any]) -> None:
    for path, _command in walk(CLI):
        for flag in ("--help", "-h"):
            result = invoke(world["env"], [*path, flag])
            assert result.exit_code == 0 and result.output.startswith("Usage: "), path
        if path:  # the global options are listed by every command's --help
            assert "--db URL|PATH" in result.output and "--json" in result.output, path
    version = invoke(world["env"], ["--version"])
    assert version.exit_code == 0
    assert version.output.startswith("hive-store 0.1.0 (the package;")


def test_global_options_last_one_wins_and_separator(world: dict[str, Any]) -> None:
    one, two = world["root"] / "one.db", world["root"] / "two.db"
    result = invoke(world["env"], ["--db", str(one), "init", "--db", str(two), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["path"] == str(two)
    assert two.exists() and not one.exists()
    # after `--`, "--json" is the text searched for, not the option
    shutil.copy(world["template"], one)
    result = invoke(world["env"], ["--db", str(one), "memory", "search", "--", "--json"])
    assert result.exit_code == 0 and result.output.strip() == "no matches"

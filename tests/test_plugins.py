"""The plugin system end to end, with two real plugin distributions installed from
``tests/plugins/``: ``hive-store-example`` (an entity, a migration set, a command and a
post-commit listener) and ``hive-store-broken`` (one plugin that fails to import, one with a
misspelled hook).

``tests/conftest.py`` pip-installs them into ``tests/.plugins/`` (only the test run has that on
its path), so they are found through their entry points like any installed plugin while the
user's environment never sees them.

Every test uses a fresh :class:`Plugins` (never the process-wide one), so the environment
variables it sets take effect and nothing leaks into other tests.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hive_store
from hive_store.cli import make_cli
from hive_store.plugins import ENTRY_POINT_GROUP, OWN_DISTRIBUTION, Plugins

PLUGIN_SOURCES = Path(__file__).resolve().parent / "plugins"
TEST_DISTRIBUTIONS = {  # distribution -> its folder (and top-level package) in tests/plugins
    "hive-store-example": "hive_store_example",
    "hive-store-broken": "hive_store_broken",
}
BROKEN = {"broken_import", "misspelled"}
ENV_VARS = ("HIVE_STORE_STRICT_PLUGINS", "HIVE_STORE_LOAD_PLUGINS", "HIVE_STORE_DISABLE_PLUGINS")


# -- the installed test distributions --------------------------------------------------------


@functools.cache
def _distribution_problems() -> tuple[str, ...]:
    """Why the installed test distributions cannot be used (empty when they can)."""
    problems: list[str] = []
    for dist_name, folder in TEST_DISTRIBUTIONS.items():
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{dist_name} is not installed")
            continue
        project = tomllib.loads((PLUGIN_SOURCES / folder / "pyproject.toml").read_text("utf-8"))
        wanted = project["project"]["entry-points"][ENTRY_POINT_GROUP]
        have = {ep.name: ep.value for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP}
        if have != wanted:
            problems.append(f"{dist_name} is installed with entry points {have}, not {wanted}")
        # A non-editable install is a copy: make sure it is a copy of these sources.
        for file in dist.files or []:
            if file.suffix != ".py" or file.parts[0] != folder:
                continue
            source = PLUGIN_SOURCES / folder / Path(*file.parts)
            installed = Path(str(dist.locate_file(file)))
            if not source.exists() or installed.read_bytes() != source.read_bytes():
                problems.append(f"{dist_name} is installed from other sources ({file} differs)")
                break
    return tuple(problems)


def require_test_distributions() -> None:
    """Fail (never skip) when the test plugin distributions are missing or stale."""
    problems = _distribution_problems()
    if problems:
        pytest.fail(
            "the plugin tests need the test plugin distributions: "
            + "; ".join(problems)
            + " (tests/conftest.py installs them into tests/.plugins; delete that folder "
            "to force a new install).",
            pytrace=False,
        )


def fresh_plugins() -> Plugins:
    """A new, not yet loaded plugin set (loading reads the environment on first use)."""
    require_test_distributions()
    return Plugins()


def example() -> ModuleType:
    require_test_distributions()
    import hive_store_example

    return hive_store_example


def builtin_names() -> set[str]:
    """Entry-point names of the plugins shipped with hive-store."""
    return {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
            if ep.dist is not None and ep.dist.name.lower().replace("_", "-") == OWN_DISTRIBUTION}


def registered(p: Plugins) -> set[str]:
    """Names of the plugins really registered (blocked names are not plugins)."""
    return {name for name, plugin in p.pm.list_name_plugin() if plugin is not None}


def failures_by_name(p: Plugins) -> dict[str, Any]:
    return {f.name: f for f in p.failures}


@pytest.fixture(autouse=True)
def _clean_plugin_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test without plugin settings from the caller's environment."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def test_the_test_plugin_distributions_are_installed() -> None:
    require_test_distributions()
    assert importlib.metadata.version("hive-store-example") == "0.1.0"
    assert importlib.metadata.requires("hive-store-example") == ["hive-store"]


# -- the example plugin ----------------------------------------------------------------------


def test_example_plugin_is_discovered_through_its_entry_point() -> None:
    p = fresh_plugins()
    infos = {i.name: i for i in p.info()}
    info = infos["example"]
    assert info.distribution == "hive-store-example" and info.version == "0.1.0"
    assert not info.builtin
    assert set(info.hooks) == {
        "hive_store_register_entities", "hive_store_register_migrations",
        "hive_store_register_commands", "hive_store_after_commit",
    }
    assert p.pm.get_plugin("example") is example()
    assert example().ExampleNote in p.entities()
    assert builtin_names() | {"hive_store.core"} <= set(infos)
    assert all(infos[name].builtin for name in builtin_names())


def test_example_entity_gets_a_repository_and_crud_works(tmp_path: Path) -> None:
    ExampleNote = example().ExampleNote
    url = f"sqlite://{tmp_path / 'hive.db'}"
    with hive_store.open(url, plugins=fresh_plugins()) as store:
        assert store.repo(ExampleNote) is store.example_notes
        assert store.entities["example_notes"] is ExampleNote
        conv = store.conversations.add(hive_store.entities.Conversation())
        note = store.example_notes.add(ExampleNote(conversation_id=conv.id, body="first"))
        loose = store.example_notes.add(ExampleNote(body="no conversation ✓"))
        assert store.example_notes.get(note.id) == note
        assert store.example_notes.count() == 2
        assert store.example_notes.find(conversation_id=conv.id) == [note]
        assert store.example_notes.find(conversation_id=None) == [loose]
        changed = store.example_notes.update(note.id, body="edited")
        assert changed.body == "edited" and store.example_notes.get(note.id).body == "edited"
        assert store.example_notes.delete(loose) is True
        assert store.example_notes.delete(loose.id) is False
        with pytest.raises(hive_store.NotFound):
            store.example_notes.get(loose.id)
        # The foreign key of the plugin's own migration is enforced ...
        with pytest.raises(hive_store.IntegrityError):
            store.example_notes.add(ExampleNote(conversation_id="no-such-conversation", body="x"))
        # ... and cascades when the conversation goes.
        assert store.conversations.delete(conv.id) is True
        assert store.example_notes.count() == 0
    # The data outlives the store: reopen the file.
    with hive_store.open(url, plugins=fresh_plugins()) as store:
        kept = store.example_notes.add(ExampleNote(body="kept"))
    with hive_store.open(url, plugins=fresh_plugins()) as store:
        assert store.example_notes.find() == [kept]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_example_note_round_trips(data: st.DataObject, tmp_path: Path) -> None:
    from hive_store.testing import entities

    ExampleNote = example().ExampleNote
    note = data.draw(entities(ExampleNote, conversation_id=None))
    with hive_store.open(f"sqlite://{tmp_path / 'rt.db'}", plugins=fresh_plugins()) as store:
        store.example_notes.upsert(note)
        try:
            assert store.example_notes.get(note.id) == note
        finally:
            store.example_notes.delete(note.id)


def test_example_migrations_are_applied_after_the_core_schema(tmp_path: Path) -> None:
    p = fresh_plugins()
    sets = {s.namespace: s for s in p.migration_sets()}
    assert {"hive_store", "example"} <= set(sets)
    assert sets["example"].depends_on == ("hive_store",)
    with hive_store.open(f"sqlite://{tmp_path / 'm.db'}", plugins=p) as store:
        with store.backend.connection() as conn:
            rows = conn.execute(
                "SELECT namespace, version, name FROM hive_store_migrations ORDER BY rowid"
            ).fetchall()
            columns = [r[1] for r in conn.execute("PRAGMA table_info(example_notes)")]
            fks = conn.execute("PRAGMA foreign_key_list(example_notes)").fetchall()
        migrator = p.migrator(store.backend)
        assert migrator is not None and migrator.pending(p.migration_sets()) == []
        assert store.schema_version() == sets["hive_store"].latest
    namespaces = [r[0] for r in rows]
    assert ("example", 1, "example_notes") in rows
    assert namespaces.index("example") > max(
        i for i, ns in enumerate(namespaces) if ns == "hive_store")
    assert columns == ["id", "conversation_id", "body", "created_at"]
    assert [(fk[2], fk[3], fk[4]) for fk in fks] == [("conversations", "conversation_id", "id")]


def test_post_commit_events_reach_the_example_plugin() -> None:
    module = example()
    ExampleNote = module.ExampleNote
    seen: list[str] = module.COMMITTED_TABLES
    seen.clear()
    with hive_store.open(":memory:", plugins=fresh_plugins()) as store:
        assert seen == []  # opening (and migrating) is not a change event
        with store.transaction():
            conv = store.conversations.add(hive_store.entities.Conversation())
            store.example_notes.add(ExampleNote(conversation_id=conv.id, body="a"))
            assert seen == []  # not before the commit
        assert seen == ["conversations", "example_notes"]
        store.example_notes.add(ExampleNote(body="b"))
        assert seen == ["conversations", "example_notes", "example_notes"]
        seen.clear()
        with pytest.raises(ZeroDivisionError), store.transaction():
            store.example_notes.add(ExampleNote(body="rolled back"))
            1 / 0  # noqa: B018
        assert seen == []  # never for a rollback
        assert store.example_notes.count() == 2
    seen.clear()


def test_example_command_runs_through_the_cli(tmp_path: Path) -> None:
    ExampleNote = example().ExampleNote
    db = tmp_path / "cli.db"
    p = fresh_plugins()
    cli = make_cli(p)
    runner = CliRunner()
    assert "example-count" in runner.invoke(cli, ["--help"], catch_exceptions=False).output
    result = runner.invoke(cli, ["--db", str(db), "example-count"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "0"
    with hive_store.open(str(db), plugins=p) as store:
        store.example_notes.add_many([ExampleNote(body="x"), ExampleNote(body="y")])
    result = runner.invoke(cli, ["--db", str(db), "example-count"], catch_exceptions=False)
    assert result.exit_code == 0 and result.output.strip() == "2"
    result = runner.invoke(cli, ["--db", str(db), "--json", "example-count"],
                           catch_exceptions=False)
    assert json.loads(result.output) == {"example_notes": 2}
    # A plugin command's errors get the command line's one-line treatment too.
    result = runner.invoke(cli, ["--db", "nosuch:///x", "example-count"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "no installed backend handles 'nosuch'" in result.output
    assert "Traceback" not in result.output


# -- isolation of broken plugins -------------------------------------------------------------


def test_broken_plugins_are_recorded_and_the_rest_works(tmp_path: Path) -> None:
    p = fresh_plugins()
    p.ensure_loaded()  # does not raise
    failed = failures_by_name(p)
    assert set(failed) == BROKEN
    assert failed["broken_import"].stage == "load"
    assert failed["broken_import"].distribution == "hive-store-broken"
    assert failed["broken_import"].error.startswith("ImportError: ")
    assert "Traceback" in failed["broken_import"].details
    misspelled = failed["misspelled"]
    assert misspelled.stage == "validate" and misspelled.distribution == "hive-store-broken"
    assert "'misspelled'" in misspelled.error and "hive_store_register_entitys" in misspelled.error
    # Neither is registered; everything else is.
    assert not BROKEN & registered(p)
    assert builtin_names() | {"hive_store.core", "example"} <= registered(p)
    assert not BROKEN & {i.name for i in p.info()}
    with hive_store.open(f"sqlite://{tmp_path / 'ok.db'}", plugins=p) as store:
        run = store.record_consensus("q?", [
            hive_store.StageOutput(stage=s, model="m", answer=f"{s} answer")
            for s in ("generator", "refiner", "validator", "curator")
        ])
        assert store.conversations.get(run.conversation_id).id == run.conversation_id
        assert store.example_notes.add(example().ExampleNote(body="still fine")).body
    assert set(failures_by_name(p)) == BROKEN  # using the store recorded nothing new


def test_plugins_command_lists_loaded_and_failed_plugins() -> None:
    p = fresh_plugins()
    runner = CliRunner()
    result = runner.invoke(make_cli(p), ["plugins", "--all"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    for name in ("sqlite", "migrate", "hive_store.core", "example", "hive-store-example"):
        assert name in out
    assert "failed broken_import (hive-store-broken, load): ImportError" in out
    assert "failed misspelled (hive-store-broken, validate)" in out
    assert "hive_store_register_entitys" in out
    assert "Traceback" in out  # --all shows the import error's details

    short = runner.invoke(make_cli(p), ["plugins"], catch_exceptions=False).output
    assert "failed broken_import" in short and "Traceback" not in short

    data = json.loads(runner.invoke(make_cli(p), ["--json", "plugins", "--all"],
                                    catch_exceptions=False).output)
    loaded = {entry["name"]: entry for entry in data["loaded"]}
    assert loaded["example"]["distribution"] == "hive-store-example"
    assert loaded["example"]["version"] == "0.1.0" and loaded["example"]["builtin"] is False
    assert "hive_store_after_commit" in loaded["example"]["hooks"]
    assert {"sqlite", "migrate", "hive_store.core"} <= set(loaded)
    failed = {entry["name"]: entry for entry in data["failed"]}
    assert set(failed) == BROKEN
    assert failed["broken_import"]["stage"] == "load"
    assert failed["broken_import"]["distribution"] == "hive-store-broken"
    assert "Traceback" in failed["broken_import"]["details"]
    assert failed["misspelled"]["stage"] == "validate"
    data = json.loads(runner.invoke(make_cli(p), ["--json", "plugins"],
                                    catch_exceptions=False).output)
    assert all("details" not in entry for entry in data["failed"])


# -- environment variables -------------------------------------------------------------------


def test_strict_mode_raises_naming_the_plugin(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.setenv("HIVE_STORE_STRICT_PLUGINS", "1")
    with pytest.raises(hive_store.PluginError, match=r"broken_import.*ImportError"):
        fresh_plugins().ensure_loaded()
    with pytest.raises(hive_store.PluginError, match="broken_import"):
        hive_store.open(f"sqlite://{tmp_path / 's.db'}", plugins=fresh_plugins())
    assert not (tmp_path / "s.db").exists()

    monkeypatch.setenv("HIVE_STORE_LOAD_PLUGINS", "misspelled")
    with pytest.raises(hive_store.PluginError) as info:
        fresh_plugins().ensure_loaded()
    assert "misspelled" in str(info.value) and "hive_store_register_entitys" in str(info.value)

    # Strict mode has nothing to say about healthy plugins.
    monkeypatch.setenv("HIVE_STORE_LOAD_PLUGINS", "example")
    p = fresh_plugins().ensure_loaded()
    assert p.failures == [] and "example" in registered(p)


def test_strict_mode_keeps_naming_the_broken_plugin_on_retry(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_STORE_STRICT_PLUGINS", "1")
    p = fresh_plugins()
    with pytest.raises(hive_store.PluginError, match="broken_import"):
        p.ensure_loaded()
    with pytest.raises(hive_store.PluginError, match="broken_import"):
        p.ensure_loaded()  # e.g. the second hive_store.open() of a long-running process
    assert "hive_store.core" not in failures_by_name(p)


def test_strict_mode_from_the_command_line() -> None:
    require_test_distributions()
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env["HIVE_STORE_STRICT_PLUGINS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", "from hive_store.cli import main; main()", "plugins"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "Error: plugin 'broken_import'" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_load_plugins_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_STORE_LOAD_PLUGINS", "example")
    p = fresh_plugins().ensure_loaded()
    assert registered(p) == builtin_names() | {"hive_store.core", "example"}
    assert {"sqlite", "migrate"} <= registered(p)
    assert p.failures == []

    monkeypatch.setenv("HIVE_STORE_LOAD_PLUGINS", "")
    p = fresh_plugins().ensure_loaded()
    assert registered(p) == builtin_names() | {"hive_store.core"}
    assert all(info.builtin for info in p.info())
    assert p.failures == []
    with hive_store.open(":memory:", plugins=p) as store:
        assert "example_notes" not in store.entities
        assert not hasattr(store, "example_notes")


def test_disable_plugins_blocks_a_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_STORE_DISABLE_PLUGINS", "example")
    p = fresh_plugins().ensure_loaded()
    assert "example" not in registered(p)
    assert p.pm.is_blocked("example")
    assert example().ExampleNote not in p.entities()
    assert p.register(example(), name="example") is None  # stays blocked at runtime too
    with hive_store.open(":memory:", plugins=p) as store:
        assert "example_notes" not in store.entities
        with store.backend.connection() as conn:
            namespaces = {r[0] for r in conn.execute(
                "SELECT namespace FROM hive_store_migrations")}
        assert "hive_store" in namespaces and "example" not in namespaces


def test_disabled_plugins_are_not_listed_as_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_STORE_DISABLE_PLUGINS", "example,sqlite")
    p = fresh_plugins()
    names = {info.name for info in p.info()}
    assert "migrate" in names
    assert "example" not in names and "sqlite" not in names
    data = json.loads(CliRunner().invoke(make_cli(p), ["--json", "plugins"],
                                         catch_exceptions=False).output)
    assert "example" not in {entry["name"] for entry in data["loaded"]}


def test_disabling_the_sqlite_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HIVE_STORE_DISABLE_PLUGINS", "sqlite")
    p = fresh_plugins()
    with pytest.raises(hive_store.ConfigurationError) as info:
        hive_store.open(f"sqlite://{tmp_path / 'no.db'}", plugins=p)
    message = str(info.value)
    assert "no installed backend handles 'sqlite' URLs" in message
    assert "available schemes: " in message
    assert p.backend_schemes() == ["postgres", "postgresql"]  # the other built-in backend
    assert "sqlite" not in registered(p) and "migrate" in registered(p)
    assert not (tmp_path / "no.db").exists()


def test_unknown_scheme_lists_the_available_ones() -> None:
    p = fresh_plugins()
    with pytest.raises(hive_store.ConfigurationError, match=r"available schemes: .*sqlite"):
        hive_store.open("nosuch:///x", plugins=p)
    assert "sqlite" in p.backend_schemes()


_THIRD_PARTY = sorted({"example"} | BROKEN)
_names = st.lists(st.sampled_from([*_THIRD_PARTY, "sqlite", "migrate", "no_such_plugin"]),
                  max_size=4)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=30)
@given(allow=st.none() | _names, deny=st.none() | _names, spaces=st.booleans())
def test_allow_and_block_lists_model(monkeypatch: pytest.MonkeyPatch, allow: list[str] | None,
                                     deny: list[str] | None, spaces: bool) -> None:
    """Which plugins load, against a model of the two environment variables."""
    sep = " , " if spaces else ","
    builtins = builtin_names()
    with monkeypatch.context() as m:
        if allow is not None:
            m.setenv("HIVE_STORE_LOAD_PLUGINS", sep.join(allow))
        if deny is not None:
            m.setenv("HIVE_STORE_DISABLE_PLUGINS", sep.join(deny))
        p = fresh_plugins().ensure_loaded()
    blocked = set(deny or ())
    third_party = set(_THIRD_PARTY) if allow is None else set(allow) & set(_THIRD_PARTY)
    wanted = (builtins | third_party) - blocked
    assert registered(p) == {"hive_store.core"} | (wanted - BROKEN)
    assert set(failures_by_name(p)) == wanted & BROKEN
    assert all(p.pm.is_blocked(name) for name in blocked & (builtins | set(_THIRD_PARTY)))


# -- registering at runtime ------------------------------------------------------------------


class Misspelled:
    @hive_store.hookimpl
    def hive_store_after_comit(self, store: Any, changes: Any) -> None:  # sic
        raise AssertionError("never called")


def test_register_rejects_a_misspelled_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    p = fresh_plugins().ensure_loaded()
    before = registered(p)
    assert p.register(Misspelled(), name="typo") is None
    failure = failures_by_name(p)["typo"]
    assert failure.stage == "validate"
    assert "'typo'" in failure.error and "hive_store_after_comit" in failure.error
    assert registered(p) == before
    with hive_store.open(":memory:", plugins=p) as store:  # still usable
        store.users.add(hive_store.entities.User())

    monkeypatch.setenv("HIVE_STORE_STRICT_PLUGINS", "1")
    with pytest.raises(hive_store.PluginError, match=r"typo.*hive_store_after_comit"):
        p.register(Misspelled(), name="typo")
    assert registered(p) == before


def test_register_and_unregister_a_plugin_for_one_test() -> None:
    seen: list[str] = []

    class Listener:
        @hive_store.hookimpl
        def hive_store_after_commit(self, changes: Any) -> None:
            seen.extend(c.table for c in changes)

        @hive_store.hookimpl
        def hive_store_backend_schemes(self) -> list[str]:
            return ["listener"]

    p = fresh_plugins().ensure_loaded()
    with hive_store.open(":memory:", plugins=p) as store:
        assert p.register(Listener(), name="listener") == "listener"
        info = {i.name: i for i in p.info()}["listener"]
        assert info.hooks == ("hive_store_after_commit", "hive_store_backend_schemes")
        assert info.distribution is None and not info.builtin
        assert "listener" in p.backend_schemes()
        store.users.add(hive_store.entities.User())
        assert seen == ["users"]
        p.unregister("listener")
        store.users.add(hive_store.entities.User())
        assert seen == ["users"]
        assert "listener" not in {i.name for i in p.info()}
        assert "listener" not in p.backend_schemes()
    p.unregister("listener")  # twice is harmless
    assert p.register(Listener(), name="listener") == "listener"  # and it can come back


def test_a_raising_hook_is_recorded_and_the_others_still_count(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    class Raising:
        @hive_store.hookimpl
        def hive_store_register_entities(self) -> list[type]:
            raise RuntimeError("entity registry offline")

    p = fresh_plugins().ensure_loaded()
    assert p.register(Raising(), name="raising") == "raising"
    classes = p.entities()
    assert example().ExampleNote in classes
    assert hive_store.entities.Conversation in classes
    failure = failures_by_name(p)["raising"]
    assert failure.stage == "hive_store_register_entities"
    assert failure.error == "RuntimeError: entity registry offline"
    assert "Traceback" in failure.details
    with hive_store.open(f"sqlite://{tmp_path / 'r.db'}", plugins=p) as store:
        assert store.example_notes.count() == 0

    monkeypatch.setenv("HIVE_STORE_STRICT_PLUGINS", "1")
    with pytest.raises(hive_store.PluginError, match=r"raising.*entity registry offline"):
        p.entities()


# -- lazy, idempotent loading ----------------------------------------------------------------


def test_importing_hive_store_loads_no_plugin() -> None:
    require_test_distributions()
    code = ("import hive_store, sys, json; print(json.dumps(sorted(m for m in sys.modules "
            "if m.startswith(('hive_store_sqlite', 'hive_store_migrate', 'hive_store_example', "
            "'hive_store_broken')))))")
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    assert json.loads(proc.stdout) == []
    proc = subprocess.run(
        [sys.executable, "-c", "import hive_store, sys; print('hive_store_sqlite' in sys.modules)"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )
    assert proc.stdout.strip() == "False"


def test_loading_is_lazy_and_idempotent() -> None:
    p = fresh_plugins()
    assert p.pm.get_plugins() == set()  # nothing before the first use
    assert p.ensure_loaded() is p
    names = registered(p)
    impls = len(p.pm.hook.hive_store_register_entities.get_hookimpls())
    failures = list(p.failures)
    assert p.ensure_loaded() is p
    p.entities()
    p.info()
    assert registered(p) == names
    assert len(p.pm.hook.hive_store_register_entities.get_hookimpls()) == impls
    assert p.failures == failures  # the broken ones are recorded once, not per call
    assert p.entities().count(example().ExampleNote) == 1


def test_concurrent_first_use_loads_once() -> None:
    p = fresh_plugins()
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def use() -> None:
        try:
            barrier.wait()
            p.entities()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(f.name for f in p.failures) == sorted(BROKEN)
    example_impls = [impl for impl in p.pm.hook.hive_store_after_commit.get_hookimpls()
                     if impl.plugin_name == "example"]
    assert len(example_impls) == 1

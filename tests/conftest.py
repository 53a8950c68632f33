from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import hive_store
import hive_store.plugins

# Profiles: "ci" is loaded by hypothesis itself when CI=true; "dev" is the default here.
# Nothing is loaded unconditionally except through HYPOTHESIS_PROFILE.
settings.register_profile(
    "dev", max_examples=50, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=500, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])
elif not os.environ.get("CI"):
    settings.load_profile("dev")

# The suite runs with the plugins shipped in hive-store only; tests/test_plugins.py opts in to
# the third-party test distributions (installed by CI) explicitly.
os.environ.setdefault("HIVE_STORE_LOAD_PLUGINS", "")

FIXTURES = Path(
    os.environ.get("HIVE_STORE_FIXTURES")
    or Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "legacy"
)


@pytest.fixture(scope="session")
def _migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "hive-ai.db"
    hive_store.open(f"sqlite://{path}").close()
    return path


@pytest.fixture
def fresh_db(tmp_path: Path) -> Path:
    """A new database file that hive_store.open() created and migrated, then closed."""
    path = tmp_path / "hive-ai.db"
    hive_store.open(f"sqlite://{path}").close()
    return path


@pytest.fixture
def db_path(tmp_path: Path, _migrated_template: Path) -> Path:
    """A migrated database file (copied from a session template: fast)."""
    path = tmp_path / "hive-ai.db"
    shutil.copy(_migrated_template, path)
    return path


@pytest.fixture
def store(db_path: Path) -> Iterator[hive_store.Store]:
    """An open store on a migrated file, closed after the test."""
    with hive_store.open(f"sqlite://{db_path}") as s:
        yield s


@pytest.fixture
def mem_store() -> Iterator[hive_store.Store]:
    """An open in-memory store, closed after the test."""
    with hive_store.open(":memory:") as s:
        yield s


def legacy_fixture(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        pytest.fail(f"legacy fixture {path} is missing (set HIVE_STORE_FIXTURES to its folder)")
    return path


def legacy_manifest(name: str) -> dict:
    """The manifest of a legacy fixture: per table its columns, row count and digest."""
    import json

    return json.loads(legacy_fixture(name.replace(".db", ".manifest.json")).read_text())


def table_digest(conn, table: str) -> str:
    """The manifests' digest: sha256 over the sorted reprs of the table's rows."""
    import hashlib

    rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
    return hashlib.sha256("".join(sorted(repr(r) for r in rows)).encode()).hexdigest()


def isolated_plugins(*extra: object) -> hive_store.plugins.Plugins:
    """hive-store's core plugins only: the SQLite backend, the migration runner and the health
    plugin, registered exactly as from their entry points (other plugins installed in the
    environment stay out), plus ``extra`` plugin objects."""
    import hive_store_health
    import hive_store_migrate
    import hive_store_sqlite

    from hive_store.plugins import Plugins

    p = Plugins(entry_points=False)
    p.ensure_loaded()
    for name, module in (("sqlite", hive_store_sqlite), ("migrate", hive_store_migrate),
                         ("health", hive_store_health)):
        p.register(module, name=name, distribution="hive-store", builtin=True)
    for i, obj in enumerate(extra):
        p.register(obj, name=f"test-extra-{i}")
    return p

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
# the third-party test distributions explicitly.
os.environ.setdefault("HIVE_STORE_LOAD_PLUGINS", "")


def _install_test_plugins() -> Path:
    """pip-install the test plugin distributions of ``tests/plugins`` into a folder that only the
    test run puts on ``sys.path`` (and ``PYTHONPATH``, for the commands tests start), so they
    are found through their entry points exactly like installed plugins, while the user's
    environment never sees them (its ``hive-store`` stays quiet). Reinstalled when their sources
    change; offline (no build isolation: setuptools comes with the test extras)."""
    import hashlib
    import subprocess
    import tempfile

    sources = Path(__file__).parent / "plugins"
    files = sorted(f for f in sources.rglob("*")
                   if f.is_file() and f.suffix in {".py", ".toml"}
                   and not {"build", "__pycache__"} & set(f.parts)
                   and not any(part.endswith(".egg-info") for part in f.parts))
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(sources)).encode() + b"\0" + f.read_bytes())
    root = Path(__file__).parent / ".plugins"
    target = root / digest.hexdigest()[:16]
    if not target.is_dir():
        root.mkdir(exist_ok=True)
        for old in root.iterdir():  # an earlier version of the sources
            shutil.rmtree(old, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
             "--no-build-isolation", "--disable-pip-version-check", "--target", str(staging),
             *(str(d) for d in sorted(sources.iterdir()) if (d / "pyproject.toml").is_file())],
            check=True)
        try:
            staging.rename(target)
        except OSError:  # another run installed it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    return target


TEST_PLUGINS = _install_test_plugins()
sys.path.insert(0, str(TEST_PLUGINS))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(TEST_PLUGINS), os.environ.get("PYTHONPATH")) if p)

# Legacy Hive databases as users' disks hold them, kept in the repository unmodified (copy a
# file before opening it). HIVE_STORE_FIXTURES points elsewhere, e.g. at bigger private files.
FIXTURES = Path(
    os.environ.get("HIVE_STORE_FIXTURES") or Path(__file__).parent / "fixtures" / "legacy"
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


# -- backends ---------------------------------------------------------------------------------
# The contract tests run on every backend through one parametrised fixture: a SQLite file, a
# SQLite in-memory database and PostgreSQL (tests/pg_support.py: one server per run).

BACKENDS = ("sqlite-file", "sqlite-memory", "postgresql")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    """The run's PostgreSQL server (see tests/pg_support.py); stopped at the session's end."""
    from tests import pg_support

    yield pg_support.server()
    pg_support.stop()


@pytest.fixture
def pg_url(pg_server: object) -> Iterator[str]:
    """A new, migrated PostgreSQL database (copied from the run's template), dropped after."""
    from tests import pg_support

    url = pg_support.new_database()
    yield url
    pg_support.drop(url)


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, db_path: Path) -> str:
    """The URL of a fresh, migrated store on each backend in turn."""
    if request.param == "sqlite-file":
        return f"sqlite://{db_path}"
    if request.param == "sqlite-memory":
        return ":memory:"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def any_store(backend_url: str) -> Iterator[hive_store.Store]:
    """An open store on each backend in turn (:data:`BACKENDS`), closed after the test."""
    with hive_store.open(backend_url) as s:
        yield s


@pytest.fixture(params=("sqlite-file", "postgresql"))
def isolated_url(request: pytest.FixtureRequest, db_path: Path) -> str:
    """The URL of a fresh store on each backend whose connections are isolated from each
    other (not an in-memory SQLite store, whose threads share one connection)."""
    if request.param == "sqlite-file":
        return f"sqlite://{db_path}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def isolated_store(isolated_url: str) -> Iterator[hive_store.Store]:
    """An open store on :func:`isolated_url`, closed after the test."""
    with hive_store.open(isolated_url) as s:
        yield s


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests import pg_support

    if pg_support.skipped_reason:
        terminalreporter.write_sep("!", "POSTGRESQL TESTS WERE SKIPPED", red=True, bold=True)
        terminalreporter.write_line(pg_support.skipped_reason[0])
        terminalreporter.write_line("(under CI=true, or with HIVE_STORE_REQUIRE_POSTGRES=1, "
                                    "they fail instead)")


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
    """hive-store's core plugins only: the SQLite and PostgreSQL backends, the migration
    runner and the health plugin, registered exactly as from their entry points (other
    plugins installed in the environment stay out), plus ``extra`` plugin objects."""
    import hive_store_health
    import hive_store_migrate
    import hive_store_postgres
    import hive_store_sqlite

    from hive_store.plugins import Plugins

    p = Plugins(entry_points=False)
    p.ensure_loaded()
    for name, module in (("sqlite", hive_store_sqlite), ("postgres", hive_store_postgres),
                         ("migrate", hive_store_migrate), ("health", hive_store_health)):
        p.register(module, name=name, distribution="hive-store", builtin=True)
    for i, obj in enumerate(extra):
        p.register(obj, name=f"test-extra-{i}")
    return p

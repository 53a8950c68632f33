"""Every hook spec is documented and exercised by a test (as datasette checks its hooks)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from hive_store import hookspecs

SPECS = sorted(name for name, fn in vars(hookspecs).items()
               if name.startswith("hive_store_") and inspect.isfunction(fn))
TESTS = Path(__file__).parent


def test_there_are_hook_specs() -> None:
    assert len(SPECS) >= 12


@pytest.mark.parametrize("name", SPECS)
def test_hook_is_documented(name: str) -> None:
    fn = getattr(hookspecs, name)
    doc = inspect.getdoc(fn) or ""
    assert len(doc.splitlines()[0]) > 10, f"{name} needs a summary line"
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc, f"{name}: document :param {param}:"
    contributing = (TESTS.parent / "CONTRIBUTING.md").read_text()
    assert "hookspecs.py" in contributing


@pytest.mark.parametrize("name", SPECS)
def test_hook_has_a_test(name: str) -> None:
    used = [p.name for p in TESTS.rglob("*.py")
            if p.name != Path(__file__).name and name in p.read_text(encoding="utf-8")]
    assert used, f"no test exercises {name}"

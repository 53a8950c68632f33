"""The docs tell the truth: every Python block of the README and ``docs/*.md`` runs as written
(each in a fresh process, working directory and ``HOME``), and the README stays a newcomer's
page. A block that cannot run here (it needs a service, or shows a placeholder) says so right
before it with ``<!-- not run: reason -->``; those are counted, so they cannot grow silently.
(The ``hive-store …`` lines of the docs: test_cli_grammar.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs_commands import DOCS, ROOT, Block, python_blocks

BLOCKS = python_blocks()
RUN = [b for b in BLOCKS if b.not_run is None]
NOT_RUN = [b for b in BLOCKS if b.not_run is not None]
NOT_RUN_EXPECTED = 0  # change it, and say why in the block's marker, when a block cannot run


def test_the_docs_have_python_blocks() -> None:
    assert len(RUN) >= 4, [b.where for b in BLOCKS]
    assert any(b.path.name == "README.md" for b in RUN)


def test_blocks_not_run_are_few_and_say_why() -> None:
    listing = "\n".join(f"{b.where}: {b.not_run}" for b in NOT_RUN)
    print(f"{len(NOT_RUN)} Python block(s) of the docs not run:\n{listing}")
    assert all(len(b.not_run or "") >= 10 for b in NOT_RUN), listing
    assert len(NOT_RUN) == NOT_RUN_EXPECTED, (
        f"{len(NOT_RUN)} blocks are marked not run, {NOT_RUN_EXPECTED} expected: make the new "
        f"one run, or raise NOT_RUN_EXPECTED in tests/test_docs.py:\n{listing}")


@pytest.mark.parametrize("block", RUN, ids=[b.where for b in RUN])
def test_python_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    script = work / "block.py"
    script.write_text(block.text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_STORE_")}
    env.update(HOME=str(home), HIVE_STORE_LOAD_PLUGINS="")
    proc = subprocess.run([sys.executable, str(script)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{block.where} failed:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr


def test_readme_is_a_newcomers_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    for heading in ("## A tour of the API", "## The command at a glance", "## Versions",
                    "## Guarantees in short"):
        assert heading in readme, heading
    assert "python3 -m venv .venv" in readme  # Debian's Python refuses pip outside a venv
    for path in DOCS[1:]:  # every page is linked from the README
        assert f"(docs/{path.name})" in readme, path.name

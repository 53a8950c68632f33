"""Many writers on one PostgreSQL store (issue 18, item 5), short: 8 processes x 4 threads
recording consensus runs and updating the same rows (tests/pg_soak.py; bench/pg_soak.py runs
it for 60 s and reports the figures). ``HIVE_STORE_SOAK_SECONDS`` lengthens it."""

from __future__ import annotations

import os

import pytest

from tests import pg_soak


@pytest.mark.slow
def test_eight_processes_of_four_threads_lose_nothing_and_never_show_part_of_a_run(
        pg_url: str) -> None:
    seconds = float(os.environ.get("HIVE_STORE_SOAK_SECONDS", "8"))
    figures = pg_soak.run(pg_url, processes=8, threads=4, seconds=seconds)
    assert figures["reporting_processes"] == 8
    assert figures["errors"] == []
    assert figures["partial_reads"] == []
    assert figures["runs_acknowledged"] > 0 and figures["reads"] > 0
    assert figures["runs_missing"] == 0 and figures["duplicates"] == 0
    assert figures["runs_stored"] == figures["runs_acknowledged"]
    assert figures["messages"] == figures["messages_expected"]
    assert figures["lost_increments"] == 0
    assert figures["increments_acknowledged"] == figures["counters_stored"]

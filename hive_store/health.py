"""Health checks: plugins register callables through ``hive_store_register_health_checks``.

A check is ``check(store) -> HealthResult`` (or a list of them). A check that raises is
reported as failed with its error; it never stops the other checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

import attrs

if TYPE_CHECKING:
    from hive_store.store import Store

Status = Literal["ok", "warn", "fail"]
_RANK = {"ok": 0, "warn": 1, "fail": 2}


@attrs.frozen(kw_only=True)
class HealthResult:
    """The outcome of one check."""

    name: str
    status: Status
    message: str
    details: dict[str, Any] = attrs.field(factory=dict)
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def worst(results: Iterable[HealthResult]) -> Status:
    """The worst status of ``results`` (``ok`` for none)."""
    status: Status = "ok"
    for r in results:
        if _RANK[r.status] > _RANK[status]:
            status = r.status
    return status


def run_checks(store: Store, checks: Iterable[Callable[..., Any]]) -> list[HealthResult]:
    """Run every check, timing each; errors become failed results."""
    results: list[HealthResult] = []
    for check in checks:
        name = getattr(check, "__name__", repr(check)).removeprefix("check_")
        start = time.perf_counter()
        try:
            outcome = check(store)
        except Exception as exc:
            results.append(HealthResult(name=name, status="fail",
                                        message=f"the check raised {type(exc).__name__}: {exc}",
                                        duration_ms=_ms(start)))
            continue
        items = [outcome] if isinstance(outcome, HealthResult) else list(outcome or [])
        elapsed = _ms(start)
        for item in items:
            if not isinstance(item, HealthResult):
                item = HealthResult(name=name, status="fail",
                                    message=f"the check returned {type(item).__name__}, "
                                            "not a HealthResult")
            results.append(attrs.evolve(item, duration_ms=item.duration_ms or elapsed))
    return results


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)

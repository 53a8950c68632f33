"""An in-process fake of D1's REST API for fast tests: stdlib ``sqlite3`` with D1's limits,
served as an httpx transport, with fault injection.

What it shares with D1 (the contract tests run the same checks against this fake and against
a real local D1, Miniflare's workerd, so it stays honest):

* the ``query`` and ``raw`` endpoints, single or ``batch`` bodies, Cloudflare's v4 envelope;
  a batch is one transaction (all or nothing); SQL errors are HTTP 400, code 7500, with D1's
  message shapes (``…: SQLITE_CONSTRAINT``, ``too many SQL variables …``, ``statement too long:
  SQLITE_TOOBIG``); bearer-token check; 404 for another database id;
* the limits, through ``Connection.setlimit``: 100 bound parameters, 100,000 bytes of SQL per
  statement, 2,000,000-byte values (real D1; the local workerd does not enforce it), 100
  columns, 32 function arguments, 50-byte LIKE patterns, no ATTACH;
* an authorizer: no ``BEGIN``/``SAVEPOINT``/``ATTACH``, no ``_cf_*`` tables, no
  ``sqlite_version()``, only D1's harmless pragmas; ``PRAGMA foreign_keys`` stays on (D1
  ignores turning it off); ``PRAGMA defer_foreign_keys`` works inside a batch;
* numbers travel as JavaScript doubles: an integer beyond 2^53 is rounded on the way in and out.

Faults (:class:`Fault`), queued with :meth:`FakeD1.inject` or drawn at random from
:attr:`FakeD1.chaos`: a status answer (429 with ``Retry-After``, 5xx, a 400 with a transient D1
message), a dropped connection or a timeout before or after the statements ran, and a
simulated crash of the caller right after D1 committed (:class:`SimulatedCrash`, raised into
the caller like a ``kill -9`` between the request and the local acknowledgement).
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import httpx

_ROUTE = re.compile(r"^/client/v4/accounts/([^/]+)/d1/database/([^/]+)/(query|raw)$")
_ALLOWED_PRAGMAS = {"defer_foreign_keys", "foreign_keys", "table_info", "table_xinfo",
                    "table_list", "index_list", "index_info", "foreign_key_list", "optimize"}
JS_SAFE = 2**53


class SimulatedCrash(BaseException):
    """The caller "died" after D1 committed and before it saw the answer (``kill -9``).

    A ``BaseException`` so that no ``except Exception`` in the mirror swallows it.
    """


@attrs.frozen
class Fault:
    """One injected failure.

    :ivar kind: ``status`` (answer ``status`` without running anything), ``drop`` (the
        connection breaks), ``timeout`` (no answer in time), ``transient`` (HTTP 400 with one of
        D1's transient messages, nothing ran) or ``crash`` (:class:`SimulatedCrash` after the
        statements committed)
    :ivar when: ``before`` or ``after`` the statements ran (drop and timeout)
    """

    kind: str
    status: int = 429
    retry_after: float | None = None
    when: str = "before"
    message: str | None = None


#: The random mix used by :meth:`FakeD1.chaos` (weights).
DEFAULT_MIX: tuple[tuple[Fault, int], ...] = (
    (Fault("status", 429, retry_after=0.0), 3),
    (Fault("status", 429, retry_after=2.0), 1),
    (Fault("status", 500), 2),
    (Fault("status", 503), 2),
    (Fault("transient", message="Network connection lost."), 1),
    (Fault("drop", when="before"), 2),
    (Fault("drop", when="after"), 2),
    (Fault("timeout", when="before"), 1),
    (Fault("timeout", when="after"), 2),
)


def _js_number(value: Any) -> Any:
    """What a JSON number becomes in JavaScript (a double)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > JS_SAFE:
        return int(float(value))
    return value


def _unhex(text: Any) -> bytes | None:
    try:
        return bytes.fromhex(str(text))
    except ValueError:
        return None


class FakeD1:
    """One fake D1 database. ``transport`` plugs it into httpx (and so into the mirror)."""

    #: faults injected by every fake of this process (for test reports)
    total_injected = 0

    def __init__(self, *, account_id: str = "acct", database_id: str = "db",
                 token: str | None = "token", seed: int | None = None) -> None:
        self.account_id = account_id
        self.database_id = database_id
        self.token = token
        self.conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        conn = self.conn
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 100_000)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 2_000_000)
        conn.setlimit(sqlite3.SQLITE_LIMIT_COLUMN, 100)
        conn.setlimit(sqlite3.SQLITE_LIMIT_FUNCTION_ARG, 32)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 50)
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.create_function("unhex", 1, _unhex, deterministic=True)
        self._internal = False
        conn.set_authorizer(self._authorize)
        self._lock = threading.Lock()
        self.faults: deque[Fault] = deque()
        self.rng = random.Random(seed)
        self.chaos_rate = 0.0
        self.chaos_mix: tuple[tuple[Fault, int], ...] = DEFAULT_MIX
        self.requests = 0
        self.injected: dict[str, int] = {}
        self.statements = 0

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def transport(self) -> httpx.MockTransport:
        """An httpx transport answering as this database."""
        return httpx.MockTransport(self.handle)

    def url(self) -> str:
        """The base URL to configure (any loopback URL works with :attr:`transport`)."""
        return "http://127.0.0.1:9/client/v4"

    def inject(self, *faults: Fault) -> None:
        """Queue faults, one per following API request."""
        self.faults.extend(faults)

    def chaos(self, rate: float, mix: Sequence[tuple[Fault, int]] | None = None) -> None:
        """Fail each later request with probability ``rate`` (a fault drawn from ``mix``)."""
        self.chaos_rate = rate
        if mix is not None:
            self.chaos_mix = tuple(mix)

    @property
    def injected_total(self) -> int:
        return sum(self.injected.values())

    def _authorize(self, action: int, arg1: str | None, arg2: str | None,
                   db: str | None, trigger: str | None) -> int:
        if self._internal:
            return sqlite3.SQLITE_OK
        if action in (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT,
                      sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            return sqlite3.SQLITE_DENY
        if action in (sqlite3.SQLITE_CREATE_TABLE, sqlite3.SQLITE_CREATE_INDEX,
                      sqlite3.SQLITE_CREATE_VIEW, sqlite3.SQLITE_CREATE_TRIGGER,
                      sqlite3.SQLITE_DROP_TABLE) and (arg1 or "").lower().startswith("_cf_"):
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() == "sqlite_version":
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_PRAGMA:
            name = (arg1 or "").lower()
            if name == "foreign_keys" and arg2 is not None:
                return sqlite3.SQLITE_IGNORE  # D1 keeps foreign keys on
            return sqlite3.SQLITE_OK if name in _ALLOWED_PRAGMAS else sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    # -- direct access for tests ----------------------------------------------------------------

    def rows(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read directly (no faults, no limits on the caller's side)."""
        with self._lock:
            self._internal = True
            try:
                return self.conn.execute(sql, tuple(params)).fetchall()
            finally:
                self._internal = False

    def execute(self, sql: str, params: Iterable[Any] = ()) -> None:
        """Run a statement directly (e.g. a remote-only trigger for a test)."""
        with self._lock:
            self.conn.execute(sql, tuple(params))

    # -- the API --------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one HTTP request like D1's REST API (faults first)."""
        match = _ROUTE.match(request.url.path)
        if not match:
            return self._fail(404, 7003, f"Could not route to {request.url.path}")
        with self._lock:
            self.requests += 1
            fault = self._next_fault()
            if fault is not None:
                self.injected[fault.kind] = self.injected.get(fault.kind, 0) + 1
                FakeD1.total_injected += 1
                early = self._fault_before(fault, request)
                if early is not None:
                    return early
            response = self._serve(request, match)
            if fault is not None:
                self._fault_after(fault, request)
            return response

    def _next_fault(self) -> Fault | None:
        if self.faults:
            return self.faults.popleft()
        if self.chaos_rate and self.rng.random() < self.chaos_rate:
            faults = [f for f, _ in self.chaos_mix]
            weights = [w for _, w in self.chaos_mix]
            chosen: Fault = self.rng.choices(faults, weights)[0]
            return chosen
        return None

    def _fault_before(self, fault: Fault, request: httpx.Request) -> httpx.Response | None:
        if fault.kind == "status":
            code = 971 if fault.status == 429 else 7500
            message = fault.message or ("Please wait and consider throttling your request speed"
                                        if fault.status == 429 else "Internal error")
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            return httpx.Response(fault.status, headers=headers, json={
                "result": None, "success": False, "errors": [{"code": code, "message": message}],
                "messages": []})
        if fault.kind == "transient":
            return self._fail(400, 7500, fault.message or "Network connection lost.")
        if fault.when == "before":
            if fault.kind == "drop":
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.",
                                                request=request)
            if fault.kind == "timeout":
                raise httpx.ReadTimeout("timed out", request=request)
        return None

    def _fault_after(self, fault: Fault, request: httpx.Request) -> None:
        if fault.kind == "crash":
            raise SimulatedCrash("the caller was killed after D1 committed")
        if fault.when == "after":
            if fault.kind == "drop":
                raise httpx.ReadError("connection reset by peer", request=request)
            if fault.kind == "timeout":
                raise httpx.ReadTimeout("timed out", request=request)

    @staticmethod
    def _fail(status: int, code: int, message: str) -> httpx.Response:
        return httpx.Response(status, json={"result": None, "success": False,
                                            "errors": [{"code": code, "message": message}],
                                            "messages": []})

    def _serve(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        if request.method != "POST":
            return self._fail(405, 10000, "Method not allowed")
        if self.token is not None and request.headers.get("authorization") != \
                f"Bearer {self.token}":
            return self._fail(401, 10000, "Authentication error")
        if match.group(1) != self.account_id or match.group(2) != self.database_id:
            return self._fail(404, 7404, f"The database {match.group(2)} could not be found")
        try:
            body = json.loads(request.content)
        except ValueError:
            return self._fail(400, 7400, "The request is malformed: invalid JSON")
        items = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(items, list):
            items = [body]
        statements: list[tuple[str, list[Any]]] = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("sql"), str):
                return self._fail(400, 7400, "The request is malformed: sql must be a string")
            params = item.get("params") or []
            if not isinstance(params, list):
                return self._fail(400, 7400, "The request is malformed: params must be a list")
            parts = _split(item["sql"])
            if len(parts) > 1 and params:
                return self._fail(400, 7500, "params not supported with multiple statements")
            statements.extend((p, [_js_number(v) for v in params]) for p in parts)
        if not statements:
            return self._fail(400, 7500, "No SQL statements detected.")
        raw = match.group(3) == "raw"
        try:
            results = self._run(statements)
        except sqlite3.Error as exc:
            return self._fail(400, 7500, _d1_message(exc))
        except (OverflowError, ValueError) as exc:
            return self._fail(400, 7500, f"{exc}: SQLITE_ERROR")
        self.statements += len(statements)
        return httpx.Response(200, json={
            "result": [_shape(cols, rows, changes, raw) for cols, rows, changes in results],
            "success": True, "errors": [], "messages": []})

    def _run(self, statements: list[tuple[str, list[Any]]]
             ) -> list[tuple[list[str], list[tuple[Any, ...]], int]]:
        conn = self.conn
        out = []
        self._internal = True
        conn.execute("BEGIN")
        self._internal = False
        try:
            for sql, params in statements:
                before = conn.total_changes
                cur = conn.execute(sql, params)
                cols = [d[0] for d in cur.description] if cur.description else []
                rows = cur.fetchall() if cur.description else []
                out.append((cols, rows, conn.total_changes - before))
            self._internal = True
            conn.execute("COMMIT")
        except BaseException:
            self._internal = True
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            self._internal = False
        return out

    def reset(self) -> None:
        """Drop every table, view and trigger; clear faults and counters."""
        with self._lock:
            self._internal = True
            try:
                names = self.conn.execute(
                    "SELECT type, name FROM sqlite_master WHERE type IN ('table','view','trigger')"
                    " AND name NOT LIKE 'sqlite_%'").fetchall()
                order = {"trigger": 0, "view": 1, "table": 2}
                self.conn.execute("PRAGMA foreign_keys = OFF")
                for kind, name in sorted(names, key=lambda r: order[r[0]]):
                    self.conn.execute(f'DROP {kind.upper()} IF EXISTS "{name}"')
                self.conn.execute("PRAGMA foreign_keys = ON")
            finally:
                self._internal = False
            self.faults.clear()
            self.requests = 0
            self.injected.clear()


def _js_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return list(value)
    return _js_number(value)


def _shape(cols: list[str], rows: list[tuple[Any, ...]], changes: int, raw: bool) -> Any:
    meta = {"changes": changes, "duration": 0, "served_by": "hive_store_d1.fake",
            "rows_read": len(rows), "rows_written": changes, "changed_db": changes > 0}
    values = [[_js_value(v) for v in row] for row in rows]
    if raw:
        return {"results": {"columns": cols, "rows": values}, "success": True, "meta": meta}
    return {"results": [dict(zip(cols, row, strict=False)) for row in values], "success": True,
            "meta": meta}


def _d1_message(exc: sqlite3.Error) -> str:
    """D1's shape of an engine error message."""
    msg = str(exc)
    low = msg.lower()
    if "query string is too large" in low or (
            isinstance(exc, sqlite3.DataError) and "too large" in low):
        return "statement too long: SQLITE_TOOBIG"
    name = getattr(exc, "sqlite_errorname", None) or "SQLITE_ERROR"
    if isinstance(exc, sqlite3.IntegrityError):
        base = name.split("_")[0] + "_" + name.split("_")[1] if name.count("_") >= 2 else name
        return f"{msg}: {base} (extended: {name})" if base != name else f"{msg}: {name}"
    return f"{msg}: {name}"


def _split(sql: str) -> list[str]:
    """Split on top-level semicolons (triggers' BEGIN … END kept whole)."""
    out: list[str] = []
    start = 0
    for m in re.finditer(";", sql):
        piece = sql[start:m.end()]
        if sqlite3.complete_statement(piece):
            if piece.strip(" \t\r\n;"):
                out.append(piece.strip().rstrip(";").strip())
            start = m.end()
    tail = sql[start:].strip()
    if tail:
        out.append(tail)
    return [s for s in out if re.sub(r"--[^\n]*|/\*.*?\*/", "", s, flags=re.S).strip()]

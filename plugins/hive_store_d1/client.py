"""A small client of the D1 REST API (``query`` and ``raw``, batch bodies) over httpx.

We own the retries (the official SDK retries every POST by itself, so a write can run twice
without the caller knowing); every write the mirror sends is idempotent, so a retry after a
lost answer changes nothing.

What is retried, with exponential backoff and full jitter:

* network errors: connection refused or reset, timeouts, a connection dropped mid-answer;
* HTTP 429: waits at least ``Retry-After`` and remembers it for every later request of the
  client (Cloudflare blocks a token for up to five minutes after a burst); a ``Retry-After``
  longer than ``max_retry_after`` ends the call with :class:`D1RateLimited` at once;
* HTTP 5xx, an answer that is not D1's JSON envelope;
* D1's transient errors (``Network connection lost``, ``… storage caused object to be reset``,
  ``D1 DB reset because its code was updated``, ``Cannot resolve D1 DB due to transient
  issue``, ``D1 DB is overloaded``, a bare ``internal error``), even with status 400.

What is not: 401/403 (:class:`D1AuthError`), 404 (:class:`D1NotFound`), quota exhaustion
(:class:`D1QuotaExceeded`), schema errors (:class:`D1SchemaError`: no such table/column —
the mirror re-creates the remote schema), and any other SQL error (:class:`D1StatementError`:
the request's statements were refused; the mirror finds the refused row by bisection and moves
it to the dead-letter table). When the attempts run out the call raises
:class:`D1Unavailable`; nothing is lost, the outbox keeps the rows.

No message, log line or exception contains the token.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from hive_store.errors import ConfigurationError, HiveStoreError
from hive_store_d1.config import D1Config

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("hive_store.d1")


class D1Error(HiveStoreError):
    """A D1 request failed. ``status`` is the HTTP status (``None`` for a network error) and
    ``code`` D1's error code (7500 for SQL errors)."""

    def __init__(self, message: str, *, status: int | None = None,
                 code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class D1Unavailable(D1Error):
    """D1 did not answer usefully within the retry budget (network, 429, 5xx, transient)."""


class D1RateLimited(D1Unavailable):
    """D1 (Cloudflare's API) asked to wait longer than ``max_retry_after``."""


class D1AuthError(D1Error):
    """The token was refused (HTTP 401/403): wrong token, or it lacks the D1 Edit permission."""


class D1NotFound(D1Error):
    """The account or database does not exist (HTTP 404)."""


class D1QuotaExceeded(D1Error):
    """The account's D1 quota is used up (e.g. the free tier's daily rows written)."""


class D1StatementError(D1Error):
    """D1 refused the request's SQL (a constraint, a too-big value, a trigger's RAISE …)."""


class D1SchemaError(D1Error):
    """A remote table or column is missing (the remote schema was dropped or is older)."""


_TRANSIENT = re.compile(
    r"network connection lost|storage caused object to be reset"
    r"|reset because its code was updated|cannot resolve d1 db due to transient issue"
    r"|d1 db is overloaded|too many requests queued|^internal error\b",
    re.I,
)
_SCHEMA = re.compile(r"no such table|no such column|has no column named", re.I)
_QUOTA = re.compile(r"exceeded .*(limit|quota)|quota exceeded", re.I)
# Errors that are ours (the SQL we built), never a property of one row: stop, do not bisect.
_FATAL_SQL = re.compile(
    r"syntax error|too many sql variables|statement too long|query string is too large"
    r"|not authorized|variable number must be|no sql statements|malformed", re.I)


@attrs.frozen
class Statement:
    """One SQL statement and its bound parameters."""

    sql: str
    params: tuple[Any, ...] | list[Any] = ()

    def body(self) -> dict[str, Any]:
        return {"sql": self.sql, "params": list(self.params)} if self.params else {"sql": self.sql}


@attrs.define
class ClientStats:
    """Counters of one client (for reports and the benchmark)."""

    requests: int = 0
    attempts: int = 0
    retries: int = 0
    bytes_sent: int = 0
    statements: int = 0
    slept: float = 0.0
    failures: dict[str, int] = attrs.field(factory=dict)

    def count(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1


class _Retry(Exception):
    """An attempt failed in a way worth retrying."""

    def __init__(self, kind: str, message: str, *, status: int | None = None,
                 code: int | None = None, wait: float = 0.0) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.code = code
        self.wait = wait


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _errors(data: Any) -> tuple[int | None, str]:
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        code = first.get("code")
        return (code if isinstance(code, int) else None), str(first.get("message", ""))[:2000]
    return None, ""


class D1Client:
    """Sends statement batches to one D1 database and returns each statement's rows.

    :param config: the database, token, timeouts and retry budget
    :param transport: an httpx transport (tests pass the in-process fake's)
    :param sleep: how to wait between attempts (tests pass a recorder)
    :param rng: randomness for the jitter
    """

    def __init__(self, config: D1Config, *, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._monotonic = monotonic
        self._blocked_until = 0.0
        self.stats = ClientStats()
        try:
            import httpx
        except ImportError:
            raise ConfigurationError(
                "D1 mirroring needs httpx: pip install 'hive-store[d1]'") from None
        self._httpx = httpx
        timeout = httpx.Timeout(config.timeout, connect=min(10.0, config.timeout))
        self._http = httpx.Client(
            base_url=config.url.rstrip("/"), timeout=timeout, transport=transport,
            headers={"Content-Type": "application/json", "Accept": "application/json",
                     "User-Agent": "hive-store-d1"},
            follow_redirects=False, trust_env=transport is None,
        )

    def __repr__(self) -> str:
        return (f"<D1Client {self.config.url} account={self.config.account_id} "
                f"database={self.config.database_id}>")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> D1Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests --------------------------------------------------------------------------

    def batch(self, statements: Sequence[Statement], *, raw: bool = False) -> list[Any]:
        """Run ``statements`` as one D1 batch (one transaction) and return, per statement, its
        rows: a list of dicts, or with ``raw`` a ``(columns, rows)`` pair of lists."""
        if not statements:
            return []
        body: dict[str, Any] = (statements[0].body() if len(statements) == 1
                                else {"batch": [s.body() for s in statements]})
        try:
            payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False,
                                 allow_nan=False).encode("utf-8")
        except ValueError as exc:  # NaN/inf: not JSON
            raise D1StatementError(f"a value cannot be sent as JSON ({exc})") from None
        path = f"{self.config.endpoint}/{'raw' if raw else 'query'}"
        result = self._send(path, payload)
        self.stats.statements += len(statements)
        if len(result) != len(statements):
            raise D1Error(f"D1 answered {len(result)} results for {len(statements)} statements")
        out: list[Any] = []
        for item in result:
            rows = item.get("results") if isinstance(item, dict) else None
            if raw:
                cols = rows.get("columns", []) if isinstance(rows, dict) else []
                out.append((list(cols), list(rows.get("rows", [])) if isinstance(rows, dict)
                            else []))
            else:
                out.append(rows if isinstance(rows, list) else [])
        return out

    def query(self, sql: str, params: Sequence[Any] = (), *, raw: bool = False) -> Any:
        """One statement's rows."""
        return self.batch([Statement(sql, tuple(params))], raw=raw)[0]

    def _send(self, path: str, payload: bytes) -> list[Any]:
        cfg = self.config
        self.stats.requests += 1
        self.stats.bytes_sent += len(payload)
        last: _Retry | None = None
        for attempt in range(1, cfg.max_attempts + 1):
            wait = self._blocked_until - self._monotonic()
            if wait > 0:
                self._pause(wait)
            self.stats.attempts += 1
            try:
                return self._attempt(path, payload)
            except _Retry as exc:
                last = exc
                self.stats.count(exc.kind)
                if attempt == cfg.max_attempts:
                    break
                if exc.wait > cfg.max_retry_after:
                    raise D1RateLimited(
                        f"D1 rate-limited this token for {exc.wait:.0f} s (more than "
                        f"max_retry_after={cfg.max_retry_after:g} s); nothing was lost, "
                        "push again later", status=exc.status, code=exc.code) from None
                backoff = self._rng.uniform(
                    0, min(cfg.backoff_cap, cfg.backoff_base * 2 ** (attempt - 1)))
                delay = max(exc.wait + self._rng.uniform(0, cfg.backoff_base), backoff) \
                    if exc.kind == "429" else backoff
                if exc.kind == "429":
                    self._blocked_until = self._monotonic() + exc.wait
                self.stats.retries += 1
                log.warning("D1 request failed (%s: %s); retry %d/%d in %.2f s", exc.kind,
                            exc, attempt, cfg.max_attempts - 1, delay)
                self._pause(delay)
        assert last is not None
        cls = D1RateLimited if last.kind == "429" else D1Unavailable
        raise cls(f"D1 did not answer after {cfg.max_attempts} attempts (last: {last.kind}: "
                  f"{last}); nothing was lost, push again later",
                  status=last.status, code=last.code)

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self.stats.slept += seconds
            self._sleep(seconds)

    def _attempt(self, path: str, payload: bytes) -> list[Any]:
        token = self.config.token.reveal()
        httpx = self._httpx
        try:
            resp = self._http.post(path, content=payload,
                                   headers={"Authorization": "Bearer " + token})
        except httpx.TimeoutException as exc:
            raise _Retry("timeout", type(exc).__name__) from None
        except httpx.TransportError as exc:
            raise _Retry("network", f"{type(exc).__name__}: {str(exc)[:200]}") from None
        status = resp.status_code
        try:
            data = resp.json()
        except ValueError:
            data = None
        code, message = _errors(data)
        if status == 429:
            wait = parse_retry_after(resp.headers.get("retry-after"))
            raise _Retry("429", message or "rate limited", status=status, code=code,
                         wait=wait if wait is not None else 0.0)
        if status >= 500:
            raise _Retry("5xx", f"HTTP {status} {message}".strip(), status=status, code=code)
        if status in (401, 403):
            raise D1AuthError(
                f"D1 refused the API token (HTTP {status}{': ' + message if message else ''}); "
                "check it and that it has the D1 Edit permission", status=status, code=code)
        if status == 404:
            raise D1NotFound(
                f"D1 database {self.config.database_id} of account {self.config.account_id} "
                f"not found (HTTP 404{': ' + message if message else ''})",
                status=status, code=code)
        if not isinstance(data, dict):
            raise _Retry("bad-answer", f"HTTP {status}, not D1's JSON envelope", status=status)
        result = data.get("result")
        if status == 200 and data.get("success") is True and isinstance(result, list):
            return result
        if message and _TRANSIENT.search(message) and "constraint" not in message.lower():
            raise _Retry("transient", message, status=status, code=code)
        if message and _QUOTA.search(message):
            raise D1QuotaExceeded(f"D1 quota exceeded: {message}", status=status, code=code)
        if message and _SCHEMA.search(message):
            raise D1SchemaError(f"D1 schema error: {message}", status=status, code=code)
        if status in (400, 422) or (status == 200 and data.get("success") is False):
            if message and _FATAL_SQL.search(message):
                raise D1Error(f"D1 refused the SQL hive_store_d1 built: {message}",
                              status=status, code=code)
            raise D1StatementError(message or f"HTTP {status}", status=status, code=code)
        if status == 200:
            raise _Retry("bad-answer", "HTTP 200 without results", status=status)
        raise D1Error(f"D1 answered HTTP {status}{': ' + message if message else ''}",
                      status=status, code=code)

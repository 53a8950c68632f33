"""Options of :func:`hive_store.open` for ``postgresql://`` URLs, and the connection string.

A URL's query mixes two kinds of parameters: libpq's (``host``, ``port``, ``sslmode``,
``options`` …, passed to libpq as they are) and hive-store's own (:class:`PostgresOptions`,
also accepted as keyword options of :func:`hive_store.open`). A parameter that is neither is a
:class:`hive_store.ConfigurationError`. The password (in the URL, in ``?password=`` or from
libpq's own sources: ``PGPASSWORD``, ``~/.pgpass``) only ever reaches libpq: no message, repr
or log line built here contains it.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import attrs

from hive_store.errors import ConfigurationError
from hive_store.url import StoreURL

ISOLATION_LEVELS = {"serializable": "SERIALIZABLE", "repeatable_read": "REPEATABLE READ",
                    "read_committed": "READ COMMITTED"}


def _seconds(name: str, value: Any, *, allow_none: bool, allow_zero: bool = False) -> None:
    if value is None and allow_none:
        return
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            or value < 0 or (value == 0 and not allow_zero) or value > 366 * 86400):
        none = ", or None" if allow_none else ""
        raise ConfigurationError(f"{name} must be a number of seconds > 0 (at most a year){none}")


@attrs.frozen
class PostgresOptions:
    """Options of a PostgreSQL store.

    :ivar max_size: connections open at most (the pool's ``max_size``)
    :ivar min_idle: connections kept open when idle (the pool's ``min_size``)
    :ivar connection_timeout: seconds a caller waits for a pooled connection before
        :class:`hive_store.PoolTimeout` (as for SQLite)
    :ivar idle_timeout: seconds an idle connection above ``min_idle`` stays open
    :ivar max_lifetime: seconds after which a connection is replaced (``None``: an hour)
    :ivar test_on_checkout: check each connection with a round trip before handing it out
        (finds connections a server restart or a proxy dropped; costs a round trip per use)
    :ivar connect_timeout: seconds to wait for the server when connecting
    :ivar statement_timeout: seconds a statement may run before the server cancels it
        (``None``: the server's setting)
    :ivar lock_timeout: seconds a statement waits for a row or table lock before giving up
        with :class:`hive_store.DatabaseLocked` (``None``: the server's setting)
    :ivar isolation: the isolation level of ``transaction()`` blocks and
        ``run_transaction()``: ``"repeatable_read"`` (the default: one snapshot for the whole
        block, and a block that updates or deletes a row another transaction changed since
        its snapshot is rolled back with :class:`hive_store.TransactionConflict` instead of
        losing that change), ``"serializable"`` (also refuses write skew, at the price of
        conflicts between blocks that only insert: PostgreSQL tracks reads by index page) or
        ``"read_committed"`` (each statement sees the latest commits; a read-modify-write can
        lose a concurrent update)
    :ivar retries: how many times at most an operation hive-store can safely run again (a
        single write, ``update``, ``add_many``, ``record_consensus``, ``run_transaction``) is
        retried after a serialization failure or a deadlock ...
    :ivar retry_timeout: ... and for how many seconds at most (the counterpart of SQLite's
        ``busy_timeout``: writers that collide take turns instead of failing), with a random
        pause growing from 1 ms to 0.2 s between attempts
    :ivar application_name: shown in ``pg_stat_activity``
    :ivar read_only: refuse every write (``default_transaction_read_only`` on every
        connection too)
    """

    max_size: int = 10
    min_idle: int = 1
    connection_timeout: float = 30.0
    idle_timeout: float | None = 600.0
    max_lifetime: float | None = None
    test_on_checkout: bool = False
    connect_timeout: float = 10.0
    statement_timeout: float | None = None
    lock_timeout: float | None = None
    isolation: str = "repeatable_read"
    retries: int = 1000
    retry_timeout: float = 30.0
    application_name: str = "hive-store"
    read_only: bool = False

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.max_size, int) or isinstance(self.max_size, bool) or not (
                1 <= self.max_size <= 10_000):
            raise ConfigurationError("max_size must be an integer from 1 to 10000")
        if not isinstance(self.min_idle, int) or isinstance(self.min_idle, bool) or not (
                0 <= self.min_idle <= self.max_size):
            raise ConfigurationError("min_idle must be an integer between 0 and max_size")
        _seconds("connection_timeout", self.connection_timeout, allow_none=False)
        _seconds("connect_timeout", self.connect_timeout, allow_none=False)
        for name in ("idle_timeout", "max_lifetime", "statement_timeout", "lock_timeout"):
            _seconds(name, getattr(self, name), allow_none=True)
        if self.isolation not in ISOLATION_LEVELS:
            raise ConfigurationError(
                f"isolation must be one of {', '.join(ISOLATION_LEVELS)}")
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or not (
                0 <= self.retries <= 1_000_000):
            raise ConfigurationError("retries must be an integer from 0 to 1000000")
        _seconds("retry_timeout", self.retry_timeout, allow_none=False, allow_zero=True)
        if not isinstance(self.application_name, str) or not self.application_name.isprintable():
            raise ConfigurationError("application_name must be printable text")
        for name in ("test_on_checkout", "read_only"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(f"{name} must be true or false")


_FIELDS = {f.name: f for f in attrs.fields(PostgresOptions)}
_SECRET_KEYS = frozenset({"password", "sslpassword"})


def libpq_keywords() -> frozenset[str]:
    """Every connection parameter the installed libpq knows."""
    from psycopg import pq

    return frozenset(d.keyword.decode() for d in pq.Conninfo.get_defaults())


def _coerce(key: str, value: Any) -> Any:
    """A URL query value (text) in the type of the option's default."""
    if not isinstance(value, str):
        return value
    default = _FIELDS[key].default
    if key in ("isolation", "application_name"):
        return value
    if value.lower() in ("none", "null", ""):
        return None
    if isinstance(default, bool):
        if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ConfigurationError(f"option {key} takes true or false")
        return value.lower() in ("1", "true", "yes", "on")
    try:
        if isinstance(default, int) and not isinstance(default, bool):
            return int(value)
        return float(value)
    except ValueError:
        raise ConfigurationError(f"option {key} is not a number") from None


def mask(message: str) -> str:
    """A libpq message with every quoted fragment masked (they may quote a password)."""
    return re.sub(r'"[^"]*"', '"…"', message).strip().splitlines()[0] if message.strip() else ""


def parse(url: StoreURL, options: dict[str, Any]) -> tuple[PostgresOptions, dict[str, str]]:
    """Our options and libpq's parameters (the password among them, if any) from a store URL
    and keyword options."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    raw = url.raw or str(url)
    parts = urlsplit(raw)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in pairs if k in _FIELDS}
    known = libpq_keywords()
    for key, _ in pairs:
        if key not in _FIELDS and key not in known:
            raise ConfigurationError(
                f"unknown parameter {key[:40]!r} in the PostgreSQL URL (hive-store's: "
                f"{', '.join(sorted(_FIELDS))}; or a libpq connection parameter)")
    libpq_query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}"
                           for k, v in pairs if k not in _FIELDS)
    scheme = "postgresql" if parts.scheme.lower() in ("postgresql", "postgres") else parts.scheme
    # by hand: urlunsplit drops the "//" of an empty host ("postgresql:///db" is a URL)
    libpq_url = f"{scheme}://{parts.netloc}{parts.path}" + (f"?{libpq_query}" if libpq_query
                                                             else "")
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(libpq_url).items() if v is not None}
    except ProgrammingError as exc:
        raise ConfigurationError(f"the PostgreSQL URL is not valid: {mask(str(exc))}") from None
    merged: dict[str, Any] = {**ours, **options}
    kwargs: dict[str, Any] = {}
    for key, value in merged.items():
        if key not in _FIELDS:
            raise ConfigurationError(f"unknown postgresql option {key!r} (known: "
                                     f"{', '.join(sorted(_FIELDS))})")
        kwargs[key] = _coerce(key, value)
    return PostgresOptions(**kwargs), params


def conninfo(params: dict[str, str], opts: PostgresOptions) -> str:
    """The libpq connection string: the URL's parameters plus our session settings (UTC, the
    timeouts, read-only) in ``options``, so that a new connection needs no extra round trip."""
    from psycopg.conninfo import make_conninfo

    settings = ["-c TimeZone=UTC"]
    if opts.statement_timeout is not None:
        settings.append(f"-c statement_timeout={max(1, round(opts.statement_timeout * 1000))}")
    if opts.lock_timeout is not None:
        settings.append(f"-c lock_timeout={max(1, round(opts.lock_timeout * 1000))}")
    if opts.read_only:
        settings.append("-c default_transaction_read_only=on")
    given = params.get("options", "").strip()
    kw = dict(params)
    kw["options"] = " ".join([*settings, *([given] if given else [])])
    kw.setdefault("connect_timeout", str(max(1, math.ceil(opts.connect_timeout))))
    kw.setdefault("application_name", opts.application_name)
    return make_conninfo("", **kw)


def describe(params: dict[str, str]) -> dict[str, str]:
    """The connection parameters safe to show (no password)."""
    return {k: v for k, v in params.items() if k not in _SECRET_KEYS}

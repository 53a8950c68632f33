"""Configuration of the D1 mirror: which D1 database, which token, what to mirror.

Nothing here is ever stored in the database. The settings come from the environment (read
when a store opens), from a TOML file named by ``HIVE_STORE_D1_CONFIG``, or from a
:class:`D1Config` given to :func:`hive_store_d1.enable`. The environment wins over the file.

================================  ==============================================================
``HIVE_STORE_D1_ACCOUNT_ID``      the Cloudflare account id (required)
``HIVE_STORE_D1_DATABASE_ID``     the D1 database id, a UUID (required)
``HIVE_STORE_D1_TOKEN``           the API token (D1 Edit permission), or
``HIVE_STORE_D1_TOKEN_FILE``      a file holding it (e.g. a secrets mount); one of them required
``HIVE_STORE_D1_URL``             API base URL (default ``https://api.cloudflare.com/client/v4``;
                                  plain ``http`` only for 127.0.0.1/localhost, e.g. a local D1)
``HIVE_STORE_D1_TABLES``          comma-separated tables to mirror (default: the core Hive
                                  tables except ``configurations`` and ``licenses``, which hold
                                  API and license keys)
``HIVE_STORE_D1_PULL``            ``1`` to also pull other devices' writes (default off)
``HIVE_STORE_D1_DEVICE_ID``       this device's id in row clocks (default: random, kept in the DB)
``HIVE_STORE_D1_CONFIG``          a TOML file with the same settings in lower case, without the
                                  prefix (``account_id = "…"``, ``token_file = "…"``, ``pull =
                                  true``); it may not hold the token itself
================================  ==============================================================

Tuning (same names, rarely needed): ``ROWS_PER_REQUEST`` (1000), ``STATEMENTS_PER_REQUEST``
(200), ``BYTES_PER_REQUEST`` (2000000), ``PULL_PAGE`` (1000), ``TIMEOUT`` (25 s per call, D1
cuts calls at 30 s), ``MAX_ATTEMPTS`` (8), ``BACKOFF_BASE`` (0.5 s), ``BACKOFF_CAP`` (30 s),
``MAX_RETRY_AFTER`` (300 s: a longer 429 ends the push; the outbox keeps the rows).

The token is held in a :class:`Secret`: its ``repr``/``str`` are redacted, it cannot be pickled,
and no message, log line or exception of this plugin contains it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, NoReturn
from urllib.parse import urlsplit

import attrs

from hive_store.errors import ConfigurationError

ENV_PREFIX = "HIVE_STORE_D1_"
DEFAULT_URL = "https://api.cloudflare.com/client/v4"

#: Core tables left out by default: ``configurations`` holds the OpenRouter API key and
#: ``licenses`` license keys. Name them in ``HIVE_STORE_D1_TABLES`` to mirror them anyway.
SECRET_TABLES = ("configurations", "licenses")

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_DEVICE = re.compile(r"^[A-Za-z0-9_.]{1,64}$")
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


class Secret:
    """A credential that does not show itself.

    ``repr()`` and ``str()`` give ``'********'``; :meth:`reveal` gives the value (only for the
    ``Authorization`` header). It cannot be pickled or copied into a message by accident.
    """

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "") -> None:
        if not isinstance(value, str):
            raise TypeError("a Secret holds text")
        self._value = value
        #: where it came from (an env var name or a file path), safe to show
        self.source = source

    def reveal(self) -> str:
        """The secret value."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", hashlib.sha256(self._value.encode()).digest()))

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")


def _positive_int(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"D1 setting {name} must be an integer, got {value!r:.40}") from None
    if number < 1:
        raise ConfigurationError(f"D1 setting {name} must be >= 1")
    return number


def _positive_float(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"D1 setting {name} must be a number, got {value!r:.40}") from None
    if not number > 0:
        raise ConfigurationError(f"D1 setting {name} must be > 0")
    return number


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigurationError(f"D1 setting {name} must be true or false, got {value!r:.40}")


def _tables(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(str(i).strip() for i in items if str(i).strip()))
    return names or None


@attrs.frozen(kw_only=True)
class D1Config:
    """Where the mirror is and how it behaves (see the module docstring)."""

    account_id: str
    database_id: str
    token: Secret = attrs.field(repr=False)
    url: str = DEFAULT_URL
    tables: tuple[str, ...] | None = attrs.field(default=None, converter=_tables)
    pull: bool = False
    device_id: str | None = None
    rows_per_request: int = 1000
    statements_per_request: int = 200
    bytes_per_request: int = 2_000_000
    pull_page: int = 1000
    timeout: float = 25.0
    max_attempts: int = 8
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_retry_after: float = 300.0

    def __attrs_post_init__(self) -> None:
        for name in ("account_id", "database_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _ID.match(value):
                raise ConfigurationError(
                    f"D1 setting {name} must be 1-64 letters, digits, '-' or '_' "
                    f"(got {str(value)[:40]!r})")
        if not isinstance(self.token, Secret):
            raise ConfigurationError("the D1 token must be given as a hive_store_d1.Secret")
        token = self.token.reveal()
        if not token or any(ch.isspace() for ch in token):
            where = f" (from {self.token.source})" if self.token.source else ""
            raise ConfigurationError(f"the D1 API token is empty or contains whitespace{where}")
        parts = urlsplit(self.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigurationError(f"D1 setting url must be an http(s) URL, got {self.url!r}")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            raise ConfigurationError(
                "D1 setting url: plain http is only allowed for 127.0.0.1/localhost "
                "(the token must not cross a network in clear text)")
        if self.device_id is not None and not _DEVICE.match(self.device_id):
            raise ConfigurationError(
                "D1 setting device_id must be 1-64 letters, digits, '_' or '.'")
        for name in ("rows_per_request", "statements_per_request", "bytes_per_request",
                     "pull_page", "max_attempts"):
            _positive_int(name, getattr(self, name))
        for name in ("timeout", "backoff_base", "backoff_cap", "max_retry_after"):
            _positive_float(name, getattr(self, name))
        if self.statements_per_request < 2:
            raise ConfigurationError("D1 setting statements_per_request must be >= 2")

    @property
    def target(self) -> str:
        """A short fingerprint of (url, account, database): local state is kept per target."""
        text = f"{self.url.rstrip('/')}|{self.account_id}|{self.database_id}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def endpoint(self) -> str:
        """The database's API path below the base URL."""
        return f"/accounts/{self.account_id}/d1/database/{self.database_id}"

    def describe(self) -> dict[str, Any]:
        """Facts safe to show (no token)."""
        return {
            "account_id": self.account_id, "database_id": self.database_id, "url": self.url,
            "token": f"set (from {self.token.source})" if self.token.source else "set",
            "pull": self.pull, "tables": list(self.tables) if self.tables else "default",
        }

    # -- loading ------------------------------------------------------------------------------

    _FIELDS: ClassVar[tuple[str, ...]] = (
        "account_id", "database_id", "url", "tables", "pull", "device_id",
        "rows_per_request", "statements_per_request", "bytes_per_request", "pull_page",
        "timeout", "max_attempts", "backoff_base", "backoff_cap", "max_retry_after",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> D1Config | None:
        """The configuration from ``HIVE_STORE_D1_*`` (and the file they name), or ``None``
        when D1 mirroring is not configured at all. A half-done configuration is a
        :class:`hive_store.ConfigurationError` naming what is missing."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        token_file: str | None = None
        token_source = ""
        config_file = env.get(ENV_PREFIX + "CONFIG", "").strip()
        if config_file:
            values, token_file = _read_file(Path(config_file).expanduser())
            token_source = f"token_file in {config_file}"
        for name in cls._FIELDS:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw.strip() != "":
                values[name] = raw.strip()
        token: Secret | None = None
        if env.get(ENV_PREFIX + "TOKEN", "").strip():
            token = Secret(env[ENV_PREFIX + "TOKEN"].strip(), ENV_PREFIX + "TOKEN")
        else:
            if env.get(ENV_PREFIX + "TOKEN_FILE", "").strip():
                token_file = env[ENV_PREFIX + "TOKEN_FILE"].strip()
                token_source = ENV_PREFIX + "TOKEN_FILE"
            if token_file:
                token = read_token_file(Path(token_file).expanduser(), token_source)
        required = {"account_id": values.get("account_id"),
                    "database_id": values.get("database_id"), "token": token}
        if not any(required.values()) and not config_file:
            return None
        missing = [ENV_PREFIX + k.upper() + ("[_FILE]" if k == "token" else "")
                   for k, v in required.items() if not v]
        if missing:
            raise ConfigurationError(
                "D1 mirroring is half configured: missing " + ", ".join(missing))
        assert token is not None
        return cls.build(values, token)

    @classmethod
    def build(cls, values: Mapping[str, Any], token: Secret) -> D1Config:
        """A configuration from loose values (text from the environment, TOML values)."""
        kw: dict[str, Any] = {"token": token}
        for name, value in values.items():
            if name in ("rows_per_request", "statements_per_request", "bytes_per_request",
                        "pull_page", "max_attempts"):
                kw[name] = _positive_int(name, value)
            elif name in ("timeout", "backoff_base", "backoff_cap", "max_retry_after"):
                kw[name] = _positive_float(name, value)
            elif name == "pull":
                kw[name] = _bool(name, value)
            elif name == "tables":
                kw[name] = value
            else:
                kw[name] = str(value)
        return cls(**kw)


def read_token_file(path: Path, source: str = "") -> Secret:
    """Read a token from a file (surrounding whitespace dropped)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the D1 token file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"the D1 token file {path} is not UTF-8 text") from None
    return Secret(text, source or str(path))


def _read_file(path: Path) -> tuple[dict[str, Any], str | None]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the D1 config file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"the D1 config file {path} is not valid TOML: {exc}") from None
    section = data.get("d1", data)
    if not isinstance(section, dict):
        raise ConfigurationError(f"the D1 config file {path}: [d1] must be a table")
    if "token" in section:
        raise ConfigurationError(
            f"the D1 config file {path} holds a token: put it in a file named by token_file "
            f"or in {ENV_PREFIX}TOKEN instead")
    known = set(D1Config._FIELDS) | {"token_file"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigurationError(
            f"the D1 config file {path}: unknown settings {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})")
    token_file = section.pop("token_file", None)
    if token_file is not None:
        token_path = Path(str(token_file)).expanduser()
        if not token_path.is_absolute():
            token_path = path.parent / token_path
        token_file = str(token_path)
    return dict(section), token_file

"""Store URLs: ``sqlite:///abs/path.db``, ``sqlite:relative.db``, ``sqlite:///:memory:``,
or a plain file path (taken as SQLite)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import attrs

from hive_store.errors import ConfigurationError

DEFAULT_PATH = Path("~/.hive/hive-ai.db")

# "name=value" pairs joined by "&": the end of a bare path that is meant as options.
_OPTIONS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=[^&=]*(?:&[A-Za-z_][A-Za-z0-9_]*=[^&=]*)*")


def default_url() -> str:
    """``HIVE_STORE_DB`` if set, else ``~/.hive/hive-ai.db`` (where the Hive apps keep it)."""
    return os.environ.get("HIVE_STORE_DB") or str(DEFAULT_PATH.expanduser())


@attrs.frozen
class StoreURL:
    """A parsed store URL.

    :ivar scheme: backend scheme (``"sqlite"``, ``"postgresql"``)
    :ivar path: the database path (``":memory:"`` for an in-memory database; ``/name`` for a
        database on a server)
    :ivar query: query-string options, e.g. ``?max_size=4`` (never the secret ones, see
        :data:`SECRET_PARAMETERS`)
    :ivar host: ``host[:port]`` of a server URL (``""`` for none or ``localhost``)
    :ivar raw: the URL exactly as given, for a backend that hands it to its own client library
        (libpq parses ``postgresql://`` URLs). It may hold a password: it is left out of
        ``repr``, equality and :meth:`__str__`, and must never be shown.
    """

    scheme: str
    path: str
    query: dict[str, str] = attrs.field(factory=dict)
    host: str = ""
    raw: str = attrs.field(default="", repr=False, eq=False)

    @property
    def memory(self) -> bool:
        return self.path == ":memory:"

    def __str__(self) -> str:
        """The URL without credentials or secret parameters (safe to show)."""
        if self.memory:
            return f"{self.scheme}:///:memory:"
        if self.host or (self.raw and "://" in self.raw and self.scheme != "sqlite"):
            query = "&".join(f"{quote(k, safe='')}={quote(v, safe='/')}"
                             for k, v in self.query.items())
            return f"{self.scheme}://{self.host}{self.path}" + (f"?{query}" if query else "")
        if self.path.startswith("/"):
            return f"{self.scheme}://{self.path}"
        return f"{self.scheme}:{self.path}"


SECRET_PARAMETERS = frozenset({"password", "sslpassword", "passfile"})
"""Query parameters that never reach :attr:`StoreURL.query` (only :attr:`StoreURL.raw`), and
any whose name contains ``password``, ``secret`` or ``token``."""


def _secret(name: str) -> bool:
    low = name.lower()
    return low in SECRET_PARAMETERS or any(w in low for w in ("password", "secret", "token"))


def parse_url(url: str | os.PathLike[str]) -> StoreURL:
    """Parse a store URL or a bare path; raises :class:`ConfigurationError` when malformed.

    ``sqlite:///home/me/hive.db`` is the absolute path ``/home/me/hive.db`` (as in ``file:``
    URLs), ``sqlite:hive.db`` is relative to the working directory, ``sqlite:///:memory:`` (or
    just ``:memory:``) is an in-memory database, and a string without a scheme is a file path
    — up to a ``?`` followed by ``name=value`` options (``hive.db?max_size=4``), which are
    options as in a URL; any other ``?`` belongs to the file name. A file whose name really
    ends in ``?name=value`` is reached with a URL that encodes the ``?`` as ``%3F``.
    """
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str):
        raise ConfigurationError(f"a store URL must be a string, got {type(url).__name__}")
    if not url.strip():
        raise ConfigurationError("empty store URL")
    if "\x00" in url:
        raise ConfigurationError("a store URL must not contain NUL characters")
    if url == ":memory:":
        return StoreURL("sqlite", ":memory:")
    head = url.split(":", 1)[0]
    if ":" not in url or len(head) < 2 or not head.replace("+", "").replace("-", "").isalnum():
        # A bare path (also Windows-style "C:\\x"); no scheme. A "?" followed by options
        # ("x.db?max_size=4") starts options, as in a sqlite: URL; any other "?" is part of
        # the file name ("what?.db").
        path, mark, options = url.partition("?")
        if mark and path and _OPTIONS.fullmatch(options):
            return StoreURL("sqlite", str(Path(path).expanduser()),
                            dict(parse_qsl(options, keep_blank_values=True)))
        return StoreURL("sqlite", str(Path(url).expanduser()))
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    # Credentials (user:password@) are dropped: they must never be echoed in a message (the
    # backend that needs them reads ``raw``).
    query = {k: v for k, v in parse_qsl(parts.query) if not _secret(k)}
    netloc = parts.netloc.rpartition("@")[2]
    if "," in netloc and scheme != "sqlite":
        host = netloc  # a list of servers (libpq: host1:5432,host2:5433), parsed by the backend
    else:
        host = parts.hostname or ""
        try:
            port = parts.port
        except ValueError:
            raise ConfigurationError("the store URL has a bad port number") from None
        if port:
            host = f"{host}:{port}"
    if host == "localhost":
        host = ""
    path = unquote(parts.path)
    if path in ("/:memory:", ":memory:"):
        return StoreURL(scheme, ":memory:", query, raw=url)
    if scheme != "sqlite" and url.startswith(f"{parts.scheme}://"):
        # A server URL: the backend's client library reads ``raw`` (a database name may be
        # left to its defaults); the path is only the database name shown.
        return StoreURL(scheme, path if path != "/" else "", query, host, raw=url)
    if (not path or path == "/") and not host:
        shown = url if "@" not in parts.netloc else url.replace(parts.netloc, netloc, 1)
        raise ConfigurationError(f"store URL without a path: {shown!r}")
    if "\x00" in path:
        raise ConfigurationError("a store URL must not contain NUL characters")
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    return StoreURL(scheme, str(Path(path).expanduser()), query, host, raw=url)

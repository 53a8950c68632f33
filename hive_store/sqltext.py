"""Reading SQL text from the schema (CREATE statements): comments, quotes, parentheses.

One quote-aware scanner for the plugins that look inside schema SQL (schema comparison,
adoption, the D1 mirror), so that ``--`` or ``,`` inside a string literal or an identifier is
never taken for a comment or a separator. Only for SQL that comes from a database's schema or
our own migration files, never for user input.
"""

from __future__ import annotations

_QUOTES = {"'": "'", '"': '"', "`": "`", "[": "]"}


def skip_quoted(sql: str, i: int) -> int:
    """The index just after the quoted token that starts at ``sql[i]`` (a doubled quote
    character inside it is part of the token)."""
    close = _QUOTES[sql[i]]
    j, n = i + 1, len(sql)
    while j < n:
        if sql[j] == close:
            if close != "]" and j + 1 < n and sql[j + 1] == close:
                j += 2
                continue
            return j + 1
        j += 1
    return n


def strip_comments(sql: str) -> str:
    """``sql`` with each ``--`` and ``/* */`` comment replaced by a space; quotes respected."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
            out.append(" ")
        elif c == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        elif c in _QUOTES:
            j = skip_quoted(sql, i)
            out.append(sql[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def paren_bounds(sql: str, start: int) -> tuple[int, int]:
    """Indexes of the ``(`` at ``start`` and of its matching ``)`` (comments already removed)."""
    depth, i, n = 0, start, len(sql)
    while i < n:
        c = sql[i]
        if c in _QUOTES:
            i = skip_quoted(sql, i)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return start, i
        i += 1
    raise ValueError("unbalanced parentheses in SQL")


def split_top_level(body: str) -> list[str]:
    """Split on commas outside parentheses and quotes; parts stripped, empty ones dropped."""
    parts: list[str] = []
    depth, start, i, n = 0, 0, 0, len(body)
    while i < n:
        c = body[i]
        if c in _QUOTES:
            i = skip_quoted(body, i)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(body[start:i].strip())
            start = i + 1
        i += 1
    parts.append(body[start:].strip())
    return [p for p in parts if p]


def table_parts(create_sql: str) -> tuple[list[str], str]:
    """The column definitions and table constraints of a ``CREATE TABLE`` statement, in order,
    and what follows its closing parenthesis (e.g. ``WITHOUT ROWID``); comments removed."""
    sql = strip_comments(create_sql).strip()
    open_at, close_at = paren_bounds(sql, sql.index("("))
    return split_top_level(sql[open_at + 1:close_at]), sql[close_at + 1:].strip().rstrip(";")

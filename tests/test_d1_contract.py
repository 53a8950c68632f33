"""The D1 REST contract the mirror relies on, checked against both D1s of the suite: the
in-process fake (``hive_store_d1.fake``) and a real local D1 (Miniflare's workerd behind
``d1/worker.mjs``). Running the same checks on both keeps the fake honest."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hive_store_d1.fake import FakeD1, Fault

from tests import d1_server

BACKENDS = ["fake", "local"]


class API:
    """Raw REST access to one D1 backend, plus its fault hooks."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "fake":
            self.fake: FakeD1 | None = FakeD1(account_id=d1_server.ACCOUNT,
                                              database_id=d1_server.DATABASE,
                                              token=d1_server.TOKEN)
            self.local: d1_server.LocalD1 | None = None
            self.http = httpx.Client(base_url="http://127.0.0.1:9/client/v4",
                                     transport=self.fake.transport)
        else:
            self.fake = None
            self.local = d1_server.server()
            self.local.reset()
            self.http = httpx.Client(base_url=self.local.api_url, timeout=10, trust_env=False)
        self.path = f"/accounts/{d1_server.ACCOUNT}/d1/database/{d1_server.DATABASE}"
        self.auth = {"Authorization": f"Bearer {d1_server.TOKEN}"}

    def post(self, body: dict[str, Any], *, raw: bool = False, path: str | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.post(f"{path or self.path}/{'raw' if raw else 'query'}", json=body,
                              headers=self.auth if headers is None else headers)

    def ok(self, body: dict[str, Any], *, raw: bool = False) -> list[Any]:
        resp = self.post(body, raw=raw)
        data = resp.json()
        assert resp.status_code == 200 and data["success"], data
        result: list[Any] = data["result"]
        return result

    def error(self, body: dict[str, Any]) -> tuple[int, int, str]:
        resp = self.post(body)
        data = resp.json()
        assert data["success"] is False and data["result"] is None, data
        return resp.status_code, data["errors"][0]["code"], data["errors"][0]["message"]

    def inject(self, kind: str, **kw: Any) -> None:
        if self.fake is not None:
            self.fake.inject(Fault(kind, **kw))
        else:
            assert self.local is not None
            spec = {"kind": kind, **kw}
            if kind == "timeout":
                spec = {"kind": "delay", "ms": 1500, "when": kw.get("when", "before")}
            self.local.fail(spec)


@pytest.fixture(params=BACKENDS)
def api(request: pytest.FixtureRequest) -> Iterator[API]:
    a = API(request.param)
    yield a
    a.http.close()


def test_envelope_of_query_raw_and_batch(api: API) -> None:
    result = api.ok({"batch": [
        {"sql": "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)"},
        {"sql": "INSERT INTO t (id, name) VALUES (?, ?), (?, ?)", "params": [1, "a", 2, "b"]},
        {"sql": "SELECT id, name FROM t ORDER BY id"},
    ]})
    assert len(result) == 3 and all(r["success"] for r in result)
    assert result[2]["results"] == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert result[1]["meta"]["changes"] == 2
    raw = api.ok({"sql": "SELECT id, name FROM t ORDER BY id"}, raw=True)
    assert raw[0]["results"] == {"columns": ["id", "name"], "rows": [[1, "a"], [2, "b"]]}
    numbered = api.ok({"sql": "SELECT ?1 AS a, ?2 AS b, ?1 AS c", "params": [7, "x"]})
    assert numbered[0]["results"] == [{"a": 7, "b": "x", "c": 7}]


def test_a_batch_is_one_transaction(api: API) -> None:
    api.ok({"sql": "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"})
    status, code, message = api.error({"batch": [
        {"sql": "INSERT INTO t (id, name) VALUES (1, 'kept?')"},
        {"sql": "INSERT INTO t (id, name) VALUES (2, NULL)"},
    ]})
    assert (status, code) == (400, 7500)
    assert "NOT NULL constraint failed: t.name" in message
    assert api.ok({"sql": "SELECT count(*) AS n FROM t"})[0]["results"] == [{"n": 0}]


def test_limits_bound_parameters_and_statement_length(api: API) -> None:
    marks = ", ".join("?" for _ in range(100))
    assert api.ok({"sql": f"SELECT {marks}", "params": list(range(100))})
    status, code, message = api.error({"sql": f"SELECT {marks}, ?", "params": list(range(101))})
    assert (status, code) == (400, 7500) and "too many SQL variables" in message
    pad = "x" * 99_000
    assert api.ok({"sql": f"SELECT '{pad}' AS v"})
    status, _, message = api.error({"sql": f"SELECT '{pad + 'y' * 1100}' AS v"})
    assert status == 400 and ("SQLITE_TOOBIG" in message or "too long" in message)
    # bound values do not count against the statement length
    assert api.ok({"sql": "SELECT length(?) AS n", "params": ["z" * 150_000]}
                  )[0]["results"] == [{"n": 150_000}]


def test_no_transactions_attach_or_reserved_names(api: API) -> None:
    for sql in ("BEGIN", "SAVEPOINT s", "ATTACH DATABASE ':memory:' AS x",
                "CREATE TABLE _cf_mine (x)"):
        status, code, _ = api.error({"sql": sql})
        assert (status, code) == (400, 7500), sql


def test_foreign_keys_are_on_and_deferrable_in_a_batch(api: API) -> None:
    api.ok({"batch": [
        {"sql": "CREATE TABLE p (id TEXT PRIMARY KEY)"},
        {"sql": "CREATE TABLE c (id TEXT PRIMARY KEY, pid TEXT REFERENCES p(id))"},
    ]})
    api.ok({"sql": "PRAGMA foreign_keys = OFF"})  # ignored, as by D1
    status, _, message = api.error({"sql": "INSERT INTO c VALUES ('c1', 'nope')"})
    assert status == 400 and "FOREIGN KEY constraint failed" in message
    # child before parent: fine when deferred inside the batch
    api.ok({"batch": [{"sql": "PRAGMA defer_foreign_keys = on"},
                      {"sql": "INSERT INTO c VALUES ('c1', 'p1')"},
                      {"sql": "INSERT INTO p VALUES ('p1')"}]})
    status, _, message = api.error({"batch": [{"sql": "PRAGMA defer_foreign_keys = on"},
                                              {"sql": "INSERT INTO c VALUES ('c2', 'p9')"}]})
    assert status == 400 and "FOREIGN KEY constraint failed" in message
    rows = api.ok({"sql": "SELECT id FROM c ORDER BY id"})[0]["results"]
    assert rows == [{"id": "c1"}]


def test_integers_beyond_2_53_come_back_rounded(api: API) -> None:
    got = api.ok({"sql": "SELECT 9007199254740993 AS big, CAST(9007199254740993 AS TEXT) AS t"})
    assert got[0]["results"] == [{"big": 9007199254740992, "t": "9007199254740993"}]
    # a big integer sent as text into an INTEGER column is stored exactly
    api.ok({"sql": "CREATE TABLE n (id INTEGER PRIMARY KEY)"})
    api.ok({"sql": "INSERT INTO n (id) VALUES (?)", "params": ["9007199254740993"]})
    got = api.ok({"sql": "SELECT CAST(id AS TEXT) AS t, typeof(id) AS ty FROM n"})
    assert got[0]["results"] == [{"t": "9007199254740993", "ty": "integer"}]


def test_unique_violation_message_and_upsert_guard(api: API) -> None:
    api.ok({"sql": "CREATE TABLE u (id TEXT PRIMARY KEY, email TEXT UNIQUE, _hlc TEXT)"})
    api.ok({"sql": "INSERT INTO u VALUES ('a', 'x@example.org', '2')"})
    status, code, message = api.error({"sql": "INSERT INTO u VALUES ('b', 'x@example.org', '1')"})
    assert (status, code) == (400, 7500) and "UNIQUE constraint failed: u.email" in message
    guarded = ("INSERT INTO u (id, email, _hlc) SELECT * FROM (VALUES (?, ?, ?)) AS v WHERE 1 "
               "ON CONFLICT (id) DO UPDATE SET email = excluded.email, _hlc = excluded._hlc "
               "WHERE excluded._hlc > u._hlc")
    api.ok({"sql": guarded, "params": ["a", "old@example.org", "1"]})  # older: no change
    api.ok({"sql": guarded, "params": ["a", "new@example.org", "3"]})
    rows = api.ok({"sql": "SELECT email, _hlc FROM u"})[0]["results"]
    assert rows == [{"email": "new@example.org", "_hlc": "3"}]


def test_triggers_and_a_trigger_raise(api: API) -> None:
    api.ok({"batch": [
        {"sql": "CREATE TABLE t (id TEXT PRIMARY KEY, v TEXT)"},
        {"sql": "CREATE TABLE log (seq INTEGER PRIMARY KEY AUTOINCREMENT, k)"},
        {"sql": "CREATE TRIGGER t_ai AFTER INSERT ON t BEGIN INSERT INTO log (k) VALUES "
                "(NEW.id); END"},
        {"sql": "CREATE TRIGGER t_no BEFORE INSERT ON t WHEN NEW.v LIKE 'POISON%' BEGIN "
                "SELECT RAISE(ABORT, 'poison row'); END"},
    ]})
    api.ok({"sql": "INSERT INTO t VALUES ('a', 'fine'), ('b', 'fine')"})
    status, _, message = api.error({"sql": "INSERT INTO t VALUES ('c', 'POISON!')"})
    assert status == 400 and "poison row" in message
    log = api.ok({"sql": "SELECT seq, k FROM log ORDER BY seq"})[0]["results"]
    assert log == [{"seq": 1, "k": "a"}, {"seq": 2, "k": "b"}]


def test_authentication_and_unknown_database(api: API) -> None:
    resp = api.post({"sql": "SELECT 1"}, headers={"Authorization": "Bearer wrong"})
    assert resp.status_code == 401 and resp.json()["success"] is False
    resp = api.post({"sql": "SELECT 1"},
                    path=f"/accounts/{d1_server.ACCOUNT}/d1/database/not-this-one")
    assert resp.status_code == 404


def test_injected_status_faults(api: API) -> None:
    api.inject("status", status=429, retry_after=3)
    resp = api.post({"sql": "SELECT 1"})
    assert resp.status_code == 429 and resp.headers["retry-after"] == "3"
    assert resp.json()["errors"][0]["code"] == 971
    api.inject("status", status=503)
    resp = api.post({"sql": "SELECT 1"})
    assert resp.status_code == 503 and resp.json()["success"] is False
    assert api.ok({"sql": "SELECT 1 AS one"})[0]["results"] == [{"one": 1}]


def test_injected_drops_before_and_after_running(api: API) -> None:
    api.ok({"sql": "CREATE TABLE t (id INTEGER PRIMARY KEY)"})
    api.inject("drop", when="before")
    with pytest.raises(httpx.TransportError):
        api.post({"sql": "INSERT INTO t VALUES (1)"})
    api.inject("drop", when="after")
    with pytest.raises(httpx.TransportError):
        api.post({"sql": "INSERT INTO t VALUES (2)"})
    rows = api.ok({"sql": "SELECT id FROM t"})[0]["results"]
    assert rows == [{"id": 2}]  # the first never ran, the second ran but its answer was lost

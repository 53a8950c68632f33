"""Property tests of the D1 mirror against the fake D1: random local writes on two devices,
random faults on every request (429, 5xx, transient messages, dropped connections before and
after D1 ran the batch, timeouts, and the pushing process killed between D1's commit and the
local acknowledgement), random pushes and pulls. After convergence: D1 == each device for every
mirrored table (except the rows D1 refused), no duplicates, and the dead-letter table holds
exactly the refused rows."""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import hive_store_d1
import pytest
from hive_store_d1 import D1Unavailable, Mirror
from hive_store_d1.fake import DEFAULT_MIX, FakeD1, Fault, SimulatedCrash
from hive_store_d1.mirror import OUTBOX
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

import hive_store
from hive_store.entities import Conversation, Message, Setting
from tests import d1_server

POISON_TRIGGERS = [
    "CREATE TRIGGER test_poison_ins BEFORE INSERT ON messages WHEN NEW.content LIKE 'POISON%' "
    "BEGIN SELECT RAISE(ABORT, 'poison row refused'); END",
    "CREATE TRIGGER test_poison_upd BEFORE UPDATE ON messages WHEN NEW.content LIKE 'POISON%' "
    "BEGIN SELECT RAISE(ABORT, 'poison row refused'); END",
]
MIX = (*DEFAULT_MIX, (Fault("crash"), 2))
SETTING_KEYS = ["theme", "model", "lang", "tier"]
_TEMPLATE: dict[str, Path] = {}
FAULTS_SEEN: list[int] = []


def template() -> Path:
    """A migrated database to copy (made once per test process)."""
    if "path" not in _TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="d1-template-"))
        path = folder / "template.db"
        hive_store.open(f"sqlite://{path}").close()
        _TEMPLATE["path"] = path
    return _TEMPLATE["path"]


class Device:
    """A store with its mirror; ``restart`` is a new process on the same database."""

    def __init__(self, folder: Path, name: str, fake: FakeD1, **config: Any) -> None:
        self.path = folder / f"{name}.db"
        shutil.copy(template(), self.path)
        self.fake = fake
        self.config = d1_server.d1_config(
            fake.url(), **{"pull": True, "max_attempts": 4, "rows_per_request": 40, **config})
        self.store = hive_store.open(f"sqlite://{self.path}")
        memory = self.store.__dict__.get("memory")
        if memory is not None:
            memory.auto_assign = False
        self.mirror = self._enable()
        self.crashes = 0

    def _enable(self) -> Mirror:
        return hive_store_d1.enable(self.store, self.config, transport=self.fake.transport,
                                    sleep=lambda s: None)

    def restart(self) -> None:
        self.crashes += 1
        self.store.close()
        self.store = hive_store.open(f"sqlite://{self.path}")
        memory = self.store.__dict__.get("memory")
        if memory is not None:
            memory.auto_assign = False
        self.mirror = self._enable()

    def run(self, what: str) -> None:
        """Push or pull, surviving faults the way a real process would."""
        try:
            getattr(self.mirror, what)()
        except SimulatedCrash:
            self.restart()
        except D1Unavailable:
            pass  # out of attempts: nothing lost, the next run continues

    def close(self) -> None:
        self.store.close()


def rows(conn_rows: list[tuple[Any, ...]], pk: int = 0) -> dict[Any, tuple[Any, ...]]:
    out: dict[Any, tuple[Any, ...]] = {}
    for r in conn_rows:
        assert r[pk] not in out, f"duplicate key {r[pk]!r}"
        out[r[pk]] = tuple(r)
    return out


def converge_and_check(fake: FakeD1, a: Device, b: Device) -> None:
    """Turn faults off, sync both ways until quiet, then check the invariants."""
    fake.chaos(0.0)
    fake.faults.clear()
    for _ in range(3):
        for device in (a, b):
            device.mirror.push()
        for device in (a, b):
            device.mirror.pull()
    for device in (a, b):
        with device.store.backend.connection() as conn:
            assert conn.execute(f"SELECT count(*) FROM {OUTBOX}").fetchone()[0] == 0
    # the dead letters: exactly a's messages D1 refuses (its poison rows), nothing else
    poison = {r[0] for r in a.store.backend.fetch(
        "SELECT id FROM messages WHERE content LIKE 'POISON%'", ())}
    dead_a = {(r["table"], r["pk"], r["direction"]) for r in a.mirror.dead_letters()}
    assert dead_a == {("messages", p, "push") for p in poison}
    assert b.mirror.dead_letters() == []
    # D1 == each device, table by table, except the refused rows
    for device, skip in ((a, poison), (b, set())):
        for info in device.mirror.tables:
            cols = ", ".join(f'"{c}"' for c in info.columns)
            local = rows(device.store.backend.fetch(f'SELECT {cols} FROM "{info.name}"', ()),
                         info.pk_index)
            remote = rows(fake.rows(f'SELECT {cols} FROM "{info.name}"'), info.pk_index)
            if info.name == "messages":
                for key in skip:
                    local.pop(key, None)
                    remote.pop(key, None)
            assert local == remote, info.name
    report = a.mirror.verify(tables=["conversations", "messages", "settings"])
    bad = [t for t in report.tables if not t.ok]
    assert all(set(t.missing_remote) | set(t.different) <= poison for t in bad)
    assert b.mirror.verify(tables=["conversations", "messages", "settings"]).ok
    FAULTS_SEEN.append(fake.injected_total)


class MirrorMachine(RuleBasedStateMachine):
    """Two devices, one D1, faults everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="d1-prop-"))
        self.fake: FakeD1 = d1_server.new_fake(seed=0)
        self.a = Device(self.folder, "a", self.fake)
        self.b = Device(self.folder, "b", self.fake)
        self.a.mirror.push()  # the remote schema exists; now D1 refuses poison rows
        for sql in POISON_TRIGGERS:
            self.fake.execute(sql)
        self.counter = 0

    @initialize(seed=st.integers(0, 2**16), rate=st.sampled_from([0.5, 0.3, 0.7]))
    def faults(self, seed: int, rate: float) -> None:
        self.fake.rng = random.Random(seed)
        self.fake.chaos(rate, MIX)

    def _id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter:04d}"

    def _ids(self, device: Device, table: str, prefix: str) -> list[str]:
        return [r[0] for r in device.store.backend.fetch(
            f"SELECT id FROM {table} WHERE id LIKE ? ORDER BY id", (prefix + "%",))]

    # -- device a -------------------------------------------------------------------------------

    @rule(n=st.integers(0, 5), poison=st.integers(0, 1))
    def a_adds_a_conversation(self, n: int, poison: int) -> None:
        cid = self._id("ca")
        with self.a.store.transaction():
            self.a.store.conversations.add(Conversation(id=cid))
            for i in range(n):
                content = "POISON pill" if poison and i == 0 else f"msg {i}"
                self.a.store.messages.add(Message(id=self._id("ma"), conversation_id=cid,
                                                  role="user", content=content))

    @rule(data=st.data(), text=st.sampled_from(["edited", "POISON now", "clean again", ""]))
    def a_edits_a_message(self, data: st.DataObject, text: str) -> None:
        ids = self._ids(self.a, "messages", "ma")
        if ids:
            self.a.store.messages.update(data.draw(st.sampled_from(ids)), content=text)

    @rule(data=st.data())
    def a_deletes_a_message(self, data: st.DataObject) -> None:
        ids = self._ids(self.a, "messages", "ma")
        if ids:
            self.a.store.messages.delete(data.draw(st.sampled_from(ids)))

    @rule(data=st.data())
    def a_deletes_a_conversation(self, data: st.DataObject) -> None:
        ids = self._ids(self.a, "conversations", "ca")
        if ids:
            cid = data.draw(st.sampled_from(ids))
            with self.a.store.transaction():
                for m in self.a.store.messages.find(conversation_id=cid):
                    self.a.store.messages.delete(m.id)
                self.a.store.conversations.delete(cid)

    @rule()
    def a_rolls_back(self) -> None:
        try:
            with self.a.store.transaction():
                self.a.store.conversations.add(Conversation(id=self._id("rolled")))
                raise LookupError
        except LookupError:
            pass

    @rule(key=st.sampled_from(SETTING_KEYS), value=st.text("abc", max_size=3))
    def a_sets(self, key: str, value: str) -> None:
        self.a.store.settings.upsert(Setting(key=key, value=f"a:{value}"))

    # -- device b -------------------------------------------------------------------------------

    @rule(n=st.integers(1, 3))
    def b_adds_a_conversation(self, n: int) -> None:
        cid = self._id("cb")
        with self.b.store.transaction():
            self.b.store.conversations.add(Conversation(id=cid))
            self.b.store.messages.add_many(Message(id=self._id("mb"), conversation_id=cid,
                                                   role="assistant", content=f"b {i}")
                                           for i in range(n))

    @rule(key=st.sampled_from(SETTING_KEYS), value=st.text("xyz", max_size=3))
    def b_sets(self, key: str, value: str) -> None:
        self.b.store.settings.upsert(Setting(key=key, value=f"b:{value}"))

    @rule(data=st.data())
    def b_deletes_a_setting(self, data: st.DataObject) -> None:
        keys = [s.key for s in self.b.store.settings.find()]
        if keys:
            self.b.store.settings.delete(data.draw(st.sampled_from(keys)))

    # -- sync -----------------------------------------------------------------------------------

    @rule(device=st.sampled_from(["a", "b"]), what=st.sampled_from(["push", "push", "pull"]))
    def sync(self, device: str, what: str) -> None:
        getattr(self, device).run(what)

    @rule()
    def sync_both(self) -> None:
        for device in (self.a, self.b):
            device.run("push")
        for device in (self.a, self.b):
            device.run("pull")

    @rule()
    def crash_in_the_middle(self) -> None:
        self.fake.inject(Fault("crash"))
        self.a.run("push")

    def teardown(self) -> None:
        try:
            converge_and_check(self.fake, self.a, self.b)
        finally:
            self.a.close()
            self.b.close()
            shutil.rmtree(self.folder, ignore_errors=True)


TestMirrorMachine = MirrorMachine.TestCase
TestMirrorMachine.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.mark.slow
def test_soak_a_thousand_faults_then_convergence() -> None:
    """A fixed-seed soak: two devices, random writes, every request has a 55% chance of a
    fault; at least 1,000 faults are injected before the devices converge."""
    rnd = random.Random(20261126)
    folder = Path(tempfile.mkdtemp(prefix="d1-soak-"))
    fake: FakeD1 = d1_server.new_fake(seed=7)
    a = Device(folder, "a", fake, rows_per_request=15)
    b = Device(folder, "b", fake, rows_per_request=15)
    try:
        a.mirror.push()
        for sql in POISON_TRIGGERS:
            fake.execute(sql)
        fake.chaos(0.55, MIX)
        step = 0
        while fake.injected_total < 1100:
            step += 1
            device = a if rnd.random() < 0.6 else b
            store = device.store
            with store.transaction():
                cid = f"c{device is a}{step:05d}"
                store.conversations.add(Conversation(id=cid))
                for i in range(rnd.randint(1, 6)):
                    poison = device is a and rnd.random() < 0.03
                    store.messages.add(Message(id=f"{cid}-{i}", conversation_id=cid,
                                               role="user",
                                               content="POISON" if poison else f"m{i}"))
            store.settings.upsert(Setting(key=rnd.choice(SETTING_KEYS), value=str(step)))
            if rnd.random() < 0.2:
                old = store.messages.find(limit=1, order_by="id")
                if old:
                    store.messages.delete(old[0].id)
            for d in (a, b):
                d.run(rnd.choice(["push", "push", "pull"]))
        assert fake.injected_total >= 1000
        assert a.crashes + b.crashes > 0 and set(fake.injected) >= {"status", "drop",
                                                                    "timeout", "crash"}
        converge_and_check(fake, a, b)
    finally:
        a.close()
        b.close()
        shutil.rmtree(folder, ignore_errors=True)

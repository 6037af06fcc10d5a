"""A Hypothesis state machine: the object database behaves like a dict from id to bytes,
across puts, flushes, aborts, reopens (as another process would) and gc."""

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from zcas.cas import codec
from zcas.cas.db import ObjectDB
from zcas.cas.gc import gc
from zcas.cas.memory import MemoryBackend
from zcas.cas.oid import hash_bytes


class DBMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.backend = MemoryBackend()
        self.db = ObjectDB(self.backend, max_pack_size=4096)
        self.durable: dict[bytes, bytes] = {}
        self.pending: dict[bytes, bytes] = {}
        self.roots: set[bytes] = set()

    @rule(data=st.binary(max_size=3000))
    def put(self, data):
        oid = self.db.put(codec.KIND_BLOB, data)
        assert oid == hash_bytes(data)
        if oid not in self.durable:
            self.pending[oid] = data

    @rule()
    def flush(self):
        self.db.flush()
        self.durable.update(self.pending)
        self.pending.clear()

    @rule()
    def abort(self):
        self.db.abort()
        # packs already published by a size rollover stay; only the open pack is lost
        self.pending = {o: d for o, d in self.pending.items() if ObjectDB(self.backend).has(o)}
        self.durable.update(self.pending)
        self.pending.clear()

    @rule()
    def reopen(self):
        self.db.flush()
        self.durable.update(self.pending)
        self.pending.clear()
        self.db = ObjectDB(self.backend, max_pack_size=4096)

    @rule(data=st.data())
    def root(self, data):
        if self.durable:
            self.roots.add(data.draw(st.sampled_from(sorted(self.durable))))

    @rule()
    def collect(self):
        self.db.flush()
        self.durable.update(self.pending)
        self.pending.clear()
        gc(self.db, list(self.roots), grace=0)
        gone = set(self.durable) - self.roots
        self.durable = {o: d for o, d in self.durable.items() if o in self.roots}
        fresh = ObjectDB(self.backend)
        assert not any(fresh.has(o) for o in gone)
        assert set(fresh.index) == set(self.durable)

    @invariant()
    def matches_model(self):
        for oid, data in {**self.durable, **self.pending}.items():
            assert self.db.get_bytes(oid) == data
        fresh = ObjectDB(self.backend)
        for oid in self.durable:
            assert fresh.get_bytes(oid) == self.durable[oid]


TestDB = DBMachine.TestCase
TestDB.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)

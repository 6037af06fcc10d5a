"""Lineage on a remote: run records travel in segments, one object per push.

A segment is every run record a push sends, length-prefixed and stored with the object
codec (zstd) under ``lineage/seg-<hash>``. Pulling lists the segments, fetches the ones
not seen before, checks each record against its id and indexes it, so a cache key a
colleague's run filled is a hit here too, with their host and user in its provenance.
"""

from __future__ import annotations

import os

from zcas.cas import codec
from zcas.cas.oid import hash_bytes

PREFIX = "lineage/"


def _seg_key(payload: bytes) -> str:
    return f"{PREFIX}seg-{hash_bytes(payload).hex()}"


def _pack(records: list[bytes]) -> bytes:
    return b"".join(len(r).to_bytes(8, "little") + r for r in records)


def _unpack(payload: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(payload):
        n = int.from_bytes(payload[pos : pos + 8], "little")
        out.append(payload[pos + 8 : pos + 8 + n])
        pos += 8 + n
    return out


class RemoteLineage:
    def __init__(self, lineage, backend, state_dir: str):
        self.lineage = lineage
        self.backend = backend
        self.state_dir = state_dir  # which segments this repository has already seen
        os.makedirs(state_dir, exist_ok=True)

    def _seen(self) -> set[str]:
        return set(os.listdir(self.state_dir))

    def _mark(self, seg: str, run_ids: list[bytes]) -> None:
        path = os.path.join(self.state_dir, seg.rsplit("/", 1)[1])
        with open(path + ".tmp", "wb") as f:
            f.write(b"".join(run_ids))
        os.replace(path + ".tmp", path)

    def remote_run_ids(self) -> set[bytes]:
        self.pull()
        out: set[bytes] = set()
        for name in self._seen():
            if name.endswith(".tmp"):
                continue
            data = open(os.path.join(self.state_dir, name), "rb").read()
            out.update(data[i : i + 32] for i in range(0, len(data), 32))
        return out

    def push(self) -> int:
        """Send every local run record the remote does not have; returns how many."""
        have = self.remote_run_ids()
        ids = [r for r in self.lineage.graph.all_run_ids() if r not in have]
        if not ids:
            return 0
        records = [self.lineage.graph.run_bytes(r) for r in ids]
        payload = _pack(records)
        key = _seg_key(payload)
        self.backend.put(key, codec.encode(codec.KIND_RECORD, payload))
        self._mark(key, ids)
        return len(ids)

    def pull(self) -> int:
        """Fetch and index the segments not seen yet; returns how many runs were new here."""
        from . import serde

        seen = self._seen()
        new = 0
        for key in self.backend.list(PREFIX):
            name = key.rsplit("/", 1)[1]
            if not name.startswith("seg-") or name in seen:
                continue
            _, payload = codec.decode(key, self.backend.get(key))
            if hash_bytes(payload).hex() != name[4:]:
                from zcas.cas.errors import IntegrityError

                raise IntegrityError(key, "lineage segment does not match its name")
            batch, ids = [], []
            for data in _unpack(payload):
                rid = hash_bytes(data)
                rec = serde.decode(data)  # validates; a bad record stops the pull with its reason
                ids.append(rid)
                if not self.lineage.graph.has_run(rid):
                    batch.append((rid, serde.unstructure(rec), data))
            db = self.lineage.repo.db
            for rid, _, data in batch:  # the records become local truth too (reindex finds them)
                db.put(codec.KIND_RECORD, data, oid=rid)
            db.flush()
            self.lineage.graph.put_runs(batch)
            self._mark(key, ids)
            new += len(batch)
        return new

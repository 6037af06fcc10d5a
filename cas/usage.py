"""``du``: what the recorded versions would take without zcas, and what they take with it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from . import codec
from .pack import PREFIX
from .reach import logical_size, walk

if TYPE_CHECKING:
    from .db import ObjectDB


@attrs.frozen
class Usage:
    versions: int  # path versions recorded
    logical_bytes: int  # every recorded version checked out side by side
    unique_bytes: int  # distinct file content (blobs and chunks) of those versions, uncompressed
    stored_bytes: int  # bytes on disk (packs and indexes)
    objects: int

    @property
    def dedup_ratio(self) -> float:
        return self.logical_bytes / self.unique_bytes if self.unique_bytes else 1.0

    @property
    def compression_ratio(self) -> float:
        return self.unique_bytes / self.stored_bytes if self.stored_bytes else 1.0

    def as_dict(self) -> dict:
        d = attrs.asdict(self)
        d["dedup_ratio"] = round(self.dedup_ratio, 4)
        d["compression_ratio"] = round(self.compression_ratio, 4)
        return d


def usage(db: ObjectDB, version_ids: list[bytes]) -> Usage:
    memo: dict[bytes, int] = {}
    logical = sum(logical_size(db, oid, memo) for oid in version_ids if db.has(oid))
    # the distinct content those versions hold (not every blob in the store: run outputs and
    # stored values are no recorded version), so logical / unique is never below 1
    live, _ = walk(db, [o for o in version_ids if db.has(o)])
    unique = sum(e.size for o in live if (e := db.entry(o)).kind == codec.KIND_BLOB)
    stored = sum(db.backend.info(k).size for k in db.backend.list(PREFIX))
    return Usage(len(version_ids), logical, unique, stored, len(db.index))

"""The cache key of a run: BLAKE3 over a length-prefixed encoding of its named components.

Each component (argv, each input's id, each param, each declared environment variable's
digest, the outputs, the working directory, the key schema) is kept by name in the run
record, so the key can be recomputed from the record alone: lineage checks it for every run
a remote sends, and ``zcas why`` says which component changed. Length prefixes make the
encoding unambiguous: no choice of values makes two different component sets hash alike.
"""

from __future__ import annotations

from zcas.cas.oid import hash_bytes


def _lp(b: bytes) -> bytes:
    return len(b).to_bytes(8, "little") + b


def key_of(components: dict[str, str]) -> bytes:
    """The 32-byte cache key of ``components`` (name -> value, both str)."""
    return hash_bytes(b"".join(_lp(k.encode()) + _lp(v.encode()) for k, v in sorted(components.items())))

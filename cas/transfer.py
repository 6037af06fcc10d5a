"""Moving objects between two stores, in packs: what makes 10,000 objects a few requests.

Push sends every local pack the remote lacks, as it is (pack first, index last: a pack
interrupted mid-upload is invisible and is sent again next time); objects named one by one
travel in a new pack of their own. Transfers run on several threads; every put is
create-only.

Pull trusts nothing it reads: a remote's packs and indexes are untrusted input, so every
record is verified against its id and its index entry before anything is kept. Whole packs
come through ``pull.pull_packs`` (re-exported here); named objects and what they reach
through ``fetch_objects``, by byte range.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed

from .backend import Backend
from .chunking import pool
from .db import ObjectDB
from .errors import IntegrityError, ZcasError
from .pack import PREFIX, Entry, check_entry, check_index, idx_key, name_of_idx_key, pack_key
from .pull import JOBS, PullResult, pull_packs  # noqa: F401 - the pull API lives here too
from .reach import children, closure  # noqa: F401 - closure: push's walk is reach's
from .verify import verify_record


def remote_packs(backend: Backend) -> set[str]:
    return {n for n in (name_of_idx_key(k) for k in backend.list(PREFIX)) if n}


def _upload(src: Backend, dst: Backend, name: str) -> int:
    """Copy one local pack and its index to a remote; the index goes last, so the pack
    counts only when whole. (Nothing here verifies records: packs from a remote come in
    through ``pull_packs`` only.)"""
    local = src.local_path(pack_key(name))
    if local is not None:
        dst.put_path(pack_key(name), local)  # streamed from disk
        size = os.path.getsize(local)
    else:
        data = src.get(pack_key(name))
        size = len(data)
        dst.put(pack_key(name), data)
    idx = src.get(idx_key(name))
    check_index(name, idx)
    dst.put(idx_key(name), idx)
    return size + len(idx)


def copy_packs(src: Backend, dst: Backend, names: Iterable[str],
               progress: Callable[[int, int], None] | None = None) -> tuple[int, int]:
    """Push: copy whole packs of the local store ``src`` to the remote ``dst``
    (concurrently); (packs, bytes) copied. For local -> remote only: it installs what it
    copies without verifying a record, so it must never be used to bring packs *from* a
    remote (that is ``pull_packs``, which verifies every record)."""
    names = sorted(names)
    done = total = 0
    with ThreadPoolExecutor(max_workers=JOBS, thread_name_prefix="zcas-xfer") as ex:
        for n in ex.map(lambda name: _upload(src, dst, name), names):
            done += 1
            total += n
            if progress:
                progress(done, len(names))
    return done, total


def push_objects(local: ObjectDB, remote: ObjectDB, oids: Iterable[bytes]) -> int:
    """Send the named objects the remote lacks, as one new pack; returns how many."""
    missing = [o for o in oids if not remote.has(o)]
    if not missing:
        return 0
    for o in missing:
        e, record, _ = local.verified(o)  # never spread a damaged copy
        remote.put_record(o, e.kind, e.size, record)
    remote.flush()
    return len(missing)


def fetch_objects(local: ObjectDB, remote: ObjectDB, roots: Iterable[bytes],
                  locate: Callable[[bytes], Entry | None] | None = None, flush: bool = True) -> int:
    """Fetch the roots and what they reach from ``remote`` into ``local``, verified.

    ``locate(id)`` may say where an object sits in the remote's packs (a hint, say from an
    action cache entry), sparing the load of every remote pack index; a hinted record is
    verified like any other, and one that is not found where hinted raises (the caller
    asks again without hints). ``flush=False`` leaves what was fetched in ``local``'s
    pack being written (readable at once), for a caller that flushes it with more.

    Records are fetched by byte range (a request per pack, several at once) and verified
    on the process pool as each pack's batch arrives (``verify_record``: hash, kind and
    size against the remote's index, trees decode, manifests add up); a record that fails
    is looked for in the remote's other packs, and an id with no good copy raises
    IntegrityError. Only ids the local store lacks are fetched and stored.
    """
    fetched = 0
    frontier = [o for o in roots if not local.has(o)]
    while frontier:
        by_pack: dict[str, list] = {}
        for o in dict.fromkeys(frontier):
            e = (locate(o) if locate is not None else None) or remote.entry(o)
            by_pack.setdefault(e.pack, []).append((o, e))
        frontier = []

        def one_pack(item):
            name, items = item
            for o, e in items:  # a hostile index must not make us fetch gigabytes
                check_entry(name, o, e.offset, e.length, e.kind, e.size)
            datas = remote.backend.get_ranges(pack_key(name), [e.offset for _, e in items],
                                              [e.length for _, e in items])
            return [(o, e, data) for (o, e), data in zip(items, datas, strict=True)]

        with ThreadPoolExecutor(max_workers=JOBS, thread_name_prefix="zcas-xfer") as ex:
            downloads = [ex.submit(one_pack, item) for item in by_pack.items()]
            checks = [pool().submit(_verify_fetched, remote, f.result()) for f in as_completed(downloads)]
            for c in checks:
                for o, e, record, payload in c.result():
                    if local.has(o):
                        continue
                    local.put_record(o, e.kind, e.size, record)
                    fetched += 1
                    frontier.extend(c for c in children(o, e.kind, payload) if not local.has(c))
    if flush:
        local.flush()
    return fetched


def _verify_fetched(remote: ObjectDB, batch: list) -> list:
    """[(id, entry, record, payload)] of a fetched batch, every record verified; a bad one
    is replaced by another remote copy that verifies, or raises."""
    out = []
    for o, e, record in batch:
        try:
            if len(record) != e.length:
                raise IntegrityError(o, "record is truncated on the remote")
            payload = verify_record(o, record, e.kind, e.size)
        except ZcasError as first:
            try:
                e, record, payload = remote.verified(o)
                verify_record(o, record, e.kind, e.size)  # trees decode too
            except ZcasError:
                raise IntegrityError(o, f"{getattr(first, 'reason', first)} (fetched from the remote)") from None
        out.append((o, e, record, payload))
    return out


def tty_progress(verb: str) -> Callable[[int, int], None] | None:
    """A bar of packs moved, on a terminal only (``progress.tty_bar``)."""
    from .progress import tty_bar

    return tty_bar(verb, "packs")


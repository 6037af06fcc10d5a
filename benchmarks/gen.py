"""Seeded generators for the benchmark workloads (CSV-like text, every byte unique).

Rows are built column by column with numpy, so a GiB takes seconds rather than minutes;
each row carries a distinct id and random fields, so nothing repeats across chunks and
deduplication cannot flatter the figures.
"""

from __future__ import annotations

import os

import numpy as np

_WORDS = np.array([b"alpha", b"bravo", b"delta", b"gamma", b"kappa", b"omega", b"sigma", b"theta"], dtype="S5")


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) ASCII digits of non-negative ints, zero-padded."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] // powers) % 10 + 48).astype(np.uint8)


def rows(rng: np.random.Generator, start_id: int, n: int) -> bytes:
    """n CSV rows: id,date,category,qty,price,score (fixed width, 52 bytes each)."""
    ids = np.arange(start_id, start_id + n, dtype=np.int64)
    year = rng.integers(2015, 2026, n)
    month = rng.integers(1, 13, n)
    day = rng.integers(1, 29, n)
    cat = _WORDS[rng.integers(0, len(_WORDS), n)].view(np.uint8).reshape(n, 5)
    qty = rng.integers(0, 10_000, n)
    price = rng.integers(0, 1_000_000, n)
    score = rng.integers(0, 1_000_000, n)
    cols = [
        _digits(ids, 10), b",", _digits(year, 4), b"-", _digits(month, 2), b"-", _digits(day, 2), b",",
        cat, b",", _digits(qty, 4), b",", _digits(price // 100, 4), b".", _digits(price % 100, 2), b",",
        b"0.", _digits(score, 6), b"\n",
    ]
    parts = [c if isinstance(c, np.ndarray) else np.tile(np.frombuffer(c, np.uint8), (n, 1)) for c in cols]
    return np.hstack(parts).tobytes()


ROW = len(rows(np.random.default_rng(0), 0, 1))
HEADER = b"id,date,category,qty,price,score\n"


def csv_file(path: str, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(HEADER)
        written = len(HEADER)
        next_id = seed * 10**8
        block = (8 << 20) // ROW
        while written < size:
            n = min(block, (size - written + ROW - 1) // ROW)
            data = rows(rng, next_id, n)
            next_id += n
            data = data[: size - written]
            f.write(data)
            written += len(data)


def small_files(root: str, count: int = 10_000, folders: int = 100, seed: int = 1) -> int:
    """count files of 1-16 KiB in ``folders`` folders; returns total bytes."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1024, 16 * 1024 + 1, count)
    blob = rows(rng, 0, int(sizes.sum()) // ROW + count)
    total = 0
    pos = 0
    for i, size in enumerate(sizes):
        d = os.path.join(root, f"dir{i % folders:03d}")
        if i < folders:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"part{i:05d}.csv"), "wb") as f:
            f.write(HEADER + blob[pos : pos + size - len(HEADER)])
        pos += size - len(HEADER)
        total += size
    return total


def edited_copy(src: str, dst: str, seed: int) -> None:
    """A second version: 1% of rows rewritten mid-file, 10,000 rows inserted near the start."""
    with open(src, "rb") as f:
        data = f.read()
    rng = np.random.default_rng(seed)
    nrows = (len(data) - len(HEADER)) // ROW
    mid = len(HEADER) + (nrows // 2) * ROW
    span = (nrows // 100) * ROW
    rewritten = rows(rng, 9 * 10**9, nrows // 100)[:span]
    at = len(HEADER) + 500 * ROW
    inserted = rows(rng, 8 * 10**9, 10_000)
    out = data[:at] + inserted + data[at:mid] + rewritten + data[mid + span :]
    with open(dst, "wb") as f:
        f.write(out)

"""The pipeline bench_runners.py runs (a module of its own, so workers can import it)."""

import time

import zcas


def calibrate(seconds: float) -> int:
    n = 200_000
    while True:
        t = time.perf_counter()
        _spin(n)
        took = time.perf_counter() - t
        if took > 0.05:
            return int(n * seconds / took)
        n *= 2


def _spin(n: int) -> int:
    x = 0
    for k in range(n):
        x = (x * 31 + k) % 1_000_003
    return x


@zcas.step
def burn(i: int, spin: int, salt: int = 0) -> int:
    return _spin(spin) + i


@zcas.step
def total(*xs: int) -> int:
    return sum(xs)


@zcas.pipeline(name="fan")
def fan(n: int, spin: int, salt: int = 0):
    return total(*[burn(i, spin, salt) for i in range(n)])

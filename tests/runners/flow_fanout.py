"""A fan-out pipeline for the runner tests (module level, so workers can import it)."""

import os
import signal

import zcas


@zcas.step
def work(i: int, spin: int = 2000) -> dict:
    total = sum(k * k for k in range(spin))
    return {"i": i, "total": total + i}


@zcas.step
def gather(*parts: dict) -> int:
    return sum(p["total"] for p in parts)


@zcas.step
def fragile(marker: str) -> str:
    """Kills the worker running it the first time (a worker lost mid-step)."""
    if not os.path.exists(marker):
        open(marker, "w").write("killed once")
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


@zcas.pipeline(name="fanout")
def fanout(n: int = 6):
    return gather(*[work(i) for i in range(n)])


@zcas.pipeline(name="killer")
def killer(marker: str):
    return fragile(marker)

"""Running a set of steps in dependency order, independent ones in parallel.

A failed step stops the steps that need it (they are reported as skipped) and lets
independent branches finish; the next run resumes from the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from zcas.cas.errors import ZcasError

from .command import StepResult


def run_all(order: list[str], deps: dict[str, set[str]], run_one: Callable[[str], StepResult], jobs: int,
            say: Callable[[str], None]) -> list[StepResult]:
    wanted = set(order)
    waiting = {n: {d for d in deps[n] if d in wanted} for n in order}
    results: dict[str, StepResult] = {}
    dependents: dict[str, list[str]] = {n: [] for n in order}
    for n, ds in waiting.items():
        for d in ds:
            dependents[d].append(n)

    def guarded(name: str) -> StepResult:
        try:
            return run_one(name)
        except ZcasError as e:
            say(f"failed: {name} ({e})")
            return StepResult(name, "failed", exit_status=1, reason=str(e))

    def skip(name: str, because: str) -> None:
        if name in results:
            return
        results[name] = StepResult(name, "skipped", reason=f"upstream {because} failed")
        say(f"skipped: {name} (upstream {because} failed)")
        for d in dependents[name]:
            skip(d, because)

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="zcas-step") as ex:
        running: dict[Future[StepResult], str] = {}
        ready = [n for n in order if not waiting[n]]
        while ready or running:
            for n in ready:
                running[ex.submit(guarded, n)] = n
            ready = []
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                n = running.pop(f)
                r = results[n] = f.result()
                for d in dependents[n]:
                    if r.status == "failed":
                        skip(d, n)
                        continue
                    waiting[d].discard(n)
                    if not waiting[d] and d not in results:
                        ready.append(d)
    return [results[n] for n in order if n in results]

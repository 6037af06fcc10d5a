"""Fingerprint cost (issue 20): a step reaching 500 definitions across 50 modules.

Run:  python benchmarks/bench_fingerprint.py [REPEATS]

Generates 50 modules of 10 functions (each calling the next, through module attributes,
constants and a class per module), and a step that reaches all 500. Figures, medians of
REPEATS (default 7), side by side in one run:

- cold: a new process's first fingerprint with nothing kept (every file read and parsed,
  every definition walked);
- warm, new process: each file's parse read back from ``.zcas/defs`` by the hash of its
  content (what every ``zcas run`` after the first pays while the files are unchanged);
- warm, same process: parses and bytecode scans kept in memory (what a second step
  reaching the same modules pays);
- baselines: importing the 50 modules (bytecode cached) and one plain call of the step.
"""

from __future__ import annotations

import importlib
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
import time

MODULES = 50
PER_MODULE = 7  # functions; plus a class with two methods: 10 definitions a module


def module_source(i: int) -> str:
    nxt = f"m{i + 1:02d}" if i + 1 < MODULES else None
    lines = [f"import {nxt}" if nxt else "", f"LIMIT_{i} = {i}", ""]
    for j in range(PER_MODULE):
        if j + 1 < PER_MODULE:
            body = f"return f{j + 1}(x) + LIMIT_{i}"
        elif nxt:
            body = f"return {nxt}.f0(x) + Shape{i}(x).area()"
        else:
            body = f"return x + Shape{i}(x).area()"
        lines += [f"def f{j}(x):", f"    # function {j} of module {i}", f"    {body}", ""]
    lines += [f"class Shape{i}:", "    def __init__(self, x):", "        self.x = x", "",
              "    def area(self):", "        return self.x * 2", ""]
    return "\n".join(lines)


def generate(root: str) -> None:
    for i in range(MODULES):
        with open(os.path.join(root, f"m{i:02d}.py"), "w") as f:
            f.write(module_source(i))
    with open(os.path.join(root, "flow.py"), "w") as f:
        f.write(textwrap.dedent('''
            import m00

            def step(x):
                return m00.f0(x)
        '''))


def clock(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def drop_modules() -> None:
    for name in [n for n in sys.modules if n == "flow" or (n.startswith("m") and n[1:].isdigit())]:
        del sys.modules[name]


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    sys.setrecursionlimit(10_000)
    from zcas.runners import fingerprint as fp
    from zcas.runners import sourcedigest

    tmp = tempfile.mkdtemp(prefix="zcas-bench-fp-")
    try:
        generate(tmp)
        sys.path.insert(0, tmp)
        importlib.import_module("flow")  # compiles the modules' bytecode once

        def do_import() -> None:
            drop_modules()
            importlib.invalidate_caches()
            importlib.import_module("flow")

        t_import = clock(do_import, repeats)
        flow = importlib.import_module("flow")
        t_call = clock(lambda: flow.step(1), repeats)
        entries = fp.manifest(flow.step)
        defs = [e for e in entries if e.kind == "code"]
        files = {e.file for e in defs}

        defs_dir = os.path.join(tmp, "defs")

        def cold() -> None:  # a new process, nothing kept: every file read and parsed
            fp.clear()
            shutil.rmtree(defs_dir, ignore_errors=True)
            fp.fingerprint(flow.step)

        def warm_disk() -> None:  # a new process, each file's parse read from .zcas/defs by its hash
            fp.clear()
            fp.fingerprint(flow.step)

        def warm() -> None:  # the same process, another step: parses and bytecode scans kept
            fp._cache.clear()
            fp.fingerprint(flow.step)

        sourcedigest.use_folder(defs_dir)
        t_cold = clock(cold, repeats)
        fp.fingerprint(flow.step)
        t_disk = clock(warm_disk, repeats)
        t_warm = clock(warm, repeats)
        t_cached = clock(lambda: fp.fingerprint(flow.step), repeats)
        print(f"step reaching {len(defs)} definitions in {len(files)} modules ({len(entries)} entries in its "
              f"manifest); medians of {repeats}")
        print(f"{'what':<48}{'ms':>10}")
        for what, t in [
            ("fingerprint, cold (every file parsed)", t_cold),
            ("fingerprint, warm new process (parses on disk)", t_disk),
            ("fingerprint, warm same process (parses, scans)", t_warm),
            ("fingerprint, again in one process (memoised)", t_cached),
            ("baseline: import the 50 modules (bytecode cached)", t_import),
            ("baseline: one plain call of the step", t_call),
        ]:
            print(f"{what:<48}{t * 1000:>10.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

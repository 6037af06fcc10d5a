"""Steps for the distributed-run tests: importable by name on the workers (their PYTHONPATH
holds this checkout), never by a path of the client's.

Every step also gives back the folder it ran in (``os.getcwd()``, ``pwd``), so a test can
check that none ran inside the client's working tree; what it computes is kept apart from
that, so outputs can be compared byte for byte across runners.
"""

import hashlib
import os
import pathlib
import time

import zcas


@zcas.step
def part(i: int, shared: bytes) -> tuple:
    """One of the fan-out: a digest of the shared input and its index."""
    time.sleep(float(os.environ.get("ZCAS_TEST_STEP_SLEEP", "0")))
    return {"i": i, "digest": hashlib.sha256(shared + bytes([i])).hexdigest()}, os.getcwd()


@zcas.step
def join(*parts: dict) -> dict:
    return {"n": len(parts), "digests": sorted(p["digest"] for p in parts)}


@zcas.step
def where() -> str:
    return os.getcwd()


@zcas.pipeline(name="spread")
def spread(n: int = 20):
    made = zcas.command("head -c 300000 big.bin > cut.bin; pwd > cut.where", inputs=["big.bin"],
                        outputs=["cut.bin", "cut.where"], name="cut")
    parts = [part(i, made["cut.bin"]) for i in range(n)]
    values = [v for v, _ in parts]
    cwds = [c for _, c in parts]
    return join(*values), cwds, made["cut.where"]


@zcas.step
def make_dir(n: int) -> pathlib.Path:
    """Writes a folder in its working folder (a worker's scratch) and returns it."""
    os.makedirs("made", exist_ok=True)
    for i in range(n):
        with open(os.path.join("made", f"{i}.txt"), "w") as f:
            f.write(str(i))
    return pathlib.Path("made")


@zcas.step
def read_dir(d: pathlib.Path) -> dict:
    return {"files": {n: (d / n).read_text() for n in sorted(os.listdir(d))}, "at": str(d), "cwd": os.getcwd()}


@zcas.pipeline(name="folders")
def folders(n: int = 3):
    return read_dir(make_dir(n))

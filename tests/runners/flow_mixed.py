"""A pipeline mixing Python steps and a command step, for the cross-runner tests.

Every execution appends a line to the file named by ZCAS_TEST_EXEC_LOG (read when the step
runs, so the log's path is not part of any key), which is how a test counts executions.
"""

import os
import time

import zcas


def _note(what: str) -> None:
    log = os.environ.get("ZCAS_TEST_EXEC_LOG")
    if log:
        with open(log, "a") as f:
            f.write(what + "\n")


@zcas.step
def make(n: int) -> bytes:
    _note("make")
    time.sleep(float(os.environ.get("ZCAS_TEST_STEP_SLEEP", "0")))
    return b"x" * n


@zcas.step
def measure(data: bytes, count: bytes) -> dict:
    _note("measure")
    return {"len": len(data), "count": int(count.strip())}


@zcas.pipeline
def mixed(n: int = 10):
    data = make(n)
    outs = zcas.command('wc -c < input.txt > count.txt; echo command >> "$ZCAS_TEST_EXEC_LOG"',
                        inputs=["input.txt"], outputs=["count.txt"], name="count")
    return measure(data, outs["count.txt"])


if __name__ == "__main__":
    import sys

    run = mixed(stack=sys.argv[1] if len(sys.argv) > 1 else None)
    print(run.load())

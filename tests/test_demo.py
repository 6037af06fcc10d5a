"""The README's first set-up command ends in examples/demo.py: it must keep working."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_demo_runs_to_the_end(tmp_path):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "demo.py"), str(tmp_path / "demo")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "demo failed" not in p.stdout and "$ zcas log --graph out/report.txt" in p.stdout
    assert "cached" in p.stdout and (tmp_path / "demo" / ".zcas").is_dir()

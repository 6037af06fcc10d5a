"""The built wheel installs into a clean virtual environment and works from there, under
the zcas.* names only (the bare names cas/lineage/runners belong to other projects)."""

import glob
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_wheel_installs_and_runs(tmp_path):
    import shutil

    src = tmp_path / "src"  # build from a copy, so no build/ or egg-info lands in the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                                             ".hypothesis", ".pytest_cache"))
    dist = tmp_path / "dist"
    p = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
        capture_output=True, text=True,
    )
    assert p.returncode == 0, p.stderr
    [wheel] = glob.glob(str(dist / "zcas-*.whl"))
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for data in ("zcas/ui/templates/page.html", "zcas/ui/static/app.js", "zcas/ui/static/style.css",
                 "zcas/ui/static/vendor/cytoscape.min.js", "zcas/ui/static/vendor/LICENSE-cytoscape.txt"):
        assert data in names, f"the wheel lacks {data} (pyproject's package-data)"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", wheel], check=True, capture_output=True)
    work = tmp_path / "work"
    work.mkdir()
    from zcas import __version__

    out = subprocess.run([str(venv / "bin" / "zcas"), "--version"], cwd=work, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"zcas {__version__}"
    subprocess.run([str(venv / "bin" / "zcas"), "init"], cwd=work, check=True, capture_output=True)
    (work / "f").write_text("hi")
    out = subprocess.run([str(venv / "bin" / "zcas"), "add", "f"], cwd=work, capture_output=True, text=True, check=True)
    assert out.stdout.endswith("  f\n")
    where = subprocess.run(
        [str(py), "-c", "import zcas.cas, zcas.lineage, zcas.runners; print(zcas.cas.__file__)"],
        cwd=work, capture_output=True, text=True, check=True,
    ).stdout
    assert str(venv) in where
    site = glob.glob(str(venv / "lib" / "python*" / "site-packages"))[0]
    for bare in ("cas", "lineage", "runners"):
        assert not os.path.exists(os.path.join(site, bare)), f"wheel installs a top-level {bare}/"

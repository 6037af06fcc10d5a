"""A repository holding a small data folder, tagged and in the path history, for zcas:// tests."""

from __future__ import annotations

import os

import pytest

import zcas


@pytest.fixture
def stored(tmp_path, monkeypatch):
    """(repository, tree id): data/ with a CSV, two Parquet parts, a nested folder, an empty
    folder and a symlink; tagged v1 and added twice (data@1, data@2 differ in one file)."""
    import numpy as np
    import pandas as pd

    repo = zcas.Repository.init(tmp_path)
    data = tmp_path / "data"
    (data / "sub" / "deep").mkdir(parents=True)
    (data / "empty").mkdir()
    df = pd.DataFrame({"a": np.arange(1000), "b": np.linspace(0, 1, 1000)})
    df.to_csv(data / "train.csv", index=False)
    df.iloc[:500].to_parquet(data / "part-0.parquet")
    df.iloc[500:].to_parquet(data / "part-1.parquet")
    (data / "sub" / "deep" / "x.txt").write_text("deep\n")
    (data / "sub" / "file@2").write_text("not a history ref\n")
    os.symlink("train.csv", data / "link")
    (data / "v.txt").write_text("one\n")
    repo.put(str(data))
    (data / "v.txt").write_text("two\n")
    tree = repo.put(str(data))
    repo.tag("v1", tree.id)
    monkeypatch.chdir(tmp_path)
    yield repo, tree.id

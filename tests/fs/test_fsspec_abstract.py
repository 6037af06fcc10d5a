"""fsspec's own abstract tests, where they apply to a read-only filesystem: the ``get``
suite (copying out of zcas:// into local folders, with globs, maxdepth, lists, trailing
slashes).

The suite builds its scenarios by writing to the filesystem under test. zcas:// refuses
writes, so the ``fs`` here is a test-only subclass whose writes go to a local staging
folder that is then stored (``Repository.put``) and tagged ``t``: every read the suite
checks still goes through ZcasFileSystem, against what the store holds. The open, pipe,
put, copy and move suites test writes into the filesystem and do not apply.
"""

from __future__ import annotations

import os
import posixpath
import shutil

import pytest
from fsspec.tests.abstract import AbstractFixtures
from fsspec.tests.abstract.get import AbstractGetTests

import zcas
from zcas.fs import ZcasFileSystem

TAG = "t"


class StagingFileSystem(ZcasFileSystem):
    """ZcasFileSystem whose writes (test fixtures only) restage and retag the tree ``t``."""

    def __init__(self, repo: str, staging: str) -> None:
        super().__init__(repo=repo)
        self.staging = staging

    def _local(self, path: str) -> str:
        rest = self._strip_protocol(path)
        assert rest == TAG or rest.startswith(TAG + "/"), path
        return os.path.join(self.staging, rest[len(TAG) + 1:])

    def _commit(self) -> None:
        repo = zcas.Repository(self.repository.root)
        repo.tag(TAG, repo.put(self.staging).id, force=True)

    def makedirs(self, path, exist_ok=False):
        os.makedirs(self._local(path), exist_ok=True)
        self._commit()

    mkdir = makedirs

    def touch(self, path, truncate=True, **kwargs):
        self.pipe_file(path, b"")  # parents implied, as on an object store

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        local = self._local(path)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "wb") as f:
            f.write(value)
        self._commit()

    def rm(self, path, recursive=False, maxdepth=None):
        for p in path if isinstance(path, list) else [path]:
            local = self._local(p)
            if os.path.isdir(local):
                shutil.rmtree(local)
            elif os.path.exists(local):
                os.unlink(local)
        self._commit()


class TestZcasGet(AbstractFixtures, AbstractGetTests):
    @pytest.fixture
    def fs(self, tmp_path):
        root, staging = tmp_path / "repo", tmp_path / "staging"
        staging.mkdir()
        zcas.Repository.init(root)
        fs = StagingFileSystem(str(root), str(staging))
        fs._commit()
        return fs

    @pytest.fixture
    def fs_join(self):
        return posixpath.join

    @pytest.fixture
    def fs_path(self):
        return TAG

    @pytest.fixture
    def local_path(self, tmp_path):
        p = tmp_path / "local"
        p.mkdir()
        return str(p)

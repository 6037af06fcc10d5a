"""Every backend passes the same contract (object storage joins in a later issue)."""

import pytest

from zcas.cas.local import LocalBackend
from zcas.cas.memory import MemoryBackend
from zcas.cas.testing import BackendContract, ObjectDBContract


class TestLocal(BackendContract, ObjectDBContract):
    @pytest.fixture
    def backend(self, tmp_path):
        b = LocalBackend(str(tmp_path / "store"))
        yield b
        b.close()


class TestMemory(BackendContract, ObjectDBContract):
    @pytest.fixture
    def backend(self):
        return MemoryBackend()


class TestObstoreMemory(BackendContract, ObjectDBContract):
    @pytest.fixture
    def backend(self):
        from zcas.cas.objstore import ObstoreBackend

        return ObstoreBackend("memory://")


class TestObstoreLocal(BackendContract, ObjectDBContract):
    @pytest.fixture
    def backend(self, tmp_path):
        from zcas.cas.objstore import ObstoreBackend

        return ObstoreBackend(f"file://{tmp_path}/store")


class TestObstoreS3(BackendContract, ObjectDBContract):
    @pytest.fixture
    def backend(self, s3_env, s3_url):
        from zcas.cas.objstore import ObstoreBackend

        return ObstoreBackend(s3_url)

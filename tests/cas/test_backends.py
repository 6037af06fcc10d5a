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

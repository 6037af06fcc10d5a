"""A damaged or hand-edited .zcas/config.toml gives one line naming the file and key."""

import pytest

from zcas.cas.errors import ZcasError
from zcas.cas.repo import Repo


@pytest.mark.parametrize("content,fragments", [
    (b"\xff\xfe\x00garbage", ["not valid UTF-8", "byte 0"]),
    (b"[core]\nformat = 1\n# caf\xe9\n", ["not valid UTF-8"]),
    (b"[core\nformat = 1\n", ["cannot read repository config"]),
    (b"[core]\nformat = 1\n[store]\nurl = 5\n", ["store.url", "non-empty string", "5"]),
    (b'[core]\nformat = 1\n[store]\nurl = ""\n', ["store.url"]),
    (b'[core]\nformat = 1\n[store]\nurl = "s3://b/p"\nendpoint = 3\n', ["store.endpoint"]),
    (b'[core]\nformat = 1\n[store]\nurl = "s3://b/p"\nallow_http = "yes"\n', ["store.allow_http", "boolean"]),
    (b"store = 3\n[core]\nformat = 1\n", ["[store] must be a table"]),
    (b'[core]\nformat = "x"\n', ["core.format", "'x'"]),
    (b"[core]\nformat = true\n", ["core.format"]),
    (b"[core]\nformat = 0\n", ["core.format"]),
    (b"core = 1\n", ["[core] must be a table"]),
    (b"", ["[core] must be a table"]),
    (b"[core]\nformat = 99\n", ["newer than this zcas"]),
])
def test_attack_malformed_config_is_one_line(repo_dir, content, fragments):
    path = repo_dir / ".zcas" / "config.toml"
    path.write_bytes(content)
    with pytest.raises(ZcasError) as ei:
        Repo(str(repo_dir))
    msg = str(ei.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    for f in fragments:
        assert f in msg, msg


def test_store_table_without_url_keeps_objects_local(repo_dir):
    path = repo_dir / ".zcas" / "config.toml"
    path.write_text('[core]\nformat = 1\n[store]\nregion = "eu-west-1"\n')
    r = Repo(str(repo_dir))
    assert r.backend.local_path("packs/x") is not None
    r.close()

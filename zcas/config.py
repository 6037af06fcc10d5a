"""Layered configuration, like git's: built-in defaults, the user's file, the repository's
``.zcas/config.toml``, then ``ZCAS_*`` environment variables, each overriding the last.

Every known key has a type and a check; a bad value is an error naming the file (or
variable), the key and the problem. ``zcas config list --show-origin`` says where each
value came from.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from typing import Any

from zcas.cas.errors import UsageError, ZcasError
from zcas.cas.objstore import check_no_credentials, masked
from zcas.cas.safetext import printable
from zcas.runners.durations import parse_duration

RUNNERS = ("local", "threads", "processes", "dask")


class ConfigError(ZcasError):
    exit_code = 2


def _int_min1(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError("expected a whole number of at least 1")
    return v


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("expected a string")
    return v


def _url(v: Any) -> str:
    """A store URL or endpoint: a string holding no credentials (config files are not secret)."""
    if not isinstance(v, str):
        raise ValueError("expected a string")
    try:
        check_no_credentials(v)
    except UsageError:
        raise ValueError(f"{masked(v)} holds credentials (user:password@); set them in the environment instead") from None
    return v


def _runner(v: Any) -> str:
    if v not in RUNNERS:
        raise ValueError(f"expected one of {', '.join(RUNNERS)}")
    return v


def _duration(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)  # ZCAS_GC_GRACE=0 reads as the TOML integer 0
    if not isinstance(v, str):
        raise ValueError("expected a duration such as 14d or 12h")
    parse_duration(v)
    return v


# key pattern -> check; "*" stands for one name (a remote's, a stack's)
SCHEMA: dict[str, Callable[[Any], Any]] = {
    "core.format": _int_min1,
    "run.jobs": _int_min1,
    "run.verify": _bool,
    "run.remote_cache": _bool,
    "gc.grace": _duration,
    "stack.active": _str,
    "stack.*.store": _url,
    "stack.*.runner": _runner,
    "stack.*.scheduler": _str,
    "stack.*.remote": _str,
    "remote.*.url": _url,
    "remote.*.endpoint": _url,
    "remote.*.region": _str,
    "remote.*.allow_http": _bool,
    "remote.*.instance_credentials": _bool,
    "store.url": _url,
    "store.endpoint": _url,
    "store.region": _str,
    "store.allow_http": _bool,
}
DEFAULTS: dict[str, Any] = {"run.jobs": os.cpu_count() or 1, "run.verify": False, "run.remote_cache": True, "gc.grace": "14d",
            "stack.active": "default"}
_ENV_SKIP = {"ZCAS_DIR", "ZCAS_DEBUG", "ZCAS_CONFIG", "ZCAS_NO_REMOTE_CACHE"}


def _check_for(key: str) -> Callable[[Any], Any] | None:
    if key in SCHEMA:
        return SCHEMA[key]
    parts = key.split(".")
    if len(parts) == 3:
        return SCHEMA.get(f"{parts[0]}.*.{parts[2]}")
    return None


def user_file() -> str:
    if os.environ.get("ZCAS_CONFIG"):
        return os.environ["ZCAS_CONFIG"]
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "zcas", "config.toml")


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return _flatten(tomllib.load(f))
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8 (a TOML file must be UTF-8 text)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None


def _from_env(text: str) -> Any:
    """Environment values are strings: read them as TOML values when they parse as one."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _env_key(name: str) -> str | None:
    """ZCAS_RUN_JOBS -> run.jobs; ZCAS_STACK -> stack.active."""
    if name == "ZCAS_STACK":
        return "stack.active"
    rest = name[5:].lower()
    for known in SCHEMA:
        if "*" not in known and known.replace(".", "_") == rest:
            return known
    return None


class Config:
    """The merged configuration: ``get(key)`` and ``origin(key)``."""

    def __init__(self, repo_zdir: str | None) -> None:
        self.values: dict[str, Any] = {}
        self.origins: dict[str, str] = {}
        for k, v in DEFAULTS.items():
            self._set(k, v, "default")
        self.user_path = user_file()
        for k, v in _read(self.user_path).items():
            self._set(k, v, self.user_path)
        self.repo_path = os.path.join(repo_zdir, "config.toml") if repo_zdir else None
        if self.repo_path:
            for k, v in _read(self.repo_path).items():
                self._set(k, v, self.repo_path)
        for name, text in sorted(os.environ.items()):
            if name.startswith("ZCAS_") and name not in _ENV_SKIP and not name.startswith("ZCAS_TEST_"):
                key = _env_key(name)
                if key is not None:  # other ZCAS_* names (ZCAS_PARAM_* in steps, say) are not settings
                    self._set(key, _from_env(text), f"env:{name}")

    def _set(self, key: str, value: Any, origin: str) -> None:
        check = _check_for(key)
        if check is None:
            raise ConfigError(f"{origin}: unknown key {key!r}")
        try:
            value = check(value)
        except ValueError as e:
            shown = "" if check is _url else f", got {value!r}"  # a URL may hold a secret: never echoed
            raise ConfigError(f"{origin}: {key}: {e}{shown}") from None
        self.values[key] = value
        self.origins[key] = origin

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def origin(self, key: str) -> str | None:
        return self.origins.get(key)

    def items(self) -> list[tuple[str, Any]]:
        return sorted(self.values.items())

    def section(self, prefix: str) -> dict[str, dict[str, Any]]:
        """{name: {field: value}} for keys ``prefix.NAME.FIELD`` (stacks, remotes)."""
        out: dict[str, dict[str, Any]] = {}
        for k, v in self.values.items():
            parts = k.split(".")
            if len(parts) == 3 and parts[0] == prefix:
                out.setdefault(parts[1], {})[parts[2]] = v
        return out


_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def check_name(kind: str, name: str) -> str:
    """A remote's or a stack's name: one TOML key part, so a '.' (which would split it) is refused."""
    if not _NAME.fullmatch(name) or "." in name:
        raise ConfigError(f"invalid {kind} name {printable(name)!r}: use letters, digits, '_' and '-'")
    return name

"""The catalogue of routes by which a step's code reaches user definitions (issue 20).

Step ``s`` reaches every route at once and returns a value each route feeds, so every real
change gives a new output; ``d`` consumes it, so its rerun is real too. Each mutation must
rerun ``s`` and ``d`` with a new result, and going back must be a hit (nothing runs, the
first result comes back). Edits that cannot change a result — comments, docstrings, blank
lines, code ``s`` cannot reach — must run nothing. Every run is a fresh process, as a user
re-running a script after an edit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

FILES = {
    "helpers/__init__.py": '''
        """Helpers, re-exported."""
        from .impl import K, scale
    ''',
    "helpers/impl.py": '''
        K = 7
        CONST_G = 30

        def scale(x):
            return x * 2

        def scale_alt(x):
            return x * 5

        def deep(x):
            return x - 1

        def unused(x):
            return x + 1000
    ''',
    "shapes.py": '''
        import dataclasses
        import enum

        import attrs

        LIMIT = 4

        class Meta(type):
            def tag(cls):
                return "meta1"

        class Base:
            def value_base(self):
                return 100

        class Mixin:
            def mix(self):
                return 5

        class Model(Base, Mixin, metaclass=Meta):
            def __init__(self, n):
                self.n = n

            @property
            def value(self):
                """The value."""
                return self.compute() + super().value_base() + self.mix()

            def compute(self):
                return self.n * 2

            @classmethod
            def make(cls, n):
                return cls(n)

            @staticmethod
            def helper(x):
                return x + 1

        @dataclasses.dataclass
        class Cfg:
            limit: int = LIMIT

        @attrs.define
        class Attrs:
            x: int = 6

        class Color(enum.Enum):
            RED = 1

        class Settings:
            def __init__(self, factor):
                self.factor = factor

            def times(self, x):
                return x * self.factor

        def unreachable():
            return 0
    ''',
    "mod.py": '''
        import functools

        import zcas

        import helpers
        import helpers.impl as impl_mod
        from helpers import scale
        from shapes import Attrs, Cfg, Color, Model, Settings

        OFFSET = 1
        CONFIG = Settings(3)

        def make_adder(k):
            def add(x):
                return x + k
            return add

        ADD = make_adder(10)

        def mul(a, b):
            return a * b

        TWICE = functools.partial(mul, 2)

        def deco(fn):
            @functools.wraps(fn)
            def w(*a):
                return fn(*a) + 1000
            return w

        @deco
        def decorated(x):
            return x + 1

        @functools.lru_cache
        def cached(x):
            return x * 3

        def with_default(x, d=5):
            return x + d

        HANDLERS = {"a": lambda x: x + 7}

        def local_import(n):
            from helpers.impl import deep
            return deep(n)

        def log(name):
            with open("exec.log", "a") as f:
                f.write(name + "\\n")

        @zcas.step
        def s(n: int) -> list:
            log("s")  # a comment
            m = Model(n)
            with open("data/config.txt") as f:
                config = f.read().strip()
            return [
                helpers.scale(n), helpers.K, scale(n), m.value, Model.make(2).value, Model.helper(3),
                Model.tag(), Cfg().limit, Attrs().x, Color.RED.value, ADD(n), TWICE(n), decorated(n),
                cached(n), with_default(n), HANDLERS["a"](n), OFFSET, CONFIG.times(n), local_import(n),
                getattr(impl_mod, "CONST_G"), config,
            ]

        @zcas.step
        def d(v: list) -> str:
            log("d")
            return repr(v)

        @zcas.pipeline
        def pipe(n: int = 2):
            return d(s(n))
    ''',
    "other.py": '''
        def not_imported():
            return 1
    ''',
    "data/config.txt": "alpha\n",
}

RUNNER = '''
import json, sys
sys.path.insert(0, ".")
import mod
print(json.dumps(mod.pipe().load()))
'''

# (what changes, file, old text, new text): each a real change reaching ``s``.
MUTATIONS = [
    ("step body", "mod.py", "OFFSET, CONFIG", "OFFSET - 5, CONFIG"),
    ("module constant read by the step", "mod.py", "OFFSET = 1", "OFFSET = 2"),
    ("function through a package attribute (re-export)", "helpers/impl.py", "return x * 2", "return x * 3"),
    ("module constant through a package attribute", "helpers/impl.py", "K = 7", "K = 8"),
    ("what a package __init__ re-exports", "helpers/__init__.py", "from .impl import K, scale",
     "from .impl import K\nfrom .impl import scale_alt as scale"),
    ("function imported inside a function", "helpers/impl.py", "return x - 1", "return x - 3"),
    ("constant read with getattr and a constant name", "helpers/impl.py", "CONST_G = 30", "CONST_G = 31"),
    ("method called by a property", "shapes.py", "return self.n * 2", "return self.n * 5"),
    ("base class method called through super()", "shapes.py", "return 100", "return 101"),
    ("mixin method", "shapes.py", "return 5", "return 25"),
    ("metaclass method", "shapes.py", 'return "meta1"', 'return "meta2"'),
    ("property body", "shapes.py", "+ super().value_base() + self.mix()", "+ super().value_base() + 2 * self.mix()"),
    ("classmethod", "shapes.py", "return cls(n)", "return cls(n + 1)"),
    ("staticmethod", "shapes.py", "return x + 1", "return x + 2"),
    ("constant a dataclass field default reads", "shapes.py", "LIMIT = 4", "LIMIT = 9"),
    ("dataclass field default", "shapes.py", "limit: int = LIMIT", "limit: int = LIMIT + 1"),
    ("attrs field default", "shapes.py", "x: int = 6", "x: int = 7"),
    ("enum member", "shapes.py", "RED = 1", "RED = 2"),
    ("instance state of a module global", "mod.py", "CONFIG = Settings(3)", "CONFIG = Settings(4)"),
    ("method of a global instance's class", "shapes.py", "return x * self.factor", "return x * self.factor + 1"),
    ("value a closure captures", "mod.py", "ADD = make_adder(10)", "ADD = make_adder(11)"),
    ("closure body", "mod.py", "return x + k", "return x + k + 100"),
    ("functools.partial argument", "mod.py", "functools.partial(mul, 2)", "functools.partial(mul, 3)"),
    ("function a partial wraps", "mod.py", "return a * b", "return a * b + 1"),
    ("decorator's wrapper", "mod.py", "return fn(*a) + 1000", "return fn(*a) + 2000"),
    ("decorated function (functools.wraps)", "mod.py", "def decorated(x):\n    return x + 1",
     "def decorated(x):\n    return x + 4"),
    ("lru_cache-wrapped function", "mod.py", "return x * 3", "return x * 4"),
    ("default argument of a helper", "mod.py", "d=5", "d=6"),
    ("function in a registry dict", "mod.py", "lambda x: x + 7", "lambda x: x + 8"),
    ("file the step reads (implicit input)", "data/config.txt", "alpha", "beta"),
]

# Edits that cannot change any result: nothing may run.
INERT = [
    ("comment in the step", "mod.py", "# a comment", "# another comment, longer"),
    ("docstring of a property", "shapes.py", '"""The value."""', '"""The value, documented again."""'),
    ("docstring of a package", "helpers/__init__.py", '"""Helpers, re-exported."""', '"""Helpers."""'),
    ("blank lines above everything", "helpers/impl.py", "K = 7", "\n\n\nK = 7"),
    ("blank line and comment inside a method", "shapes.py", "return self.n * 2", "# doubled\n\n        return self.n * 2"),
    ("function nothing calls, same module", "helpers/impl.py", "return x + 1000", "return x + 2000"),
    ("function nothing calls, class module", "shapes.py", "return 0", "return 1"),
    ("module nothing imports", "other.py", "return 1", "return 2"),
]


class Project:
    def __init__(self, root):
        self.root = root
        (root / "runner.py").write_text(RUNNER)
        for name, text in FILES.items():
            self.write(name, textwrap.dedent(text).lstrip("\n"))

    def write(self, name: str, text: str) -> None:
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    def edit(self, name: str, old: str, new: str) -> str:
        """Replace ``old`` (found exactly once) in file ``name``; the text before."""
        p = self.root / name
        before = p.read_text()
        assert before.count(old) == 1, f"{old!r} must occur once in {name}"
        p.write_text(before.replace(old, new))
        return before

    def run(self) -> tuple[list[str], str]:
        log = self.root / "exec.log"
        if log.exists():
            log.unlink()
        env = dict(os.environ)
        env.pop("ZCAS_DIR", None)
        p = subprocess.run([sys.executable, "runner.py"], cwd=self.root, env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return (log.read_text().split() if log.exists() else []), json.loads(p.stdout)


@pytest.fixture
def proj(repo_dir):
    p = Project(repo_dir)
    ran, out = p.run()
    assert ran == ["s", "d"]
    p.first = out
    return p


@pytest.mark.parametrize(("what", "name", "old", "new"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_a_real_change_reruns_and_going_back_is_a_hit(proj, what, name, old, new):
    before = proj.edit(name, old, new)
    ran, out = proj.run()
    assert ran == ["s", "d"], f"{what}: {ran}"
    assert out != proj.first, f"{what}: the mutation must change the output"
    proj.write(name, before)
    assert proj.run() == ([], proj.first), what


@pytest.mark.parametrize(("what", "name", "old", "new"), INERT, ids=[m[0] for m in INERT])
def test_an_edit_that_cannot_change_a_result_runs_nothing(proj, what, name, old, new):
    proj.edit(name, old, new)
    assert proj.run() == ([], proj.first), what


def test_each_mutation_gives_an_output_of_its_own(proj):
    """So a downstream rerun is real for every route: no two mutations give one output."""
    seen = {json.dumps(proj.first): "the original"}
    for what, name, old, new in MUTATIONS:
        before = proj.edit(name, old, new)
        _, out = proj.run()
        key = json.dumps(out)
        assert key not in seen, f"{what} gives the output of {seen.get(key)}"
        seen[key] = what
        proj.write(name, before)


EXTRA = {
    "models.py": '''
        import functools

        class Model:
            def __init__(self, w):
                self.w = w

            def predict(self, x):
                return x * self.w

        @functools.singledispatch
        def fmt(v):
            return f"any:{v}"

        @fmt.register(int)
        def _(v):
            return f"int:{v}"
    ''',
    "mod.py": '''
        import zcas

        from models import Model, fmt

        def log(name):
            with open("exec.log", "a") as f:
                f.write(name + "\\n")

        @zcas.step(pickle=True)
        def make() -> Model:
            log("make")
            return Model(3)

        @zcas.step
        def use(m: Model) -> str:
            log("use")
            return fmt(m.predict(2))

        @zcas.pipeline
        def pipe(n: int = 2):
            return use(make())
    ''',
}


@pytest.mark.parametrize(("what", "old", "new"), [
    # ``use`` names no Model method in its body: it gets the model from the store, and
    # reaches Model through its signature's annotation.
    ("method of a class an argument is annotated with", "return x * self.w", "return x * self.w + 1"),
    ("implementation registered on a singledispatch function", 'return f"int:{v}"', 'return f"int={v}"'),
])
def test_routes_through_the_signature_and_dispatch(repo_dir, what, old, new):
    p = Project.__new__(Project)
    p.root = repo_dir
    (repo_dir / "runner.py").write_text(RUNNER)
    for name, text in EXTRA.items():
        p.write(name, textwrap.dedent(text).lstrip("\n"))
    ran, first = p.run()
    assert ran == ["make", "use"]
    before = p.edit("models.py", old, new)
    ran, out = p.run()
    assert "use" in ran and out != first, what
    p.write("models.py", before)
    assert p.run() == ([], first), what

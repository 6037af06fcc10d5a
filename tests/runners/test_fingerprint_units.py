"""The fingerprint's parts, in-process: what counts as user code, what is listed as
unresolved, scoping of names, and the code manifest's encoding (property tests)."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zcas.runners import codemanifest, sourcedigest
from zcas.runners.fingerprint import Entry, fingerprint, manifest
from zcas.runners.usercode import is_user_module


@pytest.fixture
def module(tmp_path, monkeypatch):
    """Write a module in a folder on sys.path (where an editable install's code lives) and
    import it afresh."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(name: str, source: str):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        sys.modules.pop(name, None)
        importlib.invalidate_caches()
        mod = importlib.import_module(name)
        monkeypatch.setitem(sys.modules, name, mod)
        return mod

    return make


def _kinds(fn) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for e in manifest(fn):
        out.setdefault(e.kind, set()).add(e.name)
    return out


def test_code_outside_installed_distributions_is_user_code_installed_code_counts_by_version(module):
    m = module("proj_a", '''
        import attrs

        def helper(x):
            return attrs.has(x)

        def step(x):
            return helper(x)
    ''')
    assert is_user_module(m) and not is_user_module(attrs)
    entries = manifest(m.step)
    assert Entry("package", "attrs", f"attrs=={attrs.__version__}") in entries
    assert {"proj_a.step", "proj_a.helper"} <= _kinds(m.step)["code"]
    assert not any(e.name.startswith("attrs.") for e in entries if e.kind == "code")  # by version, not source


def test_what_cannot_be_resolved_is_listed(module):
    m = module("proj_b", '''
        import fractions

        HALF = fractions.Fraction(1, 2)

        def step(obj, name):
            a = getattr(obj, name)
            b = eval("1 + 1")
            return a, b, undefined_name, HALF
    ''')
    unresolved = {e.name: e.digest for e in manifest(m.step) if e.kind == "unresolved"}
    words = " | ".join(f"{k} => {v}" for k, v in unresolved.items())
    assert "getattr() with a computed attribute name" in words
    assert "eval()" in words
    assert "name undefined_name is not defined" in words
    assert "a fractions.Fraction value: only its package's version is covered" in words


def test_a_local_that_shadows_a_global_is_not_taken_for_it(module):
    m = module("proj_c", '''
        LIMIT = 5

        def step(x):
            LIMIT = x  # a local: the global's value does not matter
            return LIMIT

        def reads(x):
            return LIMIT + x
    ''')
    assert "proj_c.LIMIT" not in _kinds(m.step).get("const", set())
    assert "proj_c.LIMIT" in _kinds(m.reads)["const"]


def test_a_missing_module_attribute_is_unresolved_not_an_error(module):
    module("proj_d_lib", '''
        def f():
            return 1
    ''')
    m = module("proj_d", '''
        import proj_d_lib

        def step():
            return proj_d_lib.g()
    ''')
    assert any("proj_d_lib.g does not exist" in e.digest for e in manifest(m.step) if e.kind == "unresolved")


def test_the_same_code_fingerprints_alike_and_line_numbers_do_not_count(module):
    a = module("proj_e", '''
        def step(x):
            return x + 1
    ''')
    b = module("proj_f", '''


        def step(x):
            # moved down, commented
            return x + 1
    ''')
    fa = [e._replace(name=e.name.replace("proj_e", "M"), file="", line=0) for e in manifest(a.step)]
    fb = [e._replace(name=e.name.replace("proj_f", "M"), file="", line=0) for e in manifest(b.step)]
    assert fa == fb
    assert fingerprint(a.step) != fingerprint(b.step)  # but the module is part of each name


# -- property tests -----------------------------------------------------------------------------

_text = st.text(max_size=30)
_entry = st.builds(Entry, st.sampled_from(["code", "const", "package", "unresolved"]), _text, _text,
                   st.text(alphabet="abc/._-", max_size=20).map(lambda s: "/elsewhere/" + s if s else ""),
                   st.integers(min_value=0, max_value=10**6))


@given(st.lists(_entry, max_size=20))
def test_a_manifest_reads_back_as_it_was_written(entries):
    entries = tuple(entries)
    assert codemanifest.decode(codemanifest.encode(entries, None)) == entries


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_a_manifest_that_is_not_one_reads_as_none_never_an_error(data):
    out = codemanifest.decode(data)
    assert out is None or all(isinstance(e, Entry) for e in out)


@given(st.lists(st.sampled_from(["# a comment", "", "    # indented comment", "   "]), min_size=1, max_size=6),
       st.integers(min_value=0, max_value=6))
def test_comments_and_blank_lines_never_change_a_digest(inserted, where):
    src = ["def f(x):", "    y = x + 1", "    return y * 2", "", "class C:", "    def m(self):", "        return 3"]
    edited = src[:where] + [line if line.strip() == "" or where in (0, 4) else "    " + line.lstrip()
                            for line in inserted] + src[where:]
    a, b = sourcedigest.parse("\n".join(src)), sourcedigest.parse("\n".join(edited))
    assert a is not None and b is not None
    digests = lambda d: sorted(x.digest for defs in (*d.functions.values(), *d.classes.values()) for x in defs)  # noqa: E731
    assert digests(a) == digests(b)


def test_a_manifest_that_decodes_only_in_part_is_refused():
    good = codemanifest.encode((Entry("code", "m.f", "ab", "m.py", 3),), None)
    d = json.loads(good)
    d["entries"].append(["code", "m.g", "cd", "m.py", "3"])  # a line that is not an int
    assert codemanifest.decode(json.dumps(d).encode()) is None

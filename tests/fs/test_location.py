"""The REF/PATH parser behind zcas:// URLs: property tests and the refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zcas.fs.location import BadLocationError, Location, parse, unparse

NAME = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda s: s not in (".", ".."))
TAG = st.from_regex(r"[A-Za-z_][A-Za-z0-9._-]{0,20}", fullmatch=True)
HEX = st.from_regex(r"[0-9a-f]{4,64}", fullmatch=True)
HIST = st.lists(NAME, min_size=1, max_size=4).map("/".join)


@st.composite
def locations(draw: st.DrawFn) -> Location:
    path = "/".join(draw(st.lists(NAME, max_size=4)))
    if draw(st.booleans()):
        return Location(draw(st.one_of(TAG, HEX)), None, path)
    return Location(draw(HIST), draw(st.integers(1, 10**6)), path)


@given(locations(), st.sampled_from(["", "zcas://", "zcas::", "/"]), st.sampled_from(["", "/"]))
def test_unparse_parses_back(loc, head, tail):
    text = head + unparse(loc) + tail
    assert parse(text) == loc


@given(locations())
def test_ref_is_always_the_first_segment(loc):
    """A name ending in @N inside a tree stays a name: only the first segment is a REF."""
    deeper = Location(loc.ref, loc.version, "/".join([*loc.parts, "file@2"]))
    assert parse(unparse(deeper)) == deeper


@given(st.text(max_size=60))
def test_any_text_parses_or_is_refused_in_one_line(text):
    try:
        loc = parse(text)
    except BadLocationError as e:
        assert isinstance(e, ValueError) and "\n" not in str(e)
        return
    assert ".." not in loc.parts and "." not in loc.parts and "" not in loc.parts
    assert parse(unparse(loc)) == loc


@pytest.mark.parametrize("text, why", [
    ("", "no REF"), ("zcas://", "no REF"), ("v1/../x", "not a name"), ("v1/./x", "not a name"),
    ("data@0/x", "a number from 1"), ("data@x", "a number from 1"), ("@2", "PATH@N"), ("..%2Fx@1", "PATH@N"),
    ("bad%20tag/x", "not a tag name"), ("-x/y", "not a tag name"),
])
def test_refused(text, why):
    with pytest.raises(BadLocationError, match=why):
        parse(text)


def test_examples():
    assert parse("zcas://v1/data/train.csv") == Location("v1", None, "data/train.csv")
    assert parse("data@2/train.csv") == Location("data", 2, "train.csv")
    assert parse("data%2Fraw.csv@3") == Location("data/raw.csv", 3, "")
    assert parse("a@b@4") == Location("a@b", 4, "")
    assert parse("v1//x/") == Location("v1", None, "x")

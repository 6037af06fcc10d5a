"""Property tests for the stored encodings: codec records, trees, manifests, pack indexes."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zcas.cas import codec
from zcas.cas.errors import IntegrityError, UnsafePathError, ZcasError
from zcas.cas.manifest import MIN_CHUNK, decode_manifest, encode_manifest
from zcas.cas.oid import check_prefix, from_hex, hash_bytes
from zcas.cas.pack import decode_index, encode_index
from zcas.cas.tree import MODES, TreeEntry, check_link_target, decode_tree, encode_tree

names = st.binary(min_size=1, max_size=40).filter(lambda b: b not in (b".", b"..") and b"/" not in b and b"\0" not in b)
entries = st.lists(
    st.tuples(names, st.sampled_from(sorted(MODES)), st.binary(min_size=32, max_size=32)),
    unique_by=lambda t: t[0],
    max_size=30,
)


@given(st.binary(max_size=5000), st.sampled_from([codec.KIND_BLOB, codec.KIND_TREE]))
def test_codec_roundtrip(payload, kind):
    rec = codec.encode(kind, payload)
    assert codec.decode("x", rec) == (kind, payload)


@given(st.binary(max_size=2000))
def test_codec_never_grows_much(payload):
    assert len(codec.encode(codec.KIND_BLOB, payload)) <= len(payload) + codec.HEADER_SIZE


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_codec_decode_garbage_only_raises_documented_errors(data):
    try:
        codec.decode("x", data)
    except IntegrityError:
        pass


def test_codec_header_lying_about_size_is_refused():
    payload = b"a" * 100_000
    rec = codec.encode(codec.KIND_BLOB, payload)
    assert rec[1] == codec.CODEC_ZSTD
    lie_small = struct.pack("<BBQ", codec.KIND_BLOB, codec.CODEC_ZSTD, 10) + rec[codec.HEADER_SIZE :]
    with pytest.raises(IntegrityError):
        codec.decode("x", lie_small)
    lie_huge = struct.pack("<BBQ", codec.KIND_BLOB, codec.CODEC_ZSTD, 1 << 40) + rec[codec.HEADER_SIZE :]
    with pytest.raises(IntegrityError, match="exceeds"):
        codec.decode("x", lie_huge)


def test_decompression_bomb_without_content_size_is_bounded():
    import zstandard

    # A frame that omits its content size and inflates to 64 MiB: refused, not inflated.
    cobj = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    bomb = cobj.compress(b"\0" * (64 << 20)) + cobj.flush()
    rec = struct.pack("<BBQ", codec.KIND_BLOB, codec.CODEC_ZSTD, 1000) + bomb
    with pytest.raises(IntegrityError):
        codec.decode("x", rec)


@given(entries)
def test_tree_roundtrip_is_canonical(items):
    es = [TreeEntry(n, m, o) for n, m, o in items]
    enc = encode_tree(es)
    assert encode_tree(list(reversed(es))) == enc  # order of input never matters
    assert decode_tree("t", enc) == sorted(es, key=lambda e: e.name)


def _single_byte_change(decode, items, pos: int, delta: int) -> None:
    """A tree has one encoding: bytes that differ from a tree's anywhere either fail to
    decode, or decode to other entries, whose encoding is exactly those bytes (so no two
    encodings stand for one tree, and a changed id always means a changed tree)."""
    original = sorted((TreeEntry(n, m, o) for n, m, o in items), key=lambda e: e.name)
    enc = encode_tree(original)
    pos %= len(enc)
    mutated = enc[:pos] + bytes([(enc[pos] + delta) % 256]) + enc[pos + 1 :]
    assert mutated != enc and hash_bytes(mutated) != hash_bytes(enc)
    try:
        got = decode(hash_bytes(mutated), mutated)
    except ZcasError:
        return
    assert got != original
    assert encode_tree(got) == mutated


@given(entries, st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=255))
def test_tree_any_single_byte_change_changes_id_or_fails(items, pos, delta):
    _single_byte_change(decode_tree, items, pos, delta)


def _lenient_decode(tree_id, payload: bytes) -> list[TreeEntry]:
    """A decoder that forgives unsorted names (it sorts them): two encodings, one tree."""
    (count,) = struct.unpack_from("<I", payload, 6)
    pos, out = 10, []
    for _ in range(count):
        mode, oid, n = struct.unpack_from("<B32sH", payload, pos)
        out.append(TreeEntry(payload[pos + 35 : pos + 35 + n], mode, oid))
        pos += 35 + n
    return sorted(out, key=lambda e: e.name)


def test_tree_single_byte_change_property_can_fail():
    items = [(b"a", 1, b"\1" * 32), (b"c", 1, b"\2" * 32)]
    at = 10 + 35  # the name of the first entry: "a" becomes "d", after "c"
    _single_byte_change(decode_tree, items, at, 3)  # the real decoder refuses the unsorted tree
    with pytest.raises(AssertionError):
        _single_byte_change(_lenient_decode, items, at, 3)


@given(st.binary(max_size=400))
@settings(max_examples=300)
def test_tree_decode_garbage_only_raises_documented_errors(data):
    try:
        decode_tree("t", b"ZTREE\x01" + data)
    except ZcasError:
        pass


def _raw_tree(*items):
    out = [b"ZTREE\x01", struct.pack("<I", len(items))]
    for mode, name in items:
        out.append(struct.pack("<B32sH", mode, b"\1" * 32, len(name)) + name)
    return b"".join(out)


@pytest.mark.parametrize("name", [b"", b".", b"..", b"a/b", b"../x", b"nul\0", b"/abs"])
def test_hostile_tree_names_refused(name):
    with pytest.raises(UnsafePathError):
        decode_tree("t", _raw_tree((1, name)))


def test_duplicate_names_refused():
    with pytest.raises(UnsafePathError, match="duplicate"):
        decode_tree("t", _raw_tree((1, b"a"), (1, b"a")))


@pytest.mark.parametrize(
    "rel,target,ok",
    [
        ("", b"a.txt", True),
        ("sub", b"../a.txt", True),
        ("", b"../a.txt", False),
        ("sub", b"../../etc/passwd", False),
        ("", b"/etc/passwd", False),
        ("a/b", b"../../c", True),
        ("a/b", b"../../../c", False),
        ("", b"x/../../y", False),
    ],
)
def test_link_targets(rel, target, ok):
    if ok:
        check_link_target(rel, "l", target)
    else:
        with pytest.raises(UnsafePathError):
            check_link_target(rel, "l", target)


@given(st.lists(st.tuples(st.binary(min_size=32, max_size=32), st.integers(MIN_CHUNK, codec.MAX_SIZE[codec.KIND_BLOB])),
                max_size=20),
       st.integers(1, MIN_CHUNK))
def test_manifest_roundtrip(items, last):
    items = [*items, (b"\7" * 32, last)]  # FastCDC cuts only a file's last chunk shorter
    total = sum(n for _, n in items)
    assert decode_manifest("m", encode_manifest(total, items)) == (total, items)


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_manifest_decode_garbage_only_raises_documented_errors(data):
    try:
        decode_manifest("m", data)
    except IntegrityError:
        pass


def test_manifest_lengths_must_add_up():
    with pytest.raises(IntegrityError):
        decode_manifest("m", encode_manifest(5, [(b"\0" * 32, 4)]))


@pytest.mark.parametrize("n", [0, codec.MAX_SIZE[codec.KIND_BLOB] + 1, 2**32 - 1])
def test_attack_manifest_chunk_of_impossible_length(n):
    """Zero-length chunks would let a tiny file list millions of entries; a chunk over the
    blob limit could never be read: both are refused when the manifest is decoded."""
    with pytest.raises(IntegrityError, match="impossible length"):
        decode_manifest("m", encode_manifest(n, [(b"\1" * 32, n)]))


def test_attack_manifest_of_a_million_one_byte_chunks():
    """A few bytes of file listed as a million chunks: refused before they are unpacked."""
    n = 1_000_000
    payload = struct.pack("<Q", n) + (b"\1" * 32 + struct.pack("<I", 1)) * n
    with pytest.raises(IntegrityError, match="more chunks than its size allows"):
        decode_manifest("m", payload)


@given(st.dictionaries(st.binary(min_size=32, max_size=32),
                       st.tuples(st.integers(16, 2**40), st.integers(0, 2**31), st.integers(1, 3), st.integers(0, 2**40)),
                       max_size=30))
def test_pack_index_roundtrip_and_checksum(entries_):
    idx = encode_index(entries_)
    got = decode_index("p", idx)
    assert [t[0] for t in got] == sorted(entries_)
    assert all(entries_[t[0]] == t[1:] for t in got)
    if entries_:
        bad = bytearray(idx)
        bad[20] ^= 1
        with pytest.raises(IntegrityError):
            decode_index("p", bytes(bad))


@pytest.mark.parametrize("text", ["", "abc", "xyz12", "g" * 64, "a" * 65, "12 34"])
def test_bad_id_text(text):
    with pytest.raises(ZcasError):
        check_prefix(text)


def test_full_id_parse():
    assert from_hex("ab" * 32) == b"\xab" * 32
    with pytest.raises(ZcasError):
        from_hex("AB" * 31)

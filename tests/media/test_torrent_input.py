"""Parsers for what users and peers hand us: .torrent bytes, magnets, content ids, media paths."""

from __future__ import annotations

import base64
import hashlib
import os

import libtorrent as lt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.bencode import decode, encode
from media.torrent_input import (
    content_id_for,
    parse_magnet,
    parse_torrent,
    path_under_root,
    validate_content_id,
    validate_infohash,
    validate_peers,
)
from media.torrent_make import make_torrent_v1
from tva.errors import DecodeError, InvalidInput, RemoteDataError, TooLarge, UnsupportedVersion

bvalues = st.recursive(
    st.integers(-(2**70), 2**70) | st.binary(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.binary(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(bvalues)
def test_bencode_round_trips(value):
    assert decode(encode(value), bytes_max=1 << 20) == value


@given(st.binary(max_size=200))
def test_bencode_garbage_gives_decode_error_or_a_value(data):
    try:
        value = decode(data, bytes_max=1 << 20)
    except DecodeError:
        return
    assert encode(value) == data or isinstance(value, dict)  # unsorted keys are tolerated


@pytest.mark.parametrize(
    "data",
    [b"", b"i01e", b"i-0e", b"ie", b"i12", b"5:abc", b"l", b"d1:a", b"di1ei2ee", b"d1:ai1e1:ai2ee",
     b"i1ei2e", b"x", b"l" * 100 + b"e" * 100, b"-1:a"],
)
def test_bencode_rejects_malformed(data):
    with pytest.raises(DecodeError):
        decode(data, bytes_max=1 << 20)


def test_bencode_size_limit():
    with pytest.raises(TooLarge):
        decode(b"i1e" + b" " * 100, bytes_max=50)


def _torrent(tmp_path, name="Some Show S01E01.mkv", size=70_000, trackers=()) -> bytes:
    p = tmp_path / name
    p.write_bytes(hashlib.sha256(name.encode()).digest() * (size // 32) + b"x" * (size % 32))
    return make_torrent_v1(str(p), trackers)


def test_parse_torrent_agrees_with_libtorrent(tmp_path):
    data = _torrent(tmp_path, trackers=("http://127.0.0.1:1/announce",))
    meta = parse_torrent(data)
    ti = lt.torrent_info(data)
    assert meta.infohash == str(ti.info_hash())
    assert meta.name == ti.name() and meta.size_bytes == ti.total_size() == 70_000
    assert meta.file_count == 1 and not meta.private
    assert meta.trackers == ("http://127.0.0.1:1/announce",)


def test_parse_multi_file_torrent(tmp_path):
    d = tmp_path / "Album"
    (d / "cd1").mkdir(parents=True)
    (d / "cd1" / "01.flac").write_bytes(b"a" * 40_000)
    (d / "cover.jpg").write_bytes(b"b" * 5_000)
    data = make_torrent_v1(str(d))
    meta = parse_torrent(data)
    assert (meta.name, meta.file_count, meta.size_bytes) == ("Album", 2, 45_000)
    assert meta.infohash == str(lt.torrent_info(data).info_hash())


def _with_info(info: dict) -> bytes:
    return encode({b"info": info})


GOOD_INFO = {b"name": b"a.bin", b"piece length": 16384, b"pieces": b"\x01" * 20, b"length": 100}


@pytest.mark.parametrize(
    "info",
    [
        {**GOOD_INFO, b"name": b"../../etc/passwd"},
        {**GOOD_INFO, b"name": b".."},
        {**GOOD_INFO, b"name": b""},
        {**GOOD_INFO, b"name": b"\xff\xfe"},
        {**GOOD_INFO, b"piece length": 1000},
        {**GOOD_INFO, b"pieces": b"\x01" * 19},
        {**GOOD_INFO, b"pieces": b"\x01" * 40},  # two pieces for 100 bytes
        {**GOOD_INFO, b"length": -1},
        {**GOOD_INFO, b"length": 0},
        {k: v for k, v in GOOD_INFO.items() if k != b"length"},
        {**GOOD_INFO, b"files": [{b"path": [b"x"], b"length": 1}]},  # both length and files
        {**{k: v for k, v in GOOD_INFO.items() if k != b"length"},
         b"files": [{b"path": [b"ok", b".."], b"length": 100}]},
        {**{k: v for k, v in GOOD_INFO.items() if k != b"length"},
         b"files": [{b"path": [b"a/b"], b"length": 100}]},
        {**{k: v for k, v in GOOD_INFO.items() if k != b"length"}, b"files": []},
    ],
)
def test_parse_torrent_refuses_bad_or_unsafe_info(info):
    with pytest.raises(DecodeError):
        parse_torrent(_with_info(info))


def test_parse_torrent_refuses_non_torrents_and_v2_only():
    for data in (b"", b"le", encode({b"announce": b"x"}), encode({b"info": 5}), encode([GOOD_INFO])):
        with pytest.raises(DecodeError):
            parse_torrent(data)
    v2 = {b"name": b"a", b"piece length": 16384, b"meta version": 2, b"file tree": {}}
    with pytest.raises(UnsupportedVersion):
        parse_torrent(_with_info(v2))


def test_minimal_torrent_is_accepted_and_hashed_over_raw_info():
    data = _with_info(GOOD_INFO)
    meta = parse_torrent(data)
    assert meta.infohash == hashlib.sha1(encode(GOOD_INFO)).hexdigest()
    assert (meta.name, meta.size_bytes, meta.piece_bytes) == ("a.bin", 100, 16384)


@given(st.data())
def test_mutated_torrents_never_crash_the_parser(data):
    raw = bytearray(_with_info({**GOOD_INFO, b"private": 1}))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        meta = parse_torrent(bytes(raw))
    except RemoteDataError:
        return
    assert len(meta.infohash) == 40 and meta.size_bytes > 0 and "/" not in meta.name


@given(st.binary(max_size=300))
def test_garbage_torrent_bytes_give_remote_data_errors(data):
    with pytest.raises(RemoteDataError):
        parse_torrent(data)


IH = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a"


def test_magnets_hex_and_base32():
    m = parse_magnet(f"magnet:?xt=urn:btih:{IH.upper()}&dn=Some+Show&tr=http%3A%2F%2Ft%2Fa&x.pe=127.0.0.1:6881")
    assert (m.infohash, m.name, m.trackers, m.peers) == (IH, "Some Show", ("http://t/a",), (("127.0.0.1", 6881),))
    b32 = base64.b32encode(bytes.fromhex(IH)).decode()
    assert parse_magnet(f"magnet:?xt=urn:btih:{b32.lower()}").infohash == IH
    assert parse_magnet(f"magnet:?xt=urn:btih:{IH}&x.pe=[::1]:7").peers == (("::1", 7),)


@pytest.mark.parametrize(
    "uri",
    ["", "http://x", "magnet:?", "magnet:?dn=x", f"magnet:?xt=urn:btih:{IH}&xt=urn:btih:{IH}",
     "magnet:?xt=urn:btih:" + "g" * 40, "magnet:?xt=urn:btih:" + "a" * 39, "magnet:?xt=urn:btmh:1220" + "a" * 64,
     f"magnet:?xt=urn:btih:{IH}&x.pe=nohost", f"magnet:?xt=urn:btih:{IH}&x.pe=h:0",
     f"magnet:?xt=urn:btih:{IH}&dn=%FF", "magnet:?xt=urn:btih:" + IH + "&" + "a" * 9000, None, 5],
)
def test_bad_magnets_are_invalid_input(uri):
    with pytest.raises(InvalidInput):
        parse_magnet(uri)


@given(st.text(max_size=120))
def test_garbage_magnets_never_crash(text):
    for uri in (text, "magnet:?" + text, f"magnet:?xt=urn:btih:{IH}&" + text):
        try:
            m = parse_magnet(uri)
        except InvalidInput:
            continue
        assert len(m.infohash) == 40


@given(st.text(max_size=300), st.text("0123456789abcdef", min_size=40, max_size=40))
def test_content_ids_are_valid_stable_and_carry_the_infohash(name, ih):
    cid = content_id_for(name, ih)
    assert validate_content_id(cid) == cid and 1 <= len(cid) <= 128
    assert cid.endswith("-" + ih[:8]) and cid == content_id_for(name, ih)


def test_content_id_examples_and_rejects():
    assert content_id_for("Some Show S01E01 (1080p).mkv", IH) == "Some-Show-S01E01-1080p-.mkv-c12fe1c0"
    assert content_id_for("///", IH) == "item-c12fe1c0"
    for bad in ("", "a b", "x" * 129, "ü", None):
        with pytest.raises(InvalidInput):
            validate_content_id(bad)
    with pytest.raises(InvalidInput):
        content_id_for("x", "nothex")
    with pytest.raises(InvalidInput):
        validate_infohash("a" * 41)


def test_paths_must_stay_under_the_media_root(tmp_path):
    root = tmp_path / "media"
    (root / "shows").mkdir(parents=True)
    (root / "shows" / "a.mkv").write_bytes(b"x")
    (tmp_path / "secret").write_bytes(b"x")
    os.symlink(tmp_path / "secret", root / "link")
    assert path_under_root(str(root), "shows/a.mkv") == str((root / "shows" / "a.mkv").resolve())
    assert path_under_root(str(root), str(root / "shows")) == str((root / "shows").resolve())
    for bad in ("../secret", str(tmp_path / "secret"), "link", "shows/../../secret", ".", "", "nope.mkv",
                "a\x00b"):
        with pytest.raises(InvalidInput):
            path_under_root(str(root), bad)


@given(st.text(max_size=60))
def test_garbage_paths_stay_inside_or_are_refused(tmp_path_factory, text):
    root = tmp_path_factory.getbasetemp() / "garbage-root"
    root.mkdir(exist_ok=True)
    try:
        full = path_under_root(str(root), text)
    except InvalidInput:
        return
    assert full.startswith(str(root.resolve()) + os.sep)


def test_peer_endpoints_are_ip_literals_with_real_ports():
    assert validate_peers([("127.0.0.1", 1), ("::1", 65535)]) == (("127.0.0.1", 1), ("::1", 65535))
    assert validate_peers([("fd00:0::5", 7)]) == (("fd00::5", 7),)
    for bad in ([("example.org", 1)], [("127.0.0.1", 0)], [("127.0.0.1", 70000)], [("127.0.0.1", True)],
                [("127.0.0.1",)], "127.0.0.1:5", [None], [("1.2.3.4", "80")]):
        with pytest.raises(InvalidInput):
            validate_peers(bad)


@given(st.lists(st.tuples(st.text(max_size=20) | st.ip_addresses().map(str), st.integers(-5, 70000)), max_size=4))
def test_garbage_peer_lists_are_refused_whole_or_accepted_clean(peers):
    try:
        out = validate_peers(peers)
    except InvalidInput:
        return
    assert len(out) == len(peers) and all(0 < p <= 65535 for _, p in out)

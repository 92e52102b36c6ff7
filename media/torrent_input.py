"""Validation of everything a torrent command or a peer hands us (pure, apart from path checks).

* ``.torrent`` bytes (from a file or another fleet host) → ``TorrentMeta`` or ``DecodeError``;
* magnet URIs (from the CLI) → ``Magnet`` or ``InvalidInput``;
* content ids derived from a name and an infohash;
* paths that must stay under the media root (no ``..``, no symlink escape);
* peer endpoints handed to an engine to dial.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import re
import urllib.parse
from dataclasses import dataclass

from media.bencode import decode_with_info_span
from tva.errors import DecodeError, InvalidInput, UnsupportedVersion

TORRENT_BYTES_MAX = 16 * 1024 * 1024  # a 16 MiB .torrent already describes ~1 TB at 1 MiB pieces
MAGNET_CHARS_MAX = 8192
NAME_CHARS_MAX = 255
FILES_MAX = 100_000
CONTENT_ID_CHARS_MAX = 128
_CONTENT_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_HEX40_RE = re.compile(r"[0-9a-fA-F]{40}")
_B32_RE = re.compile(r"[A-Za-z2-7]{32}")


@dataclass(frozen=True)
class TorrentMeta:
    infohash: str  # v1, 40 lowercase hex
    name: str
    size_bytes: int
    piece_bytes: int
    file_count: int
    private: bool
    trackers: tuple[str, ...]


@dataclass(frozen=True)
class Magnet:
    infohash: str  # v1, 40 lowercase hex
    name: str | None
    trackers: tuple[str, ...]
    peers: tuple[tuple[str, int], ...]  # x.pe hints


def validate_infohash(value: object) -> str:
    """A v1 infohash as 40 lowercase hex characters."""
    if not isinstance(value, str) or not _HEX40_RE.fullmatch(value):
        raise InvalidInput(f"infohash {value!r} is not 40 hex characters", hint="a v1 BitTorrent infohash")
    return value.lower()


def _text(raw: object, what: str) -> str:
    if not isinstance(raw, bytes):
        raise DecodeError(f"torrent: {what} is not a byte string")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"torrent: {what} is not UTF-8") from None
    return text


def _path_part(raw: object, what: str) -> str:
    """One file-name component: it must not be able to leave the download directory."""
    part = _text(raw, what)
    if not part or part in (".", "..") or "/" in part or "\\" in part or "\x00" in part:
        raise DecodeError(f"torrent: unsafe {what} {part[:60]!r}")
    if len(part) > NAME_CHARS_MAX:
        raise DecodeError(f"torrent: {what} longer than {NAME_CHARS_MAX} characters")
    return part


def _length(raw: object, what: str) -> int:
    if not isinstance(raw, int) or raw < 0:
        raise DecodeError(f"torrent: {what} is not a non-negative integer")
    return raw



def save_dir_under(media_root: str, save_dir: str | None) -> str:
    """Where an engine saves a download: the media root, or an existing directory inside it."""
    if save_dir is None:
        return media_root
    full = path_under_root(media_root, save_dir)
    if not os.path.isdir(full):
        raise InvalidInput(f"save dir {save_dir!r} is not a directory")
    return full


def read_torrent_file(path: str) -> bytes:
    """A local .torrent file's bytes, refusing a file too large to be one (the CLI and the daemon)."""
    try:
        with open(path, "rb") as f:
            data = f.read(TORRENT_BYTES_MAX + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read {path!r}: {exc.strerror}", hint="check the .torrent path") from None
    if len(data) > TORRENT_BYTES_MAX:
        raise InvalidInput(f"{path!r} is larger than {TORRENT_BYTES_MAX} bytes", hint="is it a .torrent?")
    return data

def parse_torrent(data: bytes) -> TorrentMeta:
    """Validate .torrent bytes; raise a ``RemoteDataError`` subclass on any problem."""
    top, span = decode_with_info_span(data, bytes_max=TORRENT_BYTES_MAX)
    if not isinstance(top, dict) or span is None:
        raise DecodeError("torrent: no top-level dictionary with an 'info' entry")
    info = top[b"info"]
    if not isinstance(info, dict):
        raise DecodeError("torrent: 'info' is not a dictionary")
    if b"pieces" not in info and info.get(b"meta version") == 2:
        raise UnsupportedVersion("torrent: v2-only torrents are not supported (need v1 or hybrid)")
    name = _path_part(info.get(b"name"), "name")
    piece_bytes = info.get(b"piece length")
    if not isinstance(piece_bytes, int) or piece_bytes < 16 * 1024 or piece_bytes & (piece_bytes - 1):
        raise DecodeError("torrent: 'piece length' must be a power of two of at least 16 KiB")
    pieces = info.get(b"pieces")
    if not isinstance(pieces, bytes) or not pieces or len(pieces) % 20:
        raise DecodeError("torrent: 'pieces' is not a non-empty multiple of 20 bytes")
    if (b"length" in info) == (b"files" in info):
        raise DecodeError("torrent: exactly one of 'length' and 'files' must be present")
    if b"length" in info:
        size, count = _length(info[b"length"], "length"), 1
    else:
        files = info[b"files"]
        if not isinstance(files, list) or not files or len(files) > FILES_MAX:
            raise DecodeError(f"torrent: 'files' must be a list of 1..{FILES_MAX} entries")
        size = 0
        for f in files:
            if not isinstance(f, dict) or not isinstance(f.get(b"path"), list) or not f[b"path"]:
                raise DecodeError("torrent: a file entry lacks a non-empty 'path' list")
            for part in f[b"path"]:
                _path_part(part, "file path component")
            size += _length(f.get(b"length"), "file length")
        count = len(files)
    if size == 0:
        raise DecodeError("torrent: total size is zero")
    if -(-size // piece_bytes) != len(pieces) // 20:
        raise DecodeError("torrent: piece count does not match the total size")
    private = info.get(b"private") == 1
    trackers = _trackers(top)
    infohash = hashlib.sha1(data[span[0] : span[1]]).hexdigest()
    return TorrentMeta(infohash, name, size, piece_bytes, count, private, trackers)


def info_only(data: bytes) -> bytes:
    """The same torrent with nothing but its info dictionary (byte for byte, so the infohash is
    unchanged): no announce URL, no tracker list, no comment. What a fleet or friend copy of a
    closed item gets — a private tracker's passkey lives in its announce URL and never travels."""
    top, span = decode_with_info_span(data, bytes_max=TORRENT_BYTES_MAX)
    if not isinstance(top, dict) or span is None:
        raise DecodeError("torrent: no top-level dictionary with an 'info' entry")
    return b"d4:info" + bytes(data[span[0]:span[1]]) + b"e"


def _trackers(top: dict) -> tuple[str, ...]:
    urls: list[str] = []
    if isinstance(top.get(b"announce"), bytes):
        urls.append(_text(top[b"announce"], "announce URL"))
    tiers = top.get(b"announce-list", [])
    if isinstance(tiers, list):
        for tier in tiers:
            if isinstance(tier, list):
                urls.extend(_text(u, "announce URL") for u in tier if isinstance(u, bytes))
    return tuple(dict.fromkeys(urls))


def parse_magnet(uri: object) -> Magnet:
    """A ``magnet:?xt=urn:btih:…`` link (hex or base32 v1 infohash)."""
    if not isinstance(uri, str) or len(uri) > MAGNET_CHARS_MAX:
        raise InvalidInput("magnet link is not a string of reasonable length", hint="magnet:?xt=urn:btih:…")
    if not uri.lower().startswith("magnet:?"):
        raise InvalidInput(f"not a magnet link: {uri[:60]!r}", hint="it starts with magnet:?")
    try:
        params = urllib.parse.parse_qs(uri[len("magnet:?") :], strict_parsing=True, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput(f"magnet link query is malformed: {uri[:60]!r}") from None
    hashes = [
        v[len("urn:btih:") :] for v in params.get("xt", []) if v.lower().startswith("urn:btih:")
    ]
    if len(hashes) != 1:
        raise InvalidInput("magnet link needs exactly one xt=urn:btih:<infohash>", hint="v1 magnets only")
    infohash = _magnet_hash(hashes[0])
    names = params.get("dn", [])
    name = names[0] if names else None
    if name is not None and (len(name) > NAME_CHARS_MAX or "\x00" in name):
        raise InvalidInput("magnet display name is too long or has NUL characters")
    trackers = tuple(dict.fromkeys(params.get("tr", [])))
    peers = tuple(_endpoint(p) for p in params.get("x.pe", []))
    return Magnet(infohash, name, trackers, peers)


def _magnet_hash(text: str) -> str:
    if _HEX40_RE.fullmatch(text):
        return text.lower()
    if _B32_RE.fullmatch(text):
        return base64.b32decode(text.upper()).hex()
    raise InvalidInput(f"magnet infohash {text[:60]!r} is neither 40 hex nor 32 base32 characters")


def _endpoint(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise InvalidInput(f"magnet peer {text[:60]!r} is not host:port")
    return host, int(port)


def validate_peers(peers: object) -> tuple[tuple[str, int], ...]:
    """Peer endpoints to dial: IP literals and ports 1..65535, all checked before any is used."""
    if not isinstance(peers, (list, tuple)):
        raise InvalidInput("peers must be a list of (ip, port) pairs")
    out = []
    for p in peers:
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise InvalidInput(f"peer {str(p)[:60]!r} is not an (ip, port) pair")
        host, port = p
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise InvalidInput(f"peer address {str(host)[:60]!r} is not an IP address") from None
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port <= 65535:
            raise InvalidInput(f"peer port {port!r} is out of range 1..65535")
        out.append((str(ip), port))
    return tuple(out)


def content_id_for(name: str, infohash: str) -> str:
    """A stable content id: a slug of the name plus the first 8 hex digits of the infohash."""
    ih = validate_infohash(infohash)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[: CONTENT_ID_CHARS_MAX - 9]
    slug = slug.rstrip("-._") or "item"
    return validate_content_id(f"{slug}-{ih[:8]}")


def validate_content_id(value: object) -> str:
    if not isinstance(value, str) or not _CONTENT_ID_RE.fullmatch(value):
        raise InvalidInput(
            f"content id {str(value)[:60]!r} is invalid", hint="1-128 characters of A-Z a-z 0-9 . _ : -"
        )
    return value


def path_under_root(media_root: str, path: str) -> str:
    """The real path of ``path``, which must exist strictly inside ``media_root`` (symlinks resolved)."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise InvalidInput(f"path {str(path)[:60]!r} is empty or malformed")
    root = os.path.realpath(media_root)
    full = os.path.realpath(os.path.join(root, path))  # relative paths are taken from the root
    prefix = root if root.endswith(os.sep) else root + os.sep
    if not full.startswith(prefix) or full == root:
        raise InvalidInput(f"{path!r} is outside the media root {root}", hint="put it under the media root")
    if not os.path.exists(full):
        raise InvalidInput(f"{path!r} does not exist", hint="check the path")
    return full

"""Making .torrent files (blocking: hashes the data; run it in a worker thread).

Shared by both engines: the Transmission adapter seeds a local path by making the torrent here
and handing the bytes to the daemon.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import libtorrent as lt

HashProgress = Callable[[int, int], None]  # (bytes hashed, bytes in total), called in the hashing thread


def make_torrent_v1(full_path: str, trackers: tuple[str, ...] = (), progress: HashProgress | None = None) -> bytes:
    """A v1-only .torrent of a file or directory (blocking: hashes the data).

    v1 only because Transmission 3 speaks no v2, and a fleet item must be shareable with both.
    ``progress`` hears how far hashing got, once per piece, from this (worker) thread.
    """
    files = lt.list_files(full_path)
    ct = lt.create_torrent(files, 0, lt.create_torrent.v1_only)
    for tier, url in enumerate(trackers):
        ct.add_tracker(url, tier)
    ct.set_creator("tva-agent")
    if progress is None:
        lt.set_piece_hashes(ct, os.path.dirname(full_path))
    else:
        total, piece = sum(f.size for f in files), ct.piece_length()
        progress(0, total)
        lt.set_piece_hashes(ct, os.path.dirname(full_path), lambda i: progress(min(total, (i + 1) * piece), total))
    return lt.bencode(ct.generate())

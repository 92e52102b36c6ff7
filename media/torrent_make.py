"""Making .torrent files (blocking: hashes the data; run it in a worker thread).

Shared by both engines: the Transmission adapter seeds a local path by making the torrent here
and handing the bytes to the daemon.
"""

from __future__ import annotations

import os

import libtorrent as lt


def make_torrent_v1(full_path: str, trackers: tuple[str, ...] = ()) -> bytes:
    """A v1-only .torrent of a file or directory (blocking: hashes the data).

    v1 only because Transmission 3 speaks no v2, and a fleet item must be shareable with both.
    """
    ct = lt.create_torrent(lt.list_files(full_path), 0, lt.create_torrent.v1_only)
    for tier, url in enumerate(trackers):
        ct.add_tracker(url, tier)
    ct.set_creator("tva-agent")
    lt.set_piece_hashes(ct, os.path.dirname(full_path))
    return lt.bencode(ct.generate())

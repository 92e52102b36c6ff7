"""What ``tva-agent torrent add ARG`` does with its one argument, for any ``TorrentEngine``.

ARG is a magnet link (downloaded into the media root), a ``.torrent`` file (read with a size
limit, validated, downloaded into the media root) or a path under the media root (made into a
v1 torrent and seeded). The answer names the content id and the infohash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import trio

from media.engine import PublicChoice, TorrentEngine, decide_public
from media.torrent_input import content_id_for, parse_magnet, parse_torrent, read_torrent_file
from media.torrent_make import HashProgress
from tva.errors import InvalidInput


@dataclass(frozen=True)
class AddResult:
    kind: str  # 'magnet' | 'torrent_file' | 'seed'
    content_id: str
    infohash: str
    name: str




async def add_from_argument(engine: TorrentEngine, arg: str,
                            progress: HashProgress | None = None, public: PublicChoice = False) -> AddResult:
    """Dispatch on the argument's form; every input is validated before the engine sees it.
    ``progress`` hears how far hashing a path got (from the hashing worker thread); ``public``
    decides whether the torrent meets the public swarm (closed by default; see media.engine)."""
    if not isinstance(arg, str) or not arg:
        raise InvalidInput("torrent add needs PATH, MAGNET or FILE.torrent")
    if arg.lower().startswith("magnet:"):
        m = parse_magnet(arg)
        ih = await engine.add_magnet(arg, public=decide_public(public, m.infohash, False))
        name = m.name or ih
        return AddResult("magnet", content_id_for(name, ih), ih, name)
    if arg.lower().endswith(".torrent") and os.path.isfile(arg):
        data = await trio.to_thread.run_sync(read_torrent_file, arg)
        meta = parse_torrent(data)  # a RemoteDataError here: the file is bad, not the command
        ih = await engine.add_torrent(data, public=decide_public(public, meta.infohash, meta.private))
        return AddResult("torrent_file", content_id_for(meta.name, ih), ih, meta.name)
    ih, data = await engine.seed_path(arg, progress=progress, public=public)  # refuses anything outside the root
    name = parse_torrent(data).name
    return AddResult("seed", content_id_for(name, ih), ih, name)

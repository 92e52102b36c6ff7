"""Torrent engine throughput on loopback (issue 8). Needs only libtorrent (and trio).

    python bench/bench_torrent.py [--size-mib 64] [--rounds 3]

1. Engine to engine: two ``media.lt_engine`` engines (each its own libtorrent session in a trio
   nursery); one seeds a generated file (``seed_path``), the other is given the .torrent bytes and
   the seeder's endpoint (``add_torrent(..., peers=...)``) and polls ``samples()`` until complete.
2. Baseline in the same run: the same transfer between two bare libtorrent sessions with the same
   settings, driven by a plain blocking loop (no trio, no validation, no sampling layer).
Times run from "leecher adds the torrent" to "leecher holds every verified byte"; the file is then
hash-checked. Prints medians over the rounds and the engine/baseline ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import libtorrent as lt
import trio

from media.lt_engine import open_lt_engine
from media.lt_settings import SwarmFlags, build_settings
from media.torrent_make import make_torrent_v1

FLAGS = SwarmFlags(listen_addresses=("127.0.0.1",), utp=False)
POLL_S = 0.02
TIMEOUT_S = 120


def make_file(path: Path, size_bytes: int) -> str:
    with open(path, "wb") as f:
        block = b"tva-bench"
        while f.tell() < size_bytes:
            block = hashlib.sha256(block).digest() * 32768  # 1 MiB of incompressible-looking data
            f.write(block[: size_bytes - f.tell()])
    return sha256(path)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


async def engine_round(work: Path, size_bytes: int) -> float:
    a, b = work / "engine-a", work / "engine-b"
    a.mkdir()
    b.mkdir()
    digest = make_file(a / "payload.bin", size_bytes)
    async with open_lt_engine(str(a), FLAGS) as seeder, open_lt_engine(str(b), FLAGS) as leecher:
        ih, data = await seeder.seed_path("payload.bin")
        t0 = time.perf_counter()
        await leecher.add_torrent(data, peers=(("127.0.0.1", seeder.listen_port()),))
        with trio.fail_after(TIMEOUT_S):
            while True:
                s = [x for x in await leecher.samples() if x.infohash == ih]
                if s and s[0].progress >= 1.0 and s[0].state == "seeding":
                    break
                await trio.sleep(POLL_S)
        elapsed = time.perf_counter() - t0
    assert sha256(b / "payload.bin") == digest, "engine copy differs"
    return elapsed


def plain_round(work: Path, size_bytes: int) -> float:
    a, b = work / "plain-a", work / "plain-b"
    a.mkdir()
    b.mkdir()
    digest = make_file(a / "payload.bin", size_bytes)
    data = make_torrent_v1(str(a / "payload.bin"))
    settings = build_settings(FLAGS)
    s1, s2 = lt.session(settings), lt.session(settings)
    try:
        while s1.listen_port() == 0 or s2.listen_port() == 0:
            time.sleep(0.01)
        p1 = lt.add_torrent_params()
        p1.ti, p1.save_path = lt.torrent_info(data), str(a)
        p1.flags = (p1.flags | lt.torrent_flags.seed_mode) & ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
        s1.add_torrent(p1)
        t0 = time.perf_counter()
        p2 = lt.add_torrent_params()
        p2.ti, p2.save_path = lt.torrent_info(data), str(b)
        p2.flags &= ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
        h2 = s2.add_torrent(p2)
        h2.connect_peer(("127.0.0.1", s1.listen_port()))
        deadline = t0 + TIMEOUT_S
        while True:
            st = h2.status()
            if st.progress >= 1.0 and st.state == lt.torrent_status.seeding:
                break
            if time.perf_counter() > deadline:
                raise TimeoutError("plain transfer did not finish")
            time.sleep(POLL_S)
        elapsed = time.perf_counter() - t0
    finally:
        del s1, s2
    assert sha256(b / "payload.bin") == digest, "plain copy differs"
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    size = args.size_mib * 1024 * 1024
    engine, plain = [], []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="tva-bench-torrent-") as tmp:
            work = Path(tmp)
            # Alternate the order so neither side always gets the warmer page cache.
            if r % 2 == 0:
                engine.append(trio.run(engine_round, work, size))
                plain.append(plain_round(work, size))
            else:
                plain.append(plain_round(work, size))
                engine.append(trio.run(engine_round, work, size))
        print(f"round {r + 1}: engine {engine[-1]:.2f} s, plain {plain[-1]:.2f} s", flush=True)
    e, p = statistics.median(engine), statistics.median(plain)
    mib = args.size_mib
    print(f"\n{mib} MiB over loopback, median of {args.rounds} (cores: {os.cpu_count()})")
    print(f"  engine → engine (media.lt_engine, trio):  {e:6.2f} s  {mib / e:7.1f} MiB/s")
    print(f"  plain libtorrent → libtorrent (baseline): {p:6.2f} s  {mib / p:7.1f} MiB/s")
    print(f"  engine / baseline time: {e / p:.2f}x")


if __name__ == "__main__":
    main()

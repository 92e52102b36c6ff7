"""Figures for the media plane (issue 17), each beside a baseline measured in the same run.

    python bench/bench_media.py [--seconds 1200] [--range-mib 512] [--repeat 3] [--only ttfb|hls|ranges]

The media plane runs in a child process (a real ``MediaPlane`` over a real ``LibraryService``,
the daemon's code), so the measuring client never shares its interpreter. Clips are generated
by ffmpeg: a 1080p-class H.264 clip (1920x1080, 25 fps, ~8 Mbit/s; a 60-s piece repeated by stream
copy to ``--seconds``) with AAC audio, and the same with FLAC audio; the range figures use a file of random bytes (page cache warm in both arms).

* **Time to first byte**: ``GET`` with ``Range: bytes=0-65535`` on a fresh connection, to the
  first body byte (median of 50). Baseline: open + read of the same 64 KiB from the file.
* **Time to the first HLS segment** (cold: a file version the plane has not seen — probe,
  keyframe scan, then ffmpeg's first segment). Baseline: ffmpeg alone, same command, until its
  first segment is complete.
* **Remux throughput** (a 20-minute clip by default: all segments fetched in order by one client, as fast as it reads them,
  cold; the plane's probe and keyframe scan included) vs ffmpeg alone running the same command
  into a directory. Target ≥ 90 %. For the AAC clip (pure remux) and the FLAC clip (audio → AAC).
* **Range-read throughput**: the file read as consecutive 8 MiB ranges on one keep-alive
  connection (as players read), vs reading the file directly in 8 MiB chunks. Target ≥ 80 %.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHUNK = 8 * 1024 * 1024


# --- the child: a media plane over a library --------------------------------------------------------

def serve(root: str) -> None:
    import trio

    from agent.config import Config
    from agent.library_service import LibraryService
    from agent.media_plane import MediaPlane

    async def main() -> None:
        cfg = Config(state_dir=Path(root) / "state", media_root=Path(root) / "media", host_name="bench",
                     media_port=0, listen=("/ip4/127.0.0.1/tcp/0",), hls_cache_bytes_max=8 * 1024**3)
        library = LibraryService(cfg)
        await library.scan_now()
        plane = MediaPlane(cfg, library)
        async with trio.open_nursery() as nursery:
            await nursery.start(plane.run)
            items = {Path(i["path"]).name: i["id"] for i in library.items(where="local")}
            urls = {name: {"file": plane.urls_for(key, ttl_s=3600)["urls"][-1]["url"],
                           "hls": plane.urls_for(key, ttl_s=3600, hls=True)["urls"][-1]["url"]}
                    for name, key in items.items()}
            print(json.dumps({"port": plane.port, "urls": urls}), flush=True)
            await trio.sleep_forever()

    trio.run(main)


# --- a blocking HTTP/1.1 client -------------------------------------------------------------------------

class Conn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray(CHUNK)
        self.view = memoryview(self.buf)
        self.pending = b""

    def close(self) -> None:
        self.sock.close()

    def get(self, target: str, headers: dict[str, str] | None = None, *, keep: bool = False,
            first_byte: list | None = None) -> tuple[int, int, bytes | None]:
        """(status, body bytes, body if ``keep``); the body is read into a reused buffer."""
        lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{self.port}",
                 *(f"{k}: {v}" for k, v in (headers or {}).items())]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = self.pending
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        if first_byte is not None:
            if not rest:
                n = self.sock.recv_into(self.view[:1])
                rest = bytes(self.view[:n])
            first_byte.append(time.perf_counter())
        kept = bytearray(rest[:length]) if keep else None
        got = min(len(rest), length)
        self.pending = rest[length:]
        while got < length:
            n = self.sock.recv_into(self.view[:min(CHUNK, length - got)])
            if n == 0:
                raise ConnectionError("closed mid-body")
            if keep:
                kept += self.view[:n]
            got += n
        return status, got, bytes(kept) if keep else None


def target_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


# --- clips ------------------------------------------------------------------------------------------------

def make_clips(media: Path, seconds: int, range_mib: int) -> dict[str, Path]:
    """A 60-s 1080p piece encoded once, repeated (stream copy) to ``seconds``: a long film's structure
    without encoding it all."""
    media.mkdir(parents=True, exist_ok=True)
    piece = media.parent / "piece.mkv"
    base_s = min(60, seconds)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size=1920x1080:rate=25:duration={base_s}", "-f", "lavfi", "-i",
                    f"sine=frequency=440:sample_rate=48000:duration={base_s}", "-c:v", "libx264",
                    "-preset", "ultrafast", "-b:v", "8M", "-maxrate", "8M", "-bufsize", "16M", "-g", "50",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", str(piece)], check=True)
    listing = media.parent / "pieces.txt"
    listing.write_text(f"file '{piece}'\n" * max(1, seconds // base_s))
    out = {}
    for name, audio in (("Clip.1080p.AAC.mkv", "copy"), ("Clip.1080p.FLAC.mkv", "flac")):
        path = media / name
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
                        "-map", "0", "-c:v", "copy", "-c:a", audio, str(path)], check=True)
        out[name] = path
    noise = media / "Noise.bin.mkv"
    with noise.open("wb") as f:
        for _ in range(range_mib):
            f.write(os.urandom(1024 * 1024))
    out["Noise.bin.mkv"] = noise
    return out


# --- figures ---------------------------------------------------------------------------------------------

def ttfb(port: int, url: str, path: Path, n: int = 50) -> tuple[float, float]:
    ours, base = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        c = Conn(port)
        first: list[float] = []
        c.get(target_of(url), {"Range": "bytes=0-65535"}, first_byte=first)
        ours.append(first[0] - t0)
        c.close()
        t0 = time.perf_counter()
        with path.open("rb") as f:
            f.read(65536)
        base.append(time.perf_counter() - t0)
    return statistics.median(ours), statistics.median(base)


def fetch_all_segments(port: int, hls_url: str) -> tuple[float, float, int]:
    """(seconds to the first segment, seconds for all, segments) for one client, cold."""
    c = Conn(port)
    t0 = time.perf_counter()
    base = hls_url.split("index.m3u8")[0]
    query = hls_url.split("?")[1]
    _s, _n, playlist = c.get(target_of(base + "video.m3u8?" + query), keep=True)
    segments = [line for line in playlist.decode().splitlines() if line.startswith("seg/")]
    first = None
    for seg in segments:
        status, _n, _ = c.get(target_of(base + seg))
        assert status == 200, status
        first = first or time.perf_counter() - t0
    total = time.perf_counter() - t0
    c.close()
    return first, total, len(segments)


def ffmpeg_alone(path: Path) -> tuple[float, float]:
    """(seconds to the first complete segment, seconds for all) for the plane's own command."""
    from media.hls_plan import (
        keyframes_argv,
        parse_keyframes,
        parse_streams,
        plan_hls,
        probe_argv,
        transcode_argv,
    )

    facts = parse_streams(subprocess.run(probe_argv(str(path)), capture_output=True, check=True).stdout)
    keys = parse_keyframes(subprocess.run(keyframes_argv(str(path), 0), capture_output=True, check=True,
                                          text=True).stdout)
    plan = plan_hls(facts, keys)
    with tempfile.TemporaryDirectory() as out:
        argv = transcode_argv(plan, str(path), out, 0)
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        proc.stdout.readline()
        first = time.perf_counter() - t0
        proc.stdout.read()
        proc.wait()
        return first, time.perf_counter() - t0


def ranges(port: int, url: str, path: Path) -> tuple[float, float]:
    """MB/s reading the whole file by 8 MiB ranges over one connection, and reading it directly."""
    size = path.stat().st_size
    c = Conn(port)
    t0 = time.perf_counter()
    for start in range(0, size, CHUNK):
        status, _n, _ = c.get(target_of(url), {"Range": f"bytes={start}-{min(size, start + CHUNK) - 1}"})
        assert status == 206
    ours = size / (time.perf_counter() - t0) / 1e6
    c.close()
    buf = bytearray(CHUNK)
    t0 = time.perf_counter()
    with path.open("rb", buffering=0) as f:
        while f.readinto(buf):
            pass
    return ours, size / (time.perf_counter() - t0) / 1e6


RAW_SERVER = """
import os, socket, sys
path = sys.argv[1]
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
print(srv.getsockname()[1], flush=True)
while True:
    conn, _ = srv.accept()
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        off = 0
        while off < size:
            off += os.sendfile(conn.fileno(), f.fileno(), off, size - off)
    conn.close()
"""


def raw_socket_floor(path: Path) -> float:
    """MB/s of the same file pushed through a loopback TCP socket by a bare sendfile loop (no HTTP):
    what any server's transfer costs on this machine."""
    server = subprocess.Popen([sys.executable, "-c", RAW_SERVER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            t0 = time.perf_counter()
            got = 0
            while n := sock.recv_into(view):
                got += n
            return got / (time.perf_counter() - t0) / 1e6
    finally:
        server.terminate()
        server.wait(5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=1200, help="length of the 1080p clips (a film is ~6000)")
    ap.add_argument("--range-mib", type=int, default=512, help="size of the range-read file")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=("ttfb", "hls", "ranges"), action="append",
                    help="measure only these figures (repeatable; default: all)")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return
    only = set(args.only or ("ttfb", "hls", "ranges"))
    if only == {"ranges"}:
        args.seconds = 1  # the clips are made but not measured: a second of video is enough
    root = Path(tempfile.mkdtemp(prefix="bench-media-"))
    print(f"bench_media: clips of {args.seconds} s at 1920x1080, range file {args.range_mib} MiB, in {root}")
    t0 = time.perf_counter()
    clips = make_clips(root / "media", args.seconds, args.range_mib)
    print(f"  (clips made in {time.perf_counter() - t0:.0f} s: "
          + ", ".join(f"{n} {p.stat().st_size / 1e6:.0f} MB" for n, p in clips.items()) + ")")
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(root)], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(child.stdout.readline())
        port, urls = info["port"], info["urls"]
        for p in clips.values():  # warm the page cache for both arms
            p.read_bytes()
        if "ttfb" in only:
            ours, base = ttfb(port, urls["Clip.1080p.AAC.mkv"]["file"], clips["Clip.1080p.AAC.mkv"])
            print(f"time to first byte (64 KiB range, new connection): {ours * 1000:.2f} ms"
                  f"   baseline open+read: {base * 1000:.3f} ms")
        for name in ("Clip.1080p.AAC.mkv", "Clip.1080p.FLAC.mkv") if "hls" in only else ():
            firsts, totals, base_firsts, base_totals = [], [], [], []
            for r in range(args.repeat):
                # Each arm starts with no dirty pages (both write as much as they read), in turns.
                os.utime(clips[name])  # a new file version: the plane plans and transcodes it afresh
                for arm in ((0, 1) if r % 2 == 0 else (1, 0)):
                    os.sync()
                    if arm == 0:
                        first, total, count = fetch_all_segments(port, urls[name]["hls"])
                    else:
                        b_first, b_total = ffmpeg_alone(clips[name])
                firsts.append(first)
                totals.append(total)
                base_firsts.append(b_first)
                base_totals.append(b_total)
            f, t, bf, bt = (statistics.median(x) for x in (firsts, totals, base_firsts, base_totals))
            kind = "remux" if "AAC" in name else "remux + FLAC → AAC"
            print(f"{name} ({kind}, {count} segments):")
            print(f"  time to first HLS segment (cold): {f * 1000:.0f} ms   baseline ffmpeg alone: {bf * 1000:.0f} ms")
            print(f"  all segments: {t:.2f} s = {args.seconds / t:.1f}x realtime   baseline ffmpeg alone: {bt:.2f} s"
                  f"   → {100 * bt / t:.0f} % of ffmpeg alone (target ≥ 90 %)")
        if "ranges" not in only:
            return
        results = [ranges(port, urls["Noise.bin.mkv"]["file"], clips["Noise.bin.mkv"]) for _ in range(args.repeat)]
        ours = statistics.median(r[0] for r in results)
        base = statistics.median(r[1] for r in results)
        floor = statistics.median(raw_socket_floor(clips["Noise.bin.mkv"]) for _ in range(args.repeat))
        print(f"range reads (8 MiB ranges, one connection): {ours:.0f} MB/s   baseline direct read: {base:.0f} MB/s"
              f"   → {100 * ours / base:.0f} % (target ≥ 80 %)")
        print(f"  the same bytes through a bare loopback socket (sendfile, no HTTP): {floor:.0f} MB/s"
              f"   → the plane reaches {100 * ours / floor:.0f} % of it")
        print(f"  (the bare socket itself is {100 * floor / base:.0f} % of the direct read: no server that sends "
              f"through a socket on this machine can pass that)")
    finally:
        child.terminate()
        child.wait(10)
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

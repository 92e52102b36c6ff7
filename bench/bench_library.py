"""Figures for the library (issue 16), each beside a baseline measured in the same run.

    python bench/bench_library.py [--files 10000] [--first-scan-files 1000] [--sample 100] [--index-items 100000]

* **First scan** of a generated tree of real clips (1 s, 64x48 H.264/AAC MKV, ~9 KB each, copied under
  release-style names: shows, seasons, films): walk + guessit + ffprobe + frame grab through
  ``LibraryService.scan_now`` (files/s). Every new file costs two ffmpeg processes, so the rate does
  not depend on the tree's size: it is measured on the first ``--first-scan-files`` files (a full
  10,000-file first scan takes ~1 h on a loaded 2-core machine). Baseline: a bare ``os.walk`` + ``stat``.
* **No-change rescan** of the whole ``--files`` tree (files/s; nothing probed). The rows of the files
  beyond the first scan are cloned from a scanned row of the same clip (identical bytes) with their own
  path, size and mtime: the index then holds exactly what a first scan of the whole tree would store.
  Baseline: the same bare walk.
* **Probe + artwork per file**: the prober on ``--sample`` files one at a time (ms per file).
  Baseline: a bare ``ffprobe`` process per file (``subprocess.run``), the floor any probe pays.
  Also guessit's cost per name (the title step of a first scan).
* **Index memory at ``--index-items`` items** (a fresh process): RSS growth after filling the SQLite
  index and listing every item, and the file's size. Baseline: the same items as a list of Python
  dicts in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def release_names(n: int) -> list[str]:
    """Deterministic release-style relative paths: 70 % episodes in show folders, 30 % films."""
    out = []
    for i in range(n):
        if i % 10 < 7:
            show, season, episode = i // 700, (i // 70) % 10 + 1, i % 70 + 1
            out.append(f"TV/Show Number {show}/Season {season}/Show.Number.{show}.S{season:02d}E{episode:02d}"
                       f".720p.WEB.x264-GRP.mkv")
        else:
            out.append(f"Films/Film Title {i}/Film.Title.{i}.{1950 + i % 70}.1080p.BluRay.x264-GRP.mkv")
    return out


def make_tree(root: Path, names: list[str]) -> Path:
    clip = root / "clip.mkv"
    if not clip.exists():
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc=size=64x48:rate=10:duration=1", "-f", "lavfi", "-i", "sine=duration=1",
                        "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(clip)], check=True)
    media = root / "media"
    for rel in names:
        target = media / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip, target)  # copies, not links: the walk counts a hard link once
    return media


def bare_walk(media: Path) -> tuple[int, float]:
    start = time.perf_counter()
    count = 0
    for dirpath, _dirs, files in os.walk(media):
        for name in files:
            os.stat(os.path.join(dirpath, name))
            count += 1
    return count, time.perf_counter() - start


def scan_figures(tmp: Path, n: int, first_n: int, sample: int) -> dict:
    import trio

    from agent.config import Config
    from agent.library_service import LibraryService
    from media.library_model import item_id_for
    from media.titles import guess_title

    names = release_names(n)
    print(f"generating {first_n} clips, first scan…", file=sys.stderr, flush=True)
    media = make_tree(tmp, names[:first_n])
    library = LibraryService(Config(state_dir=tmp / "state", media_root=media, host_name="bench"))
    t = time.perf_counter()
    first = trio.run(library.scan_now)
    first_s = time.perf_counter() - t
    first_walk_n, first_walk_s = bare_walk(media)

    print(f"generating {n - first_n} more clips, their rows…", file=sys.stderr, flush=True)
    make_tree(tmp, names[first_n:])
    template = dict(zip((d[0] for d in library.index.db.execute("SELECT * FROM files LIMIT 1").description),
                        library.index.db.execute("SELECT * FROM files LIMIT 1").fetchone(), strict=True))
    rows = []
    for rel in names[first_n:]:
        path = str(media / rel)
        st = os.stat(path)
        parsed = guess_title(rel)
        rows.append({**template, "path": path, "id": item_id_for(path), "rel_path": rel, "size_bytes": st.st_size,
                     "mtime_ns": st.st_mtime_ns, "title": parsed.title, "season": parsed.season,
                     "episode": parsed.episode, "year": parsed.year, "kind": parsed.kind, "artwork": None})
    library.index.put_files(rows)
    walk_n, walk_s = bare_walk(media)
    t = time.perf_counter()
    rescan = trio.run(library.scan_now)
    rescan_s = time.perf_counter() - t
    walk_n2, walk_s2 = bare_walk(media)
    files = [str(media / rel) for rel in release_names(n)[:sample]]

    async def one_by_one() -> tuple[float, float]:
        probe_s = grab_s = 0.0
        for i, path in enumerate(files):
            t0 = time.perf_counter()
            info = await library.prober.probe(path)
            t1 = time.perf_counter()
            await library.prober.artwork(path, info, f"ibench{i:07d}")
            probe_s += t1 - t0
            grab_s += time.perf_counter() - t1
        return probe_s, grab_s

    probe_s, grab_s = trio.run(one_by_one)
    t = time.perf_counter()
    for path in files:
        subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", path],
                       capture_output=True, check=True)
    bare_probe_s = time.perf_counter() - t
    t = time.perf_counter()
    for name in names[:sample]:
        guess_title(name)
    guess_s = time.perf_counter() - t
    trio.run(library.aclose)
    return {
        "files": n,
        "first_scan": {"files": first_n, "files_per_s": round(first_n / first_s, 2), "wall_s": round(first_s, 1),
                       "probed": first["probed"], "notes": first["notes_total"],
                       "baseline_bare_walk_stat_files_per_s": round(first_walk_n / first_walk_s)},
        "rescan_no_change": {"files": rescan["files_seen"], "files_per_s": round(n / rescan_s),
                             "wall_s": round(rescan_s, 3), "probed": rescan["probed"],
                             "unchanged": rescan["unchanged"]},
        "baseline_bare_walk_stat": {"files_per_s": round(walk_n / walk_s), "wall_s": round(walk_s, 3),
                                    "after_rescan_files_per_s": round(walk_n2 / walk_s2)},
        "per_file_ms": {"probe": round(1000 * probe_s / sample, 1), "artwork": round(1000 * grab_s / sample, 1),
                        "guessit": round(1000 * guess_s / sample, 1)},
        "baseline_bare_ffprobe_ms": round(1000 * bare_probe_s / sample, 1),
    }


INDEX_CHILD = r"""
import json, os, sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
def rss():
    return int([l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0].split()[1]) / 1024
mode, n, path = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
from media.library_index import LibraryIndex
from media.library_model import item_id_for
def row(i):
    p = f"/media/TV/Show {{i // 700}}/Season {{i % 10}}/Show.{{i // 700}}.S{{i % 10:02d}}E{{i:06d}}.720p.mkv"
    return {{"path": p, "id": item_id_for(p), "root": "/media", "rel_path": p[7:], "size_bytes": 10**9 + i,
            "mtime_ns": 10**18 + i, "media_type": "video", "kind": "episode", "title": f"Show {{i // 700}}",
            "title_source": "guessit", "year": None, "season": i % 10, "episode": i % 70, "episode_last": None,
            "part": None, "episode_title": None, "duration_s": 1320.5, "container": "mkv", "video_codec": "h264",
            "audio_codecs": ["aac", "ac3"], "subtitle_codecs": ["subrip"], "width": 1920, "height": 1080,
            "artwork": f"/state/library/artwork/{{item_id_for(p)}}.jpg", "note": None, "scanned_ms": 1}}
before = rss()
t = time.perf_counter()
if mode == "index":
    index = LibraryIndex(path)
    for start in range(0, n, 5000):
        index.put_files(row(i) for i in range(start, min(n, start + 5000)))
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    listed = sum(1 for _ in index.local_items())
    list_s = time.perf_counter() - t
    t = time.perf_counter()
    hits = sum(1 for _ in index.local_items("show 12"))
    query_s = time.perf_counter() - t
    index.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    out = {{"rss_growth_mb": round(rss() - before, 1), "file_mb": round(path.stat().st_size / 2**20, 1),
           "build_s": round(build_s, 2), "list_all_s": round(list_s, 2), "query_s": round(query_s, 3),
           "listed": listed, "hits": hits}}
else:
    kept = [row(i) for i in range(n)]
    out = {{"rss_growth_mb": round(rss() - before, 1), "build_s": round(time.perf_counter() - t, 2)}}
print(json.dumps(out))
"""


def index_figures(tmp: Path, n: int) -> dict:
    script = INDEX_CHILD.format(repo=str(Path(__file__).resolve().parent.parent))
    out = {}
    for mode in ("index", "dicts"):
        res = subprocess.run([sys.executable, "-c", script, mode, str(n), str(tmp / f"index-{mode}.sqlite")],
                             capture_output=True, text=True, check=True)
        out[mode] = json.loads(res.stdout)
    return {"items": n, "sqlite_index": out["index"], "baseline_python_dicts": out["dicts"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--first-scan-files", type=int, default=1000)
    ap.add_argument("--sample", type=int, default=100)
    ap.add_argument("--index-items", type=int, default=100_000)
    args = ap.parse_args()
    first = min(args.first_scan_files, args.files)
    print(f"bench_library: files={args.files} first_scan_files={first} sample={args.sample}"
          f" index_items={args.index_items}"
          f" cores={os.cpu_count()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-library-") as d:
        tmp = Path(d)
        result = {"scan": scan_figures(tmp, args.files, first, min(args.sample, first)),
                  "index": index_figures(tmp, args.index_items)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

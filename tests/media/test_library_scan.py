"""Scans that meet trouble, and rescans that do no more than they must.

* A corrupt file, a truncated file, an unreadable directory, a symlink loop (a directory link to
  an ancestor, and a link to itself): ``tva-agent library scan`` (a real process) finishes and
  each gets a note. As root, the scan runs without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (so a
  mode-000 directory is unreadable to it, as to any user).
* A file that vanishes between the walk and its probe: a note, no item, no crash.
* Incremental: after one file changes, one is added and one removed, only the two new/changed
  files are probed again; the unchanged keep their rows untouched.
* ffmpeg processes never exceed the configured bound; a hanging ffprobe is killed at its time-out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from media.ffmedia import FfmpegLimits, MediaProber
from tests.conftest import IS_ROOT
from tests.media.library_support import make_bases, make_library, place

BIN = str(Path(sys.executable).with_name("tva-agent"))


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return make_bases(tmp_path_factory.mktemp("scan-bases"))


def cli(state: Path, media: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TVA_MEDIA_ROOT": str(media), "XDG_CONFIG_HOME": str(state.parent / "cfg")}
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if IS_ROOT else []
    return subprocess.run([*prefix, BIN, "--state-dir", str(state), "library", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_troubled_tree_scan_finishes_with_a_note_for_each(tmp_path, bases):
    media, state = tmp_path / "media", tmp_path / "state"
    place(bases, "hevc_flac.mkv", media, "Good.Movie.2001.mkv")
    (media / "Corrupt.Movie.2002.mkv").write_bytes(os.urandom(64 * 1024))
    whole = bases["h264_aac.mp4"].read_bytes()
    (media / "Truncated.Movie.2003.mp4").write_bytes(whole[: len(whole) // 2])
    place(bases, "h264_aac.mp4", media, "Locked/Inside.2004.mp4")
    (media / "Loop").symlink_to(media)  # a directory link back to the root
    (media / "Self.2005.mkv").symlink_to(media / "Self.2005.mkv")  # a link to itself
    (media / "Locked").chmod(0)
    try:
        res = cli(state, media, "scan", "--json")
        assert res.returncode == 0, res.stderr
        report = json.loads(res.stdout)
    finally:
        (media / "Locked").chmod(0o755)
    notes = {Path(n["path"]).name: n["note"] for n in report["notes"]}
    assert notes["Locked"] == "directory unreadable: Permission denied"
    assert notes["Loop"] == "skipped: symlink loop (a directory already walked)"
    assert notes["Self.2005.mkv"] == "skipped: symlink loop"
    assert notes["Corrupt.Movie.2002.mkv"].startswith("ffprobe could not read it: ")
    assert notes["Truncated.Movie.2003.mp4"].startswith("ffprobe could not read it: ")
    assert report["phase"] == "done" and report["files_seen"] == 3 and report["probed"] == 3

    listed = cli(state, media, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    items = {Path(i["path"]).name: i for i in json.loads(listed.stdout)}
    assert set(items) == {"Good.Movie.2001.mkv", "Corrupt.Movie.2002.mkv", "Truncated.Movie.2003.mp4"}
    assert items["Good.Movie.2001.mkv"]["note"] is None and items["Good.Movie.2001.mkv"]["video_codec"] == "hevc"
    for bad in ("Corrupt.Movie.2002.mkv", "Truncated.Movie.2003.mp4"):
        assert items[bad]["note"] == notes[bad] and items[bad]["duration_s"] is None
        assert items[bad]["title"] in ("Corrupt Movie", "Truncated Movie")  # the name still names it

    # The human table says the same, one line per item with the note.
    table = cli(state, media, "list")
    assert table.returncode == 0 and "Truncated Movie" in table.stdout and "ffprobe could not read it" in table.stdout


def test_a_file_vanishing_mid_scan_gets_a_note(tmp_path, bases):
    library = make_library(tmp_path)
    media = library.cfg.media_dir()
    for name in ("Stays.2001.mkv", "Goes.2002.mkv"):
        place(bases, "hevc_flac.mkv", media, name)

    def delete_one(planned) -> None:  # the walk has listed it; it disappears before its probe
        assert sorted(f.rel_path for f in planned) == ["Goes.2002.mkv", "Stays.2001.mkv"]
        (media / "Goes.2002.mkv").unlink()

    report = trio.run(lambda: library.scan_now(on_planned=delete_one))
    assert report["phase"] == "done"
    assert report["notes"] == [{"path": str(media / "Goes.2002.mkv"), "note": "vanished during the scan"}]
    assert [i["title"] for i in library.items()] == ["Stays"]
    trio.run(library.aclose)


def test_incremental_rescan_probes_only_changed_files(tmp_path, bases):
    library = make_library(tmp_path)
    media = library.cfg.media_dir()
    names = [f"Film.Number.{i}.{2000 + i}.mkv" for i in range(5)]
    for name in names:
        place(bases, "hevc_flac.mkv", media, name)
    first = trio.run(library.scan_now)
    assert first["probed"] == 5 and library.prober.probes == 5 and library.prober.grabs == 5
    before = {i["path"]: i for i in library.items()}
    scanned_ms = dict(library.index.db.execute("SELECT path, scanned_ms FROM files"))

    unchanged = trio.run(library.scan_now)
    assert (unchanged["probed"], unchanged["unchanged"], unchanged["removed"]) == (0, 5, 0)
    assert library.prober.probes == 5 and library.prober.grabs == 5  # no file's contents touched

    place(bases, "h264_aac.mp4", media, names[1])  # changed: other size and mtime
    os.utime(media / names[1], ns=(1, 10**18))
    (media / names[2]).unlink()  # removed
    place(bases, "hevc_flac.mkv", media, "New.Arrival.2024.mkv")  # added
    again = trio.run(library.scan_now)
    assert (again["files_seen"], again["probed"], again["unchanged"], again["removed"]) == (5, 2, 3, 1)
    assert library.prober.probes == 7 and library.prober.grabs == 7
    after = {i["path"]: i for i in library.items()}
    assert after[str(media / names[1])]["video_codec"] == "h264"  # the new contents, probed
    assert str(media / names[2]) not in after and not os.path.exists(before[str(media / names[2])]["artwork"])
    rows = dict(library.index.db.execute("SELECT path, scanned_ms FROM files"))
    for name in (names[0], names[3], names[4]):
        assert rows[str(media / name)] == scanned_ms[str(media / name)]  # untouched rows
        assert after[str(media / name)] == before[str(media / name)]

    full = trio.run(lambda: library.scan_now(full=True))
    assert full["probed"] == 5 and library.prober.probes == 12
    trio.run(library.aclose)


@pytest.mark.parametrize("bound", [1, 2])
def test_ffmpeg_processes_stay_within_the_bound(tmp_path, bases, bound):
    library = make_library(tmp_path, ffmpeg_concurrency_max=bound)
    for i in range(8):
        place(bases, "h264_aac.mp4", library.cfg.media_dir(), f"Clip.{i}.2010.mp4")
    report = trio.run(library.scan_now)
    assert report["probed"] == 8 and report["notes_total"] == 0
    assert 1 <= library.prober.running_max <= bound
    trio.run(library.aclose)


def test_a_hanging_ffprobe_is_killed_at_its_timeout(tmp_path, bases):
    fake = tmp_path / "ffprobe-that-hangs"
    fake.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    fake.chmod(0o755)
    prober = MediaProber(tmp_path / "art", FfmpegLimits(probe_timeout_s=0.5), ffprobe=str(fake))

    async def main():
        with trio.fail_after(10):
            try:
                await prober.probe(str(bases["h264_aac.mp4"]))
            except Exception as exc:
                return exc
        return None

    exc = trio.run(main)
    assert getattr(exc, "note", None) == "ffprobe gave no answer within 0.5 s", exc
    assert prober.running == 0


def test_a_damaged_index_is_rebuilt_from_disk(tmp_path, bases):
    library = make_library(tmp_path)
    place(bases, "hevc_flac.mkv", library.cfg.media_dir(), "Kept.2001.mkv")
    trio.run(library.scan_now)
    trio.run(library.aclose)
    index = tmp_path / "state" / "library" / "index.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    index.write_bytes(b"this is not a database" * 100)
    rebuilt = make_library(tmp_path)  # no exception: set aside and built anew
    assert rebuilt.items() == []
    report = trio.run(rebuilt.scan_now)
    assert report["probed"] == 1 and [i["title"] for i in rebuilt.items()] == ["Kept"]
    trio.run(rebuilt.aclose)

"""The MLX title refiner, through the scan that uses it.

* End to end with a real model: a tiny Llama trained here names two degenerate files; the scan
  stores the refined titles; a second session answers from the disk cache without starting mlx.
* The self-disable: workers that hang, crash or answer nonsense (real processes) fail twice in
  a row and the refiner turns itself off — the scan finishes on time, with fallback titles. A
  success between failures resets the count.
* mlx absent: the worker runs on an interpreter without site-packages (``python -S``), cannot
  import mlx, and the refiner is off after one try.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time

import pytest
import trio

from media.refiner import DISABLED, READY, WORKER_SCRIPT, Refiner
from media.title_parse import refiner_prompt
from tests.media.library_support import make_bases, make_library, place

DEGENERATE = {"BDMV/STREAM/00001.m2ts": "Heat", "Disc 1/01.mkv": "Cowboy Bebop"}
WELL_NAMED = "The.Matrix.1999.1080p.mkv"


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return make_bases(tmp_path_factory.mktemp("refiner-bases"))


def fill(library, bases, names) -> None:
    for rel in names:
        place(bases, "h264_aac.mp4", library.cfg.media_dir(), rel)


def titles_of(library) -> dict[str, tuple[str, str]]:
    root = str(library.cfg.media_dir()) + "/"
    return {i["path"].removeprefix(root): (i["title"], i["title_source"]) for i in library.items(where="local")}


def require_mlx() -> None:
    try:
        import mlx.core  # noqa: F401
        import mlx_lm  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"mlx / mlx-lm missing ({exc}): ./setup.sh test installs the 'refiner' extra (mlx[cpu], mlx-lm)")


def test_refiner_end_to_end_with_a_tiny_trained_model(tmp_path, bases):
    require_mlx()
    from tests.media.tiny_model import build_tiny_model

    pairs = [(refiner_prompt(rel, None), title) for rel, title in DEGENERATE.items()]
    model = build_tiny_model(tmp_path / "model", pairs)

    library = make_library(tmp_path, title_model_dir=model)
    fill(library, bases, [*DEGENERATE, WELL_NAMED])
    report = trio.run(library.scan_now)
    assert report["refiner"]["calls"] == 2, report  # the well-named file never reached the model
    assert report["refiner"]["state"] == READY and report["notes_total"] == 0
    assert titles_of(library) == {"BDMV/STREAM/00001.m2ts": ("Heat", "refiner"),
                                  "Disc 1/01.mkv": ("Cowboy Bebop", "refiner"),
                                  WELL_NAMED: ("The Matrix", "guessit")}
    trio.run(library.aclose)

    # A new session (same state dir), everything probed again: the answers come from the disk cache.
    again = make_library(tmp_path, title_model_dir=model)
    report = trio.run(lambda: again.scan_now(full=True))
    assert report["probed"] == 3 and report["refiner"]["calls"] == 0 and report["refiner"]["cache_hits"] == 2
    assert again.refiner._proc is None  # mlx was never started
    assert titles_of(again)["Disc 1/01.mkv"] == ("Cowboy Bebop", "refiner")
    trio.run(again.aclose)


FAKE_WORKER = textwrap.dedent("""
    import json, os, sys, time
    mode, pids = sys.argv[1], sys.argv[2]
    with open(pids, "a") as f:
        f.write(f"{os.getpid()}\\n")
    counter = pids + ".n"
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        n = int(open(counter).read()) if os.path.exists(counter) else 0
        open(counter, "w").write(str(n + 1))
        if mode == "hang":
            time.sleep(60)
        elif mode == "crash":
            sys.exit(1)
        elif mode == "nonsense":
            print("this is not json", flush=True)
        elif mode == "empty":
            print(json.dumps({"text": "  "}), flush=True)
        elif mode == "answer":
            print(json.dumps({"text": "Refined Name"}), flush=True)
        elif mode == "alternate":
            print(json.dumps({"text": f"Good Title {n}"} if n % 2 else {"error": "bad luck"}), flush=True)
""")


def fake_refiner(tmp_path, mode: str) -> tuple[Refiner, str]:
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    pids = str(tmp_path / f"pids-{mode}")
    model = tmp_path / "model-dir"
    model.mkdir(exist_ok=True)
    refiner = Refiner(model, tmp_path / "cache.sqlite", call_timeout_s=0.5, start_timeout_s=10,
                      worker_argv=[sys.executable, str(script), mode, pids])
    return refiner, pids


def assert_no_worker_left(pids_file: str) -> None:
    with open(pids_file) as f:
        for pid in map(int, f.read().split()):
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


@pytest.mark.parametrize("mode", ["hang", "crash", "nonsense", "empty"])
def test_two_consecutive_failures_turn_the_refiner_off(tmp_path, bases, mode):
    refiner, pids = fake_refiner(tmp_path, mode)
    library = make_library(tmp_path, title_model_dir=refiner.model_dir)
    library.refiner = library.scanner.refiner = refiner
    names = ["a.mkv", "00002.m2ts", "VIDEO_TS/VTS_01_1.VOB", "x.mkv", WELL_NAMED]
    fill(library, bases, names)
    started = time.monotonic()
    report = trio.run(library.scan_now)
    assert time.monotonic() - started < 20  # two half-second time-outs, not one per file
    status = report["refiner"]
    assert status["state"] == DISABLED and status["calls"] == 2 and status["failures"] == 2, status
    assert "2 consecutive failures" in status["reason"]
    titles = titles_of(library)
    assert titles[WELL_NAMED] == ("The Matrix", "guessit")
    assert {rel: src for rel, (_t, src) in titles.items() if rel != WELL_NAMED} == {
        rel: "file name" for rel in names if rel != WELL_NAMED}
    assert titles["VIDEO_TS/VTS_01_1.VOB"][0] == "VTS 01 1"
    trio.run(library.aclose)
    assert_no_worker_left(pids)


def test_a_success_between_failures_resets_the_count(tmp_path):
    refiner, pids = fake_refiner(tmp_path, "alternate")

    async def main() -> list:
        try:
            return [await refiner.refine(f"{i:05d}.m2ts", None) for i in range(5)]
        finally:
            await refiner.aclose()

    answers = trio.run(main)
    assert answers == [None, "Good Title 1", None, "Good Title 3", None]
    assert refiner.state != DISABLED and refiner.failures_total == 3
    assert_no_worker_left(pids)


def test_fallback_titles_are_refined_once_a_refiner_is_on(tmp_path, bases):
    library = make_library(tmp_path)
    fill(library, bases, ["00004.m2ts", WELL_NAMED])
    trio.run(library.scan_now)
    assert titles_of(library)["00004.m2ts"] == ("00004", "file name")
    trio.run(library.aclose)

    refiner, pids = fake_refiner(tmp_path, "answer")
    again = make_library(tmp_path, title_model_dir=refiner.model_dir)
    again.refiner = again.scanner.refiner = refiner
    report = trio.run(again.scan_now)  # nothing changed on disk: no probe, but the fallback title is retried
    assert (report["probed"], report["retitled"], report["refiner"]["calls"]) == (0, 1, 1)
    assert titles_of(again) == {"00004.m2ts": ("Refined Name", "refiner"), WELL_NAMED: ("The Matrix", "guessit")}
    trio.run(again.aclose)
    assert_no_worker_left(pids)


def test_without_mlx_the_refiner_turns_off_after_one_try(tmp_path, bases):
    model = tmp_path / "model-dir"
    model.mkdir()
    # The real worker on an interpreter without site-packages: exactly a machine without mlx.
    refiner = Refiner(model, tmp_path / "cache.sqlite", worker_argv=[sys.executable, "-S", WORKER_SCRIPT])
    library = make_library(tmp_path, title_model_dir=model)
    library.refiner = library.scanner.refiner = refiner
    fill(library, bases, ["01.mkv", "00003.m2ts", WELL_NAMED])
    report = trio.run(library.scan_now)
    status = report["refiner"]
    assert status["state"] == DISABLED and status["calls"] == 1, status
    assert "mlx" in status["reason"] and "ModuleNotFoundError" in status["reason"]
    assert titles_of(library)["00003.m2ts"] == ("00003", "file name")
    assert report["notes_total"] == 0
    trio.run(library.aclose)


def test_no_model_configured_means_off_and_untouched(tmp_path, bases):
    library = make_library(tmp_path)
    fill(library, bases, ["01.mkv"])
    report = trio.run(library.scan_now)
    assert report["refiner"] == {"state": "off", "reason": "no title_model_dir configured", "calls": 0,
                                 "cache_hits": 0, "failures": 0}
    trio.run(library.aclose)

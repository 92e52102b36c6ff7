"""On-demand HLS on a real media plane: real ffmpeg runs, real ffprobe and headless mpv as clients.

* An MKV with FLAC audio (which HLS segments cannot carry): ffprobe reads the playlist and its
  segments — AAC audio, H.264 copied, duration within 0.5 s of the source — and headless mpv
  plays it to the end; its text subtitles come as WebVTT, image subtitles (PGS) are listed as
  unavailable.
* Four concurrent clients share one transcode; a client leaving stops it (its ffmpeg is gone);
  the number of transcodes at once is bounded (503 beyond); the segment cache is bounded in bytes
  (an evicted segment is made again on request).
"""

from __future__ import annotations

import os
import threading

import trio

from agent.player import _reason_name
from tests.agent.media_plane_support import http, limits, running_plane, target_of, url_of
from tests.media.clips import make_clip, probe


def _item(library, name: str) -> str:
    return next(i["id"] for i in library.items(where="local") if i["path"].endswith(name))


def play_to_end(url: str, timeout_s: float = 60) -> tuple[str | None, float]:
    """Headless mpv (libmpv through python-mpv) plays ``url``; (end reason, last position)."""
    import mpv

    m = mpv.MPV(vo="null", ao="null", idle=True)
    ended = threading.Event()
    seen: dict[str, object] = {"reason": None, "pos": 0.0}

    @m.event_callback("end-file")
    def _end(event):
        seen["reason"] = _reason_name(getattr(event.data, "reason", None))
        ended.set()

    @m.property_observer("time-pos")
    def _pos(_name, value):
        if value is not None:
            seen["pos"] = max(seen["pos"], value)

    try:
        m.play(url)
        ended.wait(timeout_s)
    finally:
        m.terminate()
    return seen["reason"], seen["pos"]


async def test_flac_mkv_streams_as_hls_to_ffprobe_and_mpv(tmp_path):
    make_clip(tmp_path / "media" / "Tears.of.Steel.2012.mkv", seconds=8, audio="flac", subtitles="srt")
    make_clip(tmp_path / "media" / "Elephants.Dream.2006.mkv", seconds=4, subtitles="pgs")
    make_clip(tmp_path / "media" / "Caminandes.2013.ts", seconds=13)
    source = probe(str(tmp_path / "media" / "Tears.of.Steel.2012.mkv"))
    async with running_plane(tmp_path) as (plane, library):
        url = url_of(plane, _item(library, "Tears.of.Steel.2012.mkv"), hls=True)
        got = await trio.to_thread.run_sync(probe, url)
        codecs = sorted(s["codec_name"] for s in got["streams"])
        assert codecs == ["aac", "h264"], codecs  # FLAC became AAC; H.264 was copied
        assert abs(float(got["format"]["duration"]) - float(source["format"]["duration"])) <= 0.5
        assert plane.hls.counters["transcodes_started"] >= 1
        master = (await http(plane.port, target_of(url)))[2].decode()
        assert "TYPE=SUBTITLES" in master and 'LANGUAGE="eng"' in master
        sub_target = target_of(url).replace("index.m3u8", "sub/0.vtt")
        status, headers, vtt = await http(plane.port, sub_target)
        assert status == 200 and headers["content-type"].startswith("text/vtt")
        assert vtt.startswith(b"WEBVTT") and b"X-TIMESTAMP-MAP=MPEGTS:0" in vtt and b"Line 1" in vtt
        reason, last = await trio.to_thread.run_sync(play_to_end, url)
        assert reason == "eof" and last >= 7.0, (reason, last)

        assert plane.hls.counters["keyframes_sampled"] == 1  # MKV: keyframes found through its index

        ts_url = url_of(plane, _item(library, "Caminandes.2013.ts"), hls=True)  # no index: every packet read
        got = await trio.to_thread.run_sync(probe, ts_url)
        assert abs(float(got["format"]["duration"]) - 13.0) <= 0.5 and plane.hls.counters["keyframes_scanned"] == 1

        pgs_url = url_of(plane, _item(library, "Elephants.Dream.2006.mkv"), hls=True)
        master = (await http(plane.port, target_of(pgs_url)))[2].decode()
        assert "unavailable" in master and "hdmv_pgs_subtitle" in master and "TYPE=SUBTITLES" not in master
        assert (await http(plane.port, target_of(pgs_url).replace("index.m3u8", "sub/0.m3u8")))[0] == 404


async def test_four_clients_share_one_transcode(tmp_path):
    make_clip(tmp_path / "media" / "Cosmos.Laundromat.2015.mkv", seconds=30, audio="opus")
    async with running_plane(tmp_path) as (plane, library):
        target = target_of(url_of(plane, _item(library, "Cosmos.Laundromat.2015.mkv"), hls=True))
        playlist = (await http(plane.port, target.replace("index.m3u8", "video.m3u8")))[2].decode()
        segments = [line for line in playlist.splitlines() if line.startswith("seg/")]
        assert len(segments) == 5
        base = target.split("index.m3u8")[0]
        results: list[list[bytes]] = []

        async def client():
            got = []
            for seg in segments:
                status, _h, body = await http(plane.port, base + seg)
                assert status == 200 and body[:1] == b"\x47"  # MPEG-TS sync byte
                got.append(body)
            results.append(got)

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(client)
        assert len(results) == 4 and all(r == results[0] for r in results)
        assert plane.hls.counters["transcodes_started"] == 1
        assert plane.hls.counters["segments_made"] == 5 and plane.hls.counters["segments_served"] == 20


async def test_a_client_leaving_stops_its_transcode_and_slots_are_bounded(tmp_path):
    # MPEG-4 video must be encoded (slow), so the runs are still going when the checks look.
    for name in ("Sintel.2010.avi", "Spring.2019.avi"):
        make_clip(tmp_path / "media" / name, seconds=20, size="1280x720", video="mpeg4", audio="ac3")
    hls = limits(transcodes_max=1, idle_stop_s=1.5, ahead_segments_max=1)
    async with running_plane(tmp_path, hls=hls) as (plane, library):
        first = target_of(url_of(plane, _item(library, "Sintel.2010.avi"), hls=True)).replace("index.m3u8",
                                                                                              "seg/00000.ts")
        second = target_of(url_of(plane, _item(library, "Spring.2019.avi"), hls=True)).replace("index.m3u8",
                                                                                               "seg/00000.ts")
        answers = {}

        async def fetch(name, target):
            answers[name] = await http(plane.port, target)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetch, "first", first)
            with trio.fail_after(10):
                # The run is listed (with its waiter) before its ffmpeg has started: wait for both.
                while not plane.hls.running() or plane.hls.running()[0].waiters == 0 \
                        or plane.hls.running()[0].process is None:
                    await trio.sleep(0.02)
            pid = plane.hls.running()[0].process.pid
            status, headers, _ = await http(plane.port, second)  # the only slot is busy with a waiting client
            assert status == 503 and headers["retry-after"] == "5"
        assert answers["first"][0] == 200 and answers["first"][2][:1] == b"\x47"
        # The client is gone: no request for 1.5 s stops its ffmpeg (paused meanwhile: it ran ahead).
        with trio.fail_after(15):
            while plane.hls.running():
                await trio.sleep(0.1)
        assert plane.hls.counters["transcodes_stopped"] == 1 and plane.hls.counters["busy_refusals"] == 1
        assert plane.hls.counters["segments_made"] < 5  # it did not run on to the end
        try:
            os.kill(pid, 0)
            raise AssertionError(f"ffmpeg {pid} still runs")
        except ProcessLookupError:
            pass
        status, _h, body = await http(plane.port, second)  # the slot is free again
        assert status == 200 and body[:1] == b"\x47"


async def test_the_segment_cache_is_bounded(tmp_path):
    make_clip(tmp_path / "media" / "Agent.327.2017.mkv", seconds=36, size="640x360", audio="flac")
    async with running_plane(tmp_path, hls=limits(cache_bytes_max=400_000)) as (plane, library):
        target = target_of(url_of(plane, _item(library, "Agent.327.2017.mkv"), hls=True))
        base = target.split("index.m3u8")[0]
        first = None
        for i in range(6):
            status, _h, body = await http(plane.port, f"{base}seg/{i:05d}.ts?{target.split('?')[1]}")
            assert status == 200 and body[:1] == b"\x47"
            first = first or len(body)
            assert plane.hls.status()["cached_bytes"] <= 400_000 + 2 * len(body)
        assert plane.hls.counters["segments_evicted"] >= 1
        status, _h, body = await http(plane.port, f"{base}seg/00000.ts?{target.split('?')[1]}")  # evicted: made again
        assert status == 200 and body[:1] == b"\x47" and abs(len(body) - first) < first // 4
        assert plane.hls.counters["transcodes_started"] == 2

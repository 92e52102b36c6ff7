"""The HLS planner (media.hls_plan): codecs, keyframe-aligned segments, playlists, commands."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.hls_plan import (
    SEGMENT_S_TARGET,
    keyframe_targets,
    master_playlist,
    media_playlist,
    parse_keyframes,
    parse_streams,
    plan_hls,
    sample_keyframes_argv,
    sampled_keyframes,
    subtitle_playlist,
    transcode_argv,
    with_timestamp_map,
)
from tva.errors import DecodeError


def probe_json(duration: float, *streams: dict, start: float = 0.0) -> str:
    full = [{"index": i, "disposition": {"default": 1 if i < 2 else 0}, **s} for i, s in enumerate(streams)]
    return json.dumps({"format": {"duration": str(duration), "start_time": str(start)}, "streams": full})


V264 = {"codec_type": "video", "codec_name": "h264"}
FLAC = {"codec_type": "audio", "codec_name": "flac", "channels": 2}
AAC = {"codec_type": "audio", "codec_name": "aac", "channels": 6}
SRT = {"codec_type": "subtitle", "codec_name": "subrip", "tags": {"language": "eng"}}
PGS = {"codec_type": "subtitle", "codec_name": "hdmv_pgs_subtitle", "tags": {"language": "fra"}}


def test_flac_is_transcoded_h264_copied_and_segments_start_on_keyframes():
    facts = parse_streams(probe_json(61.0, V264, FLAC, SRT, PGS))
    keyframes = tuple(float(k) for k in range(0, 61, 2))  # a keyframe every 2 s
    plan = plan_hls(facts, keyframes)
    assert plan.video_copy and not plan.audio_copy and plan.transcodes
    assert plan.boundaries == tuple(float(k) for k in range(0, 61, 6))
    assert all(b in keyframes for b in plan.boundaries)
    assert sum(plan.duration_of(i) for i in range(plan.segment_count)) == pytest.approx(61.0)
    assert [(s.codec, s.available) for s in plan.subtitles] == [("subrip", True), ("hdmv_pgs_subtitle", False)]
    master = master_playlist(plan, "exp=1&sig=x")
    assert 'TYPE=SUBTITLES' in master and 'URI="sub/0.m3u8?exp=1&sig=x"' in master
    assert "unavailable" in master and "hdmv_pgs_subtitle" in master and "video.m3u8?exp=1&sig=x" in master
    media = media_playlist(plan, "q=1")
    assert media.count("#EXTINF:") == plan.segment_count and media.rstrip().endswith("#EXT-X-ENDLIST")
    assert "seg/00010.ts?q=1" in media and "#EXT-X-PLAYLIST-TYPE:VOD" in media
    assert "0.vtt" in subtitle_playlist(plan, 0, "")
    argv = transcode_argv(plan, "/m/f.mkv", "/c/run", 3)
    assert argv[argv.index("-ss") + 1] == "18.001000" and argv[argv.index("-segment_start_number") + 1] == "3"
    assert argv[argv.index("-segment_times") + 1].split(",")[0] == "24.000000"
    assert argv[argv.index("-c:v") + 1] == "copy" and argv[argv.index("-c:a") + 1] == "aac"
    assert "-ss" not in transcode_argv(plan, "/m/f.mkv", "/c/run", 0)
    with pytest.raises(ValueError):
        transcode_argv(plan, "/m/f.mkv", "/c/run", plan.segment_count)


def test_copy_when_codecs_fit_and_video_encoding_when_they_do_not():
    plan = plan_hls(parse_streams(probe_json(20.0, V264, AAC)), (0.0, 10.0))
    assert plan.video_copy and plan.audio_copy and not plan.transcodes
    mpeg4 = plan_hls(parse_streams(probe_json(20.0, {"codec_type": "video", "codec_name": "mpeg4"}, AAC)), ())
    assert not mpeg4.video_copy and mpeg4.boundaries == (0.0, 6.0, 12.0, 18.0)
    argv = transcode_argv(mpeg4, "a", "b", 0)
    assert argv[argv.index("-c:v") + 1] == "libx264" and argv[argv.index("-force_key_frames") + 1] == "6.000000,12.000000,18.000000"
    audio_only = plan_hls(parse_streams(probe_json(13.0, FLAC)), ())
    assert audio_only.video is None and audio_only.boundaries == (0.0, 6.0, 12.0)
    assert "-map" in (a := transcode_argv(audio_only, "x", "y", 0)) and "-c:v" not in a
    with pytest.raises(DecodeError):
        plan_hls(parse_streams(probe_json(5.0, SRT)), ())


@given(st.lists(st.floats(0, 600, allow_nan=False), max_size=200), st.floats(1, 600, allow_nan=False))
def test_segments_cover_the_file_on_keyframes_whatever_they_are(keyframes, duration):
    facts = parse_streams(probe_json(duration, V264, AAC))
    plan = plan_hls(facts, tuple(sorted(set(keyframes))))
    assert list(plan.boundaries) == sorted(set(plan.boundaries))
    assert sum(plan.duration_of(i) for i in range(plan.segment_count)) == pytest.approx(
        plan.end_s - plan.boundaries[0], abs=1e-3 * plan.segment_count + 1e-6)
    if plan.video_copy:
        assert set(plan.boundaries) <= set(keyframes)
        assert all(b - a >= SEGMENT_S_TARGET - 1e-6 for a, b in zip(plan.boundaries, plan.boundaries[1:], strict=False))


@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_garbage_probe_output_is_a_decode_error(raw):
    try:
        parse_streams(raw)
    except DecodeError:
        pass
    parse_keyframes(raw.decode("latin-1") if isinstance(raw, bytes) else raw)


def test_sampled_keyframes_from_an_index_and_the_fallback():
    facts = parse_streams(probe_json(30.007, V264, AAC))
    assert keyframe_targets(facts) == (0.0, 6.0, 12.0, 18.0, 24.0)  # no 1-s sliver at the end
    # MKV answers each seek with the keyframe at or before it (a keyframe every second from 0.007).
    found = sampled_keyframes("0.007000,K_\n5.007000,K_\n11.007000,K_\n17.007000,K_\n23.007000,K_\n")
    plan = plan_hls(facts, found, sampled=True)
    assert plan.boundaries == found and plan.duration_of(4) == pytest.approx(7.0)
    # MPEG-TS has no index: a seek lands on any packet, so the caller must scan instead.
    assert sampled_keyframes("1.423000,K_,\n\n5.983000,__,\n") is None
    assert sampled_keyframes("") is None
    argv = sample_keyframes_argv("f.mkv", 0, (0.0, 6.0))
    assert argv[argv.index("-read_intervals") + 1] == "0.000000%+#1,6.000000%+#1"


def test_keyframes_parse_and_timestamp_map():
    assert parse_keyframes("0.000000,K_\n0.040000,__\n2.000000,K_\nN/A,K_\n1.000000,K__\n") == (0.0, 1.0, 2.0)
    assert with_timestamp_map("WEBVTT\n\n00:01.000 --> 00:02.000\nHi\n").startswith(
        "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n")

"""Properties of the library's pure core: hostile input in, bounded values (or the one error) out.

ffprobe's JSON describes files we do not control, guessit hands back loose dicts, a model answers
anything, and the index may hold anything from an earlier run: each reader is driven with
hypothesis-generated garbage as well as with the shapes it expects.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from media.library_model import FileStat, name_of_content, plan_scan
from media.probe_parse import DURATION_S_MAX, STREAMS_MAX, artwork_at_s, parse_probe
from media.title_parse import (
    KINDS,
    REFINER_ANSWER_CHARS_MAX,
    REFINER_PROMPT_CHARS_MAX,
    TITLE_CHARS_MAX,
    ParsedTitle,
    from_guess,
    is_degenerate,
    parse_refiner_answer,
    refiner_prompt,
    wants_absolute_numbering,
)
from tva.errors import DecodeError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=40)
stream = st.fixed_dictionaries({}, optional={
    "codec_type": st.sampled_from(["video", "audio", "subtitle", "data", 7, None]),
    "codec_name": st.text(max_size=50) | st.integers(),
    "width": st.integers(-5, 40_000) | st.text(max_size=5),
    "height": st.integers(-5, 40_000),
    "duration": st.text(max_size=12) | st.floats(allow_nan=True),
    "disposition": st.fixed_dictionaries({}, optional={"attached_pic": st.integers(0, 2)}) | json_values,
})
probe_doc = st.fixed_dictionaries({}, optional={
    "format": st.fixed_dictionaries({}, optional={"duration": st.text(max_size=12) | st.floats(),
                                                   "format_name": st.text(max_size=80) | st.integers(),
                                                   "tags": st.dictionaries(st.text(max_size=8), json_values)})
    | json_values,
    "streams": st.lists(stream, max_size=8) | json_values,
})


@given(probe_doc)
def test_probe_json_of_any_shape_gives_bounded_info_or_decode_error(doc):
    try:
        info = parse_probe(json.dumps(doc))
    except DecodeError:
        return
    assert info.duration_s is None or 0 < info.duration_s <= DURATION_S_MAX
    assert all(isinstance(c, str) and 0 < len(c) <= 32 for c in (*info.audio_codecs, *info.subtitle_codecs))
    assert info.width is None or 0 < info.width <= 16_384
    assert len(info.audio_codecs) <= STREAMS_MAX
    assert info.cover_only <= info.has_picture
    assert 0 <= artwork_at_s(info.duration_s) <= (info.duration_s or 0)


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_probe_bytes_that_are_not_json_raise_decode_error_only(raw):
    try:
        parse_probe(raw)
    except DecodeError:
        pass


def test_probe_reads_a_real_shape():
    doc = {"format": {"duration": "5.500000", "format_name": "matroska,webm", "tags": {"TITLE": "Heat"}},
           "streams": [{"codec_type": "video", "codec_name": "hevc", "width": 1920, "height": 1080},
                       {"codec_type": "video", "codec_name": "mjpeg", "disposition": {"attached_pic": 1}},
                       {"codec_type": "audio", "codec_name": "flac"}, {"codec_type": "audio", "codec_name": "aac"},
                       {"codec_type": "subtitle", "codec_name": "subrip"}]}
    info = parse_probe(json.dumps(doc))
    assert (info.duration_s, info.video_codec, info.audio_codecs, info.subtitle_codecs, info.resolution,
            info.embedded_title, info.cover_only) == (5.5, "hevc", ("flac", "aac"), ("subrip",), "1920x1080",
                                                      "Heat", False)
    assert artwork_at_s(5.5) == 0.55 and artwork_at_s(3 * 3600) == 600.0 and artwork_at_s(None) == 0.0


@given(st.dictionaries(st.sampled_from(["title", "year", "season", "episode", "part", "cd", "volume", "type",
                                        "country", "release_group", "episode_title", "absolute_episode"]),
                       json_values), st.text(max_size=80))
def test_any_guess_dict_gives_a_bounded_parsed_title(guess, name):
    p = from_guess(guess, name)
    assert p.kind in KINDS
    assert p.title is None or (0 < len(p.title) <= TITLE_CHARS_MAX + 8 and p.title.isprintable())
    assert p.year is None or 1870 <= p.year <= 2200
    assert p.season is None or 0 <= p.season <= 200
    assert p.part is None or 1 <= p.part <= 100
    assert p.kind != "episode" or p.season is not None or p.episode is not None


def test_guess_quirks_are_corrected():
    spider = from_guess({"title": "Man No Way Home", "release_group": "Spider", "year": 2021, "type": "movie"},
                        "Spider-Man.No.Way.Home.2021.mkv")
    assert spider.title == "Spider-Man No Way Home"
    bracketed = from_guess({"title": "Show", "release_group": "Grp", "type": "episode", "episode": 3},
                           "[Grp] Show - 03.mkv")
    assert bracketed.title == "Show"
    pokemon = from_guess({"title": "Pokemon", "year": 1997, "season": 1997, "episode": 1, "type": "episode"}, "x")
    assert (pokemon.season, pokemon.episode) == (None, 1)
    office = from_guess({"title": "The Office", "country": "US", "season": 2, "episode": 3, "type": "episode"}, "x")
    assert office.title == "The Office (US)"
    assert from_guess({"title": "X", "episode": [1, 2], "season": 1, "type": "episode"}, "x").episode_last == 2
    assert wants_absolute_numbering("Naruto Shippuden - 245.mkv")
    assert wants_absolute_numbering("[Grp] Show 12 [720p].mkv")
    assert not wants_absolute_numbering("Movie Title - 2019.mkv")
    assert not wants_absolute_numbering("Show.S01E02.mkv")


def test_degenerate_titles():
    for title in (None, "", "a", "VTS", "Disc 1", "00001", "video_ts", "Title 03"):
        assert is_degenerate(ParsedTitle(kind="movie", title=title)), title
    for title in ("Heat", "24", "It", "The Title", "Alien³"):
        p = ParsedTitle(kind="episode" if title == "24" else "movie", title=title,
                        season=1 if title == "24" else None)
        assert not is_degenerate(p), title
    assert not is_degenerate(ParsedTitle(kind="movie", title="1917", year=2019))


@given(st.text(max_size=2000), st.one_of(st.none(), st.text(max_size=500)))
def test_refiner_prompt_is_bounded(path, tag):
    prompt = refiner_prompt(path, tag)
    assert len(prompt) <= REFINER_PROMPT_CHARS_MAX and prompt.startswith("Release file: ")


@given(st.one_of(st.text(max_size=500), st.binary(max_size=50), st.integers(), st.none()))
def test_refiner_answers_of_any_kind_give_a_title_or_none(answer):
    title = parse_refiner_answer(answer)
    if title is not None:
        assert 2 <= len(title) <= REFINER_ANSWER_CHARS_MAX and title.isprintable() and "\n" not in title
        assert not is_degenerate(ParsedTitle(kind="movie", title=title))


def test_refiner_answer_shapes():
    assert parse_refiner_answer(" Heat\n</s>") == "Heat"
    assert parse_refiner_answer('\n\n"Cowboy Bebop"\nextra') == "Cowboy Bebop"
    assert parse_refiner_answer("Title: The Matrix") == "The Matrix"
    assert parse_refiner_answer("  \n") is None and parse_refiner_answer("!!!") is None
    assert parse_refiner_answer("VTS") is None


paths = st.sampled_from([f"/m/f{i}.mkv" for i in range(12)])
stat_values = st.tuples(st.integers(0, 3), st.integers(0, 3))


@given(st.dictionaries(paths, stat_values), st.dictionaries(paths, stat_values), st.booleans())
def test_plan_scan_probes_exactly_the_new_and_changed(previous, current, full):
    seen = [FileStat(p, p[3:], "/m", s, m, "video") for p, (s, m) in current.items()]
    plan = plan_scan(previous, seen, full=full)
    probed = {f.path for f in plan.to_probe}
    changed = {p for p, v in current.items() if previous.get(p) != v}
    assert probed == (set(current) if full else changed)
    assert plan.unchanged == len(current) - len(probed)
    assert set(plan.removed) == set(previous) - set(current)


def test_content_names():
    assert name_of_content("Heat.1995.1080p-c0ffee12", "c0ffee12" + "0" * 32) == "Heat.1995.1080p"
    assert name_of_content("film-1", "c0ffee12" + "0" * 32) == "film-1"

"""Real clips under 50 realistic release names, scanned as production scans them.

Six clips are encoded by ffmpeg here (H.264/AAC MP4, HEVC/FLAC MKV, H.264 + a text subtitle
stream in MKV, MPEG-4/MP3 AVI, tagged FLAC, AAC-only M4A) and copied under release names:
episodes in several notations, years, multi-part films, titles with dots and dashes, titles in
other languages, anime absolute numbering, folder-named disc structures. Every expectation
below was written by hand from the name, not taken from the parser.
"""

from __future__ import annotations

import pytest

from tests.media.library_support import BASES, make_bases, make_library, place

MP4, MKV, SUB, AVI, FLAC, M4A = "h264_aac.mp4", "hevc_flac.mkv", "h264_srt.mkv", "mpeg4_mp3.avi", "tagged.flac", \
    "aac_only.m4a"

# (relative path, clip, kind, title, year, season, episode, other fields)
NAMES = [
    ("The.Matrix.1999.1080p.BluRay.x264-GRP.mp4", MP4, "movie", "The Matrix", 1999, None, None, {}),
    ("Oppenheimer (2023).mp4", MP4, "movie", "Oppenheimer", 2023, None, None, {}),
    ("Spider-Man.No.Way.Home.2021.mp4", MP4, "movie", "Spider-Man No Way Home", 2021, None, None, {}),
    ("X-Men.2000.1080p.mp4", MP4, "movie", "X-Men", 2000, None, None, {}),
    ("Blade.Runner.2049.2017.mp4", MP4, "movie", "Blade Runner 2049", 2017, None, None, {}),
    ("1917.2019.mp4", MP4, "movie", "1917", 2019, None, None, {}),
    ("2001.A.Space.Odyssey.1968.mp4", MP4, "movie", "2001 A Space Odyssey", 1968, None, None, {}),
    ("Se7en.1995.mp4", MP4, "movie", "Se7en", 1995, None, None, {}),
    ("The.Office.US.S02E03.720p.HDTV.x264-CTU.mp4", MP4, "episode", "The Office (US)", None, 2, 3, {}),
    ("Game.of.Thrones.S08E06.mp4", MP4, "episode", "Game of Thrones", None, 8, 6, {}),
    ("Stranger Things 4x09.mp4", MP4, "episode", "Stranger Things", None, 4, 9, {}),
    ("Money.Heist.S01.E01.mp4", MP4, "episode", "Money Heist", None, 1, 1, {}),
    ("24.S01E01.mp4", MP4, "episode", "24", None, 1, 1, {}),
    ("Doctor.Who.2005.S01E01.mp4", MP4, "episode", "Doctor Who", 2005, 1, 1, {}),
    ("Harry.Potter.and.the.Deathly.Hallows.Part.1.2010.mp4", MP4, "movie", "Harry Potter and the Deathly Hallows",
     2010, None, None, {"part": 1}),
    ("Mission.Impossible.Dead.Reckoning.Part.One.2023.mp4", MP4, "movie", "Mission Impossible Dead Reckoning",
     2023, None, None, {"part": 1}),
    ("Kill.Bill.Vol.1.2003.mp4", MP4, "movie", "Kill Bill", 2003, None, None, {"part": 1}),
    ("Dune.Part.Two.2024.2160p.WEB-DL.mkv", MKV, "movie", "Dune", 2024, None, None, {"part": 2}),
    ("Amélie.2001.FRENCH.1080p.BluRay.x264-LOL.mkv", MKV, "movie", "Amélie", 2001, None, None, {}),
    ("Le.Fabuleux.Destin.d'Amélie.Poulain.2001.mkv", MKV, "movie", "Le Fabuleux Destin d'Amélie Poulain", 2001,
     None, None, {}),
    ("Der.Untergang.2004.German.1080p.mkv", MKV, "movie", "Der Untergang", 2004, None, None, {}),
    ("La.Casa.de.Papel.S01E01.SPANISH.mkv", MKV, "episode", "La Casa de Papel", None, 1, 1, {}),
    ("Dark.S01E01.GERMAN.mkv", MKV, "episode", "Dark", None, 1, 1, {}),
    ("Parasite.2019.KOREAN.mkv", MKV, "movie", "Parasite", 2019, None, None, {}),
    ("Godzilla.Minus.One.2023.JAPANESE.1080p.mkv", MKV, "movie", "Godzilla Minus One", 2023, None, None, {}),
    ("Crouching.Tiger.Hidden.Dragon.2000.CHINESE.mkv", MKV, "movie", "Crouching Tiger Hidden Dragon", 2000, None,
     None, {}),
    ("The.Good.the.Bad.and.the.Ugly.1966.ITALIAN.mkv", MKV, "movie", "The Good the Bad and the Ugly", 1966, None,
     None, {}),
    ("[SubsPlease] One Piece - 1071 (1080p) [ABCD1234].mkv", MKV, "episode", "One Piece", None, None, 1071, {}),
    ("Naruto Shippuden - 245.mkv", MKV, "episode", "Naruto Shippuden", None, None, 245, {}),
    ("Fullmetal Alchemist Brotherhood - 064.mkv", MKV, "episode", "Fullmetal Alchemist Brotherhood", None, None, 64,
     {}),
    ("[Erai-raws] Jujutsu Kaisen - 47 [1080p].mkv", MKV, "episode", "Jujutsu Kaisen", None, None, 47, {}),
    ("Shingeki no Kyojin - 25 [BD 1080p].mkv", MKV, "episode", "Shingeki no Kyojin", None, None, 25, {}),
    ("Bleach - 366 [720p].mkv", MKV, "episode", "Bleach", None, None, 366, {}),
    ("Lost.S01E01-E02.mkv", MKV, "episode", "Lost", None, 1, 1, {"episode_last": 2}),
    ("Pokemon.1997.E001.mkv", MKV, "episode", "Pokemon", 1997, None, 1, {}),
    ("The.Lord.of.the.Rings.The.Fellowship.of.the.Ring.2001.EXTENDED.1080p.mkv", MKV, "movie",
     "The Lord of the Rings The Fellowship of the Ring", 2001, None, None, {}),
    ("Breaking Bad - S01E09 - 4 Days Out.mkv", MKV, "episode", "Breaking Bad", None, 1, 9,
     {"episode_title": "4 Days Out"}),
    ("doctor_who_2005.8x01.deep_breath.mkv", MKV, "episode", "doctor who", 2005, 8, 1,
     {"episode_title": "deep breath"}),
    ("Sherlock.S04E01.The.Six.Thatchers.mkv", MKV, "episode", "Sherlock", None, 4, 1,
     {"episode_title": "The Six Thatchers"}),
    ("Planet.Earth.II.S01E01.mkv", MKV, "episode", "Planet Earth II", None, 1, 1, {}),
    ("Star.Wars.Episode.IV.A.New.Hope.1977.mkv", MKV, "movie", "Star Wars Episode IV A New Hope", 1977, None, None,
     {}),
    ("Show.Name.S03E07.Part.2.mkv", MKV, "episode", "Show Name", None, 3, 7, {"part": 2}),
    ("Cowboy Bebop - 05 - Ballad of Fallen Angels.mkv", SUB, "episode", "Cowboy Bebop", None, None, 5,
     {"episode_title": "Ballad of Fallen Angels"}),
    ("Spirited.Away.2001.JAPANESE.mkv", SUB, "movie", "Spirited Away", 2001, None, None, {}),
    ("Ghost in the Shell (1995) [1080p].mkv", SUB, "movie", "Ghost in the Shell", 1995, None, None, {}),
    ("TV/Breaking Bad/Season 1/01 - Pilot.mkv", SUB, "episode", "Breaking Bad", None, 1, 1,
     {"episode_title": "Pilot"}),
    ("Movies/Heat (1995)/VIDEO_TS/VTS_01_1.VOB", SUB, "movie", "Heat", 1995, None, None, {}),
    ("Heat.1995.DVDRip.XviD-GRP.avi", AVI, "movie", "Heat", 1995, None, None, {}),
    ("The.Big.Lebowski.1998.CD2.avi", AVI, "movie", "The Big Lebowski", 1998, None, None, {"part": 2}),
    ("Friends.S01E01.avi", AVI, "episode", "Friends", None, 1, 1, {}),
    # Audio: "other" items; a tagged file is titled by its tag, an untagged one by its name.
    ("Music/Pink Floyd - Time.flac", FLAC, "other", "Time", None, None, None, {"title_source": "tag"}),
    ("Interstellar.2014.OST.m4a", M4A, "other", "Interstellar", 2014, None, None, {"title_source": "guessit"}),
]


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("names")
    bases = make_bases(tmp / "bases")
    library = make_library(tmp)
    root = library.cfg.media_dir()
    for rel, base, *_ in NAMES:
        place(bases, base, root, rel)
    import trio

    report = trio.run(library.scan_now)
    items = {i["path"]: i for i in library.items(where="local")}
    yield root, report, items, library
    library.index.close()


def test_there_are_enough_names():
    assert len(NAMES) >= 40 and len({n[0] for n in NAMES}) == len(NAMES)


def test_scan_found_and_probed_every_file(scanned):
    _root, report, _items, _lib = scanned
    assert report["files_seen"] == len(NAMES) and report["probed"] == len(NAMES)
    assert report["notes_total"] == 0, report["notes"]
    assert report["refiner"]["state"] == "off"  # no model configured: and no name needed one


@pytest.mark.parametrize(("rel", "base", "kind", "title", "year", "season", "episode", "extra"), NAMES,
                         ids=[n[0] for n in NAMES])
def test_release_name(scanned, rel, base, kind, title, year, season, episode, extra):
    root, _report, items, _lib = scanned
    item = items[str(root / rel)]
    got = {"kind": item["kind"], "title": item["title"], "year": item["year"], "season": item["season"],
           "episode": item["episode"]}
    assert got == {"kind": kind, "title": title, "year": year, "season": season, "episode": episode}
    for key, value in extra.items():
        assert item[key] == value, key
    # What ffprobe says about the clip behind the name.
    expected_streams = BASES[base][1]
    assert {k: item[k] for k in expected_streams} == expected_streams
    assert item["duration_s"] == pytest.approx(2.0, abs=0.15)  # AVI rounds up to a frame
    assert item["container"] == rel.rsplit(".", 1)[1].lower()
    assert item["local"] is True and item["note"] is None and item["size_bytes"] > 0
    if expected_streams["video_codec"]:
        artwork = item["artwork"]
        assert artwork and artwork.endswith(".jpg")
        with open(artwork, "rb") as f:
            assert f.read(3) == b"\xff\xd8\xff"  # a JPEG
    else:
        assert item["artwork"] is None


def test_query_and_kind_filters(scanned):
    _root, _report, _items, library = scanned
    breaking = library.items(query="breaking bad")
    assert sorted((i["season"], i["episode"]) for i in breaking) == [(1, 1), (1, 9)]
    assert [i["title"] for i in library.items(query="AMÉLIE")] == ["Amélie", "Le Fabuleux Destin d'Amélie Poulain"]
    episodes = library.items(kind="episode")
    assert len(episodes) == sum(1 for n in NAMES if n[2] == "episode")
    assert all(i["kind"] == "episode" for i in episodes)
    assert len(library.items(limit=5)) == 5

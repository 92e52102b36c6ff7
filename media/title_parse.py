"""Titles from release names (pure): guessit's answer made into an item's fields, and the refiner's
prompt and answer.

guessit does the parsing (the shell ``media.titles`` calls it); this module turns its loose dict
into a ``ParsedTitle`` and corrects the quirks measured on real names (FIELD-NOTES):

* anime-style absolute numbers (``Naruto Shippuden - 245``) read as season 2 episode 45: such
  names are parsed again with ``episode_prefer_number`` (``wants_absolute_numbering``);
* a hyphenated title at the front (``Spider-Man.No.Way.Home.2021``) split into a release group
  ``Spider`` and a title ``Man No Way Home``: glued back;
* a year read as a season (``Pokemon.1997.E001`` → season 1997): dropped;
* ``The Office US`` → ``country`` US: kept in the title as ``The Office (US)``;
* ``cd``/``volume`` numbers are parts, like ``part``.

A result is *degenerate* — and only then worth the MLX refiner's time — when it has no title,
one under two characters, a bare number with nothing else known (``00001.m2ts``), or only the
words of a disc structure and numbers (``VTS_01_1.VOB``, ``Disc 1/01.mkv``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

TITLE_CHARS_MAX = 200
SEASON_MAX = 200  # larger "seasons" are years or absolute numbers misread
EPISODE_MAX = 100_000
YEAR_MIN, YEAR_MAX = 1870, 2200
PART_MAX = 100

MOVIE, EPISODE, OTHER = "movie", "episode", "other"
KINDS = (MOVIE, EPISODE, OTHER)

# Title sources, shown as ``title_source``: where the item's title came from.
FROM_GUESSIT, FROM_REFINER, FROM_TAG, FROM_FILE_NAME = "guessit", "refiner", "tag", "file name"

# Names that say where a file sits on a disc, not what it is.
_DISC_WORDS = frozenset({"vts", "video", "ts", "bdmv", "stream", "playlist", "clipinf", "title",
                         "track", "disc", "disk", "dvd", "bd", "vob", "index", "main", "movie"})
_ABSOLUTE_RE = re.compile(r"(?:^|\s)-\s(\d{2,4})(?:v\d)?(?=$|[\s.\[\(_])")
_BRACKET_GROUP_RE = re.compile(r"^\s*\[[^\]]+\]")


@dataclass(frozen=True)
class ParsedTitle:
    kind: str  # movie | episode | other
    title: str | None
    year: int | None = None
    season: int | None = None
    episode: int | None = None
    episode_last: int | None = None  # S01E01E02: the last episode of a multi-episode file
    part: int | None = None
    episode_title: str | None = None
    title_source: str = FROM_GUESSIT


def wants_absolute_numbering(name: str) -> bool:
    """Anime-style ``Title - 245`` or ``[Group] Title - 12``: the number is an absolute episode."""
    stem = name.rsplit("/", 1)[-1]
    match = _ABSOLUTE_RE.search(stem)
    if match:
        return not YEAR_MIN <= int(match.group(1)) <= YEAR_MAX  # "Title - 2019" is a year
    return bool(_BRACKET_GROUP_RE.match(stem) and re.search(r"\s\d{2,4}\s", stem))


def clean_text(value: object, chars_max: int = TITLE_CHARS_MAX) -> str | None:
    """A printable, trimmed, NFC string or None (guessit may hand back lists, numbers, odd objects)."""
    if isinstance(value, list | tuple):
        value = " ".join(str(v) for v in value if v is not None)
    if value is None or isinstance(value, bool):
        return None
    text = unicodedata.normalize("NFC", str(value))
    text = "".join(ch if ch.isprintable() else " " for ch in text)  # controls, unassigned, surrogates
    text = " ".join(text.split())[:chars_max].strip()
    return text or None


def _int_in(value: object, low: int, high: int) -> int | None:
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if low <= value <= high else None


def _last_int(value: object, low: int, high: int) -> int | None:
    if isinstance(value, list | tuple) and len(value) > 1:
        return _int_in(value[-1], low, high)
    return None


def from_guess(guess: Mapping[str, object], name: str) -> ParsedTitle:
    """guessit's dict for ``name`` (a path relative to its media root) → a ``ParsedTitle``."""
    title = clean_text(guess.get("title"))
    group = clean_text(guess.get("release_group"))
    stem = name.rsplit("/", 1)[-1]
    if title and group and not stem.lstrip().startswith("[") and stem.startswith(f"{group}-"):
        title = f"{group}-{title}"  # Spider-Man.No.Way.Home: not a group "Spider"
    year = _int_in(guess.get("year"), YEAR_MIN, YEAR_MAX)
    season = _int_in(guess.get("season"), 0, SEASON_MAX)
    if season is not None and year is not None and season == year:
        season = None
    episode = _int_in(guess.get("episode"), 0, EPISODE_MAX)
    if episode is None:
        episode = _int_in(guess.get("absolute_episode"), 0, EPISODE_MAX)
    episode_last = _last_int(guess.get("episode"), 0, EPISODE_MAX)
    part = None
    for key in ("part", "cd", "volume"):
        part = _int_in(guess.get(key), 1, PART_MAX)
        if part is not None:
            break
    country = clean_text(guess.get("country"), 8)
    if title and country and guess.get("type") == "episode" and len(country) <= 3:
        title = f"{title} ({country.upper()})"
    kind = EPISODE if guess.get("type") == "episode" and (episode is not None or season is not None) else MOVIE
    return ParsedTitle(kind=kind, title=title, year=year, season=season, episode=episode,
                       episode_last=episode_last, part=part, episode_title=clean_text(guess.get("episode_title")))


def is_degenerate(parsed: ParsedTitle) -> bool:
    """No usable title: worth asking the refiner (see the module docstring)."""
    title = parsed.title
    if not title or len(title.strip()) < 2:
        return True
    words = [w for w in re.split(r"[\s._-]+", title.casefold()) if w and not w.isdigit()]
    if words and all(w in _DISC_WORDS for w in words):
        return True  # "VTS", "Disc 1", "Title 03": where it sits on a disc, not what it is
    bare_number = title.replace(" ", "").isdigit()
    return bare_number and parsed.year is None and parsed.season is None and parsed.episode is None


def title_from_file_name(name: str) -> str:
    """The last resort: the file's stem with separators as spaces (``VTS_01_1`` → ``VTS 01 1``)."""
    stem = name.rsplit("/", 1)[-1]
    stem = stem.rsplit(".", 1)[0] if "." in stem.lstrip(".") else stem
    return clean_text(re.sub(r"[._]+", " ", stem)) or stem[:TITLE_CHARS_MAX] or "untitled"


# --- the refiner's prompt and answer ------------------------------------------------------------

REFINER_SYSTEM = ("You name media files. Given a file's path and the title embedded in it, answer with the "
                  "film or show title only, on one line, without year, quality or release tags.")
REFINER_PROMPT_CHARS_MAX = 600
REFINER_ANSWER_CHARS_MAX = 120


def refiner_prompt(rel_path: str, embedded_title: str | None) -> str:
    """The completion prompt (a chat model gets it as the user message, after ``REFINER_SYSTEM``).

    The path keeps its last three components: the folders around a degenerate name (``Heat
    (1995)/VIDEO_TS/VTS_01_1.VOB``) are usually what identifies it.
    """
    path = "/".join(rel_path.split("/")[-3:])[-400:]
    tag = clean_text(embedded_title, 150) or "-"
    return f"Release file: {path}\nEmbedded title: {tag}\nTitle:"[:REFINER_PROMPT_CHARS_MAX]


def parse_refiner_answer(text: object) -> str | None:
    """The model's answer → a title, or None when it is no usable title (counted as a failure)."""
    if not isinstance(text, str):
        return None
    for line in text.splitlines():
        line = line.strip().strip("\"'`*").strip()
        if line.lower().startswith("title:"):
            line = line[6:].strip()
        if not line:
            continue
        title = clean_text(line, REFINER_ANSWER_CHARS_MAX)
        if title is None or not any(ch.isalnum() for ch in title):
            return None
        if is_degenerate(ParsedTitle(kind=MOVIE, title=title)):
            return None
        return title
    return None

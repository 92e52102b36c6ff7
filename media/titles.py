"""Titles for files and holdings: guessit first, the MLX refiner only for degenerate results.

guessit is CPU work (~10 ms a name): callers run ``guess_title`` in a worker thread. The
decisions (quirk fixes, what counts as degenerate) are pure, in ``media.title_parse``.
"""

from __future__ import annotations

import logging

from media.library_model import AUDIO, SUBTITLE, name_of_content
from media.refiner import Refiner
from media.title_parse import (
    FROM_FILE_NAME,
    FROM_GUESSIT,
    FROM_REFINER,
    FROM_TAG,
    OTHER,
    ParsedTitle,
    from_guess,
    is_degenerate,
    title_from_file_name,
    wants_absolute_numbering,
)

log = logging.getLogger("tva.titles")
NAME_CHARS_MAX = 1024


def guess_title(name: str) -> ParsedTitle:
    """guessit on a release name or a path relative to its media root (blocking)."""
    from guessit import guessit

    name = name[-NAME_CHARS_MAX:]
    options = {"episode_prefer_number": True} if wants_absolute_numbering(name) else None
    try:
        guess = guessit(name, options)
    except Exception as exc:  # guessit's rules can trip over odd input: a title-less result, not a crash
        log.info("guessit failed on %r: %s", name[:120], exc)
        return ParsedTitle(kind=OTHER, title=None)
    return from_guess(dict(guess), name)


def guess_content_title(content_id: str, infohash: str | None) -> ParsedTitle:
    """A fleet holding's title from its content id (all that travels with a holding)."""
    name = name_of_content(content_id, infohash)
    parsed = guess_title(name)
    if is_degenerate(parsed):
        return ParsedTitle(kind=parsed.kind, title=title_from_file_name(name + ".x"), year=parsed.year,
                           season=parsed.season, episode=parsed.episode, title_source=FROM_FILE_NAME)
    return parsed


async def resolve_title(parsed: ParsedTitle, rel_path: str, media_type: str, embedded_title: str | None,
                        refiner: Refiner | None) -> tuple[str, str]:
    """(title, title_source) for a local file, given guessit's result and the container's title tag."""
    if media_type == AUDIO and embedded_title:
        return embedded_title, FROM_TAG  # music is tagged far better than it is named
    if not is_degenerate(parsed):
        return parsed.title or "", FROM_GUESSIT
    if refiner is not None and media_type != SUBTITLE:
        refined = await refiner.refine(rel_path, embedded_title)
        if refined is not None:
            return refined, FROM_REFINER
    if embedded_title and not is_degenerate(ParsedTitle(kind=OTHER, title=embedded_title)):
        return embedded_title, FROM_TAG
    return title_from_file_name(rel_path), FROM_FILE_NAME

"""An invite given on the command line, on standard input (``-``) or in a file (a path).

A token on the command line sits in ``ps`` output and shell history for anyone on the machine to
read; ``join -`` (piped) or ``join FILE`` keep it out of both."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from tva.errors import InvalidInput

# Well above an invite token's own limit (mesh.invites.TOKEN_CHARS_MAX, 4096, checked by the join:
# the CLI layer does not import the mesh): only a bound on what is read.
INVITE_SOURCE_CHARS_MAX = 8192
TOKEN_PREFIXES = ("tva1:",)  # a value starting so is a token, never a file name
HINT = "give the token itself, `-` to read it from standard input, or the path of a file holding it"


def _one_token(text: str, where: str) -> str:
    token = text.strip()
    if not token:
        raise InvalidInput(f"no invite in {where}", hint=HINT)
    if len(text) > INVITE_SOURCE_CHARS_MAX or len(token.split()) != 1:
        raise InvalidInput(f"{where} does not hold one invite token", hint=HINT)
    return token


def read_invite(value: str, stdin: TextIO | None = None) -> str:
    """The invite token ``value`` stands for. Tokens pass through untouched (parsing them is the
    join's job, with its own errors)."""
    if value == "-":
        stream = stdin if stdin is not None else sys.stdin
        return _one_token(stream.read(INVITE_SOURCE_CHARS_MAX + 1), "standard input")
    if value.startswith(TOKEN_PREFIXES):
        return value
    path = Path(value)
    try:
        if path.is_file():
            with path.open(encoding="utf-8", errors="strict") as f:
                return _one_token(f.read(INVITE_SOURCE_CHARS_MAX + 1), f"file {value}")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the invite file {value}: {exc}", hint=HINT) from exc
    return value  # not a file: taken as a token (the join says what is wrong with it)

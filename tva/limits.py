"""The limits of a fleet's decisions and facts, in one place for every layer.

The local API's models, the fleet document's schema, the feed records and the policy core's
input values all read their bounds from here. Why one module: when the API accepted
``max_copies`` up to 1000 while the policy core stopped at 64, one ``pin --max 65`` was taken,
stored, synced — and then every read that planned custody failed on every node. With one set
of limits a value one layer accepts is a value every layer accepts.

A value *stored* outside these limits (written by an older or newer build, or by a misbehaving
member) is not an error of the reader: readers skip it and report it (``pin_problem`` and
``override_problem`` say why), they never raise on it.
"""

from __future__ import annotations

import re

# --- pins -----------------------------------------------------------------------------------------
# A household fleet has a handful to a few dozen storage hosts: more copies than this is a typo.
PIN_COPIES_MAX = 64

# --- content ids (holding keys, pin keys) ---------------------------------------------------------
CONTENT_ID_CHARS_MAX = 128
CONTENT_ID_PATTERN = r"[A-Za-z0-9._:-]{1,128}"
CONTENT_ID_RE = re.compile(CONTENT_ID_PATTERN)
INFOHASH_HEX_CHARS = 40
_HEX = frozenset("0123456789abcdefABCDEF")

# --- holdings -------------------------------------------------------------------------------------
HOLDING_SIZE_BYTES_MAX = 1 << 50  # 1 PiB: beyond any single item a home fleet keeps

# --- overrides and host cards: the fleet's vocabulary ---------------------------------------------
HOST_CLASSES = ("desktop", "server", "nas", "seedbox", "portable")
SERVICES = ("storage", "seed", "search", "play", "transcode")
# notifier: the one host that sends the fleet's webhook notifications (agent.notify)
DUTIES = ("custodian", "public_swarm_face", "research", "reaper", "notifier")
DUTY_PREFS = ("prefer", "avoid", "never")

# --- repairs --------------------------------------------------------------------------------------
# The longest lease a repair intent may claim: a target ignores an intent whose lease runs past
# now + this (a baton must not lock a host into one copy for longer than a copy can take).
REPAIR_LEASE_MS_MAX = 6 * 3600 * 1000


def is_content_id(value: object) -> bool:
    return isinstance(value, str) and CONTENT_ID_RE.fullmatch(value) is not None


def is_infohash(value: object) -> bool:
    return isinstance(value, str) and len(value) == INFOHASH_HEX_CHARS and _HEX.issuperset(value)


def _count(value: object) -> bool:
    return type(value) is int and 1 <= value <= PIN_COPIES_MAX


def pin_problem(content: object, min_copies: object, max_copies: object) -> str | None:
    """Why a pin is outside the limits (None: it is within them). Never raises."""
    if not is_content_id(content):
        return f"content must be 1–{CONTENT_ID_CHARS_MAX} chars of [A-Za-z0-9._:-]"
    if not _count(min_copies):
        return f"min_copies {min_copies!r:.20} is outside 1..{PIN_COPIES_MAX}"
    if max_copies is not None:
        if not _count(max_copies):
            return f"max_copies {max_copies!r:.20} is outside 1..{PIN_COPIES_MAX}"
        if max_copies < min_copies:  # type: ignore[operator]
            return f"max_copies {max_copies} is below min_copies {min_copies}"
    return None


def override_problem(host_class: object, services: object, duty_prefs: object) -> str | None:
    """Why a host override is outside the vocabulary (None: usable). ``services`` is None or an
    iterable of names; ``duty_prefs`` None or (duty, preference) pairs. Never raises."""
    if host_class is not None and host_class not in HOST_CLASSES:
        return f"host class {host_class!r:.40} is unknown (one of {', '.join(HOST_CLASSES)})"
    if services is not None:
        if isinstance(services, str):
            return "services must be a collection of names"
        unknown = sorted(str(s) for s in services if s not in SERVICES)
        if unknown:
            return f"unknown services {', '.join(unknown)[:80]}"
    if duty_prefs is not None:
        for pair in duty_prefs:
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                return "duty preferences must be (duty, preference) pairs"
            if pair[0] not in DUTIES:
                return f"duty {pair[0]!r:.40} is unknown (one of {', '.join(DUTIES)})"
            if pair[1] not in DUTY_PREFS:
                return f"duty preference {pair[1]!r:.40} is unknown (one of {', '.join(DUTY_PREFS)})"
    return None

"""Input validation shared by the policy modules: every failure is an ``InvalidInput`` with a hint.

Why a module of its own: the policy core is called with data adapted from replicated state that
other hosts wrote, so each value is checked at the door, once, with a message that names the
field. After construction every input dataclass is known-good and the planners never re-check.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from tva.errors import InvalidInput

TEXT_CHARS_MAX = 256
PEER_ID_CHARS_MAX = 64
INFOHASH_HEX_CHARS = 40
_B58 = frozenset("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")
_HEX = frozenset("0123456789abcdef")
# A sane upper bound for byte counts and millisecond timestamps: 2**62 (above any real disk, and
# year ~146 million in ms) keeps arithmetic far from overflow in any encoder the runtime uses.
INT_MAX = 2**62


def fail(message: str, hint: str) -> InvalidInput:
    return InvalidInput(message, hint=hint)


def text(value: object, field: str, *, chars_max: int = TEXT_CHARS_MAX) -> str:
    if not isinstance(value, str) or not value:
        raise fail(f"{field} must be a non-empty string, got {value!r:.80}", f"pass {field} as text")
    if len(value) > chars_max:
        raise fail(f"{field} is {len(value)} characters (max {chars_max})", f"shorten {field}")
    if not value.isprintable():
        raise fail(f"{field} contains control characters: {value!r:.80}", f"clean {field}")
    return value


def peer_id(value: object, field: str = "peer_id") -> str:
    """Shape check of a libp2p peer id (base58, bounded length).

    Full decoding (``crdt.identity.is_peer_id``) costs ~10 µs; the shape check is enough here
    because a peer id that matches no host card simply matches nothing.
    """
    if not isinstance(value, str) or not 0 < len(value) <= PEER_ID_CHARS_MAX or not _B58.issuperset(value):
        raise fail(f"{field} is not a peer id: {value!r:.80}", "peer ids are base58 libp2p ids (12D3KooW…)")
    return value


def optional_peer_id(value: object, field: str) -> str | None:
    return None if value is None else peer_id(value, field)


def infohash(value: object, field: str = "infohash") -> str:
    if not isinstance(value, str) or len(value) != INFOHASH_HEX_CHARS:
        raise fail(f"{field} must be 40 hex characters, got {value!r:.80}", "use the v1 SHA-1 infohash in hex")
    lowered = value.lower()
    if not _HEX.issuperset(lowered):
        raise fail(f"{field} is not hex: {value!r:.80}", "use the v1 SHA-1 infohash in hex")
    return lowered


def is_infohash(value: str) -> bool:
    return len(value) == INFOHASH_HEX_CHARS and _HEX.issuperset(value.lower())


def integer(value: object, field: str, *, minimum: int = 0, maximum: int = INT_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(f"{field} must be an integer, got {value!r:.80}", f"pass {field} as an int")
    if not minimum <= value <= maximum:
        raise fail(f"{field} = {value} is outside [{minimum}, {maximum}]", f"check the units of {field}")
    return value


def optional_integer(value: object, field: str, *, minimum: int = 0, maximum: int = INT_MAX) -> int | None:
    return None if value is None else integer(value, field, minimum=minimum, maximum=maximum)


def fraction(value: object, field: str) -> float:
    """A finite number in [0, 1] (ints accepted and converted)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(f"{field} must be a number in [0, 1], got {value!r:.80}", f"pass {field} as a float")
    v = _float(value, field)
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise fail(f"{field} = {value!r} is outside [0, 1]", f"{field} is a fraction, not a percentage")
    return v


def non_negative(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(f"{field} must be a number, got {value!r:.80}", f"pass {field} as a number")
    v = _float(value, field)
    if not math.isfinite(v) or v < 0:
        raise fail(f"{field} = {value!r} must be finite and ≥ 0", f"check {field}")
    return v


def _float(value: int | float, field: str) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond any double
        raise fail(f"{field} is far out of range", f"check {field}") from None


def boolean(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise fail(f"{field} must be a bool, got {value!r:.80}", f"pass {field} as True/False")
    return value


def choice(value: object, field: str, allowed: Iterable[str]) -> str:
    allowed_set = frozenset(allowed)
    if not isinstance(value, str) or value not in allowed_set:
        raise fail(f"unknown {field} {value!r:.80}", f"{field} is one of: {', '.join(sorted(allowed_set))}")
    return value


def string_set(value: object, field: str, allowed: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise fail(f"{field} must be a set of strings, got {value!r:.80}", f"pass {field} as a frozenset")
    items = tuple(value)
    allowed_set = frozenset(allowed)
    for item in items:
        choice(item, field[:-1] if field.endswith("s") else field, allowed_set)
    return frozenset(items)


def instance(value: object, field: str, kind: type) -> object:
    if not isinstance(value, kind):
        raise fail(f"{field} must be a {kind.__name__}, got {type(value).__name__}",
                   f"build {field} with the agent.policy input types")
    return value


def instances(values: object, field: str, kind: type) -> tuple:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise fail(f"{field} must be an iterable of {kind.__name__}", f"pass {field} as a list or tuple")
    out = tuple(values)
    for v in out:
        instance(v, f"an item of {field}", kind)
    return out

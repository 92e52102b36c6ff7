"""Stand-in policy used only until ``agent.policy`` is importable: duties, custody, peers_for.

It follows DESIGN.md §4 (weighted rendezvous hashing; the first live holder is the pin's baton;
over-replicate under partition, never under-replicate; trim after healing) closely enough that
the checkers have something real to check, but it is *not* the product's policy: the real one
replaces it in ``simulations.realnode`` as soon as it exists.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping

DUTY_NAMES = ("index", "transcode", "backup")
_WEIGHT_CACHE: dict[tuple[str, str], int] = {}
_WEIGHT_CACHE_MAX = 2_000_000


def rendezvous_weight(key: str, peer: str) -> int:
    # Memoised: weights are pure functions of (key, peer) and every node asks the same ones.
    k = (key, peer)
    w = _WEIGHT_CACHE.get(k)
    if w is None:
        w = int.from_bytes(hashlib.blake2b(f"{key}\x00{peer}".encode(), digest_size=8).digest(), "big")
        if len(_WEIGHT_CACHE) < _WEIGHT_CACHE_MAX:
            _WEIGHT_CACHE[k] = w
    return w


def rendezvous_order(key: str, peers: Iterable[str]) -> list[str]:
    return sorted(peers, key=lambda p: (-rendezvous_weight(key, p), p))


def duties(live_eligible: Iterable[str]) -> dict[str, str]:
    """Each duty goes to the live, eligible host with the highest weight for it."""
    hosts = sorted(live_eligible)
    if not hosts:
        return {}
    return {d: rendezvous_order(d, hosts)[0] for d in DUTY_NAMES}


def plan_custody(
    me: str,
    pins: Mapping[str, tuple[int, int]],
    holders_of: Callable[[str], Iterable[str]],
    is_live: Callable[[str], bool],
    target_ok: Callable[[str], bool],
    candidates: Callable[[], Iterable[str]],
    in_flight: Mapping[tuple[str, str], int],
    i_hold: Callable[[str], bool],
) -> tuple[list[tuple[str, str]], list[str]]:
    """(repairs as (item, target), items I should drop) for one node's own view."""
    repairs: list[tuple[str, str]] = []
    trims: list[str] = []
    for item in sorted(pins):
        copies_min, copies_max = pins[item]
        live_holders = rendezvous_order(item, [h for h in holders_of(item) if is_live(h)])
        if not live_holders:
            continue  # nobody to copy from: the world's liveness checker reports capacity
        pending = [t for (it, t) in in_flight if it == item]
        if len(live_holders) + len(pending) < copies_min and live_holders[0] == me:
            need = copies_min - len(live_holders) - len(pending)
            holding = set(live_holders) | set(pending)
            for target in rendezvous_order(item, [c for c in candidates() if c not in holding]):
                if need <= 0:
                    break
                if target_ok(target):
                    repairs.append((item, target))
                    need -= 1
        elif len(live_holders) > copies_max and i_hold(item) and live_holders[-1] == me:
            # Only the last holder in rendezvous order trims, and only one copy per round, so
            # two nodes never trim the same surplus at once.
            if len(live_holders) - 1 >= copies_min:
                trims.append(item)
    return repairs, trims


# Which provenance an item's policy lets an answer carry (DESIGN.md "peers_for").
GATE_ALLOWS = {
    "public": frozenset({"fleet", "seedbox", "friend", "tracker", "dht"}),
    "f2f_only": frozenset({"fleet", "seedbox", "friend"}),
    "search_only": frozenset(),
}

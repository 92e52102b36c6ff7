"""Tunables of the mesh protocol and the bounds they imply.

Defaults follow memberlist's LAN profile (probe 1 s, suspicion multiplier 4, max multiplier 6,
retransmit multiplier 4, gossip every 200 ms to 3 peers), which Serf models as reaching 99.99% of
30 nodes in about 1.8 s. Everything derived from the member count (retransmit limit, suspicion
time-outs, the dead-detection bound) lives here so tests and the simulator compute the same numbers
the node uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from tva.errors import InvalidInput


@dataclass(frozen=True)
class MeshConfig:
    # rumour mongering: every gossip_interval_ms, queued broadcasts go to fanout_max random live peers
    gossip_interval_ms: int = 200
    fanout_max: int = 3
    # a feed delta new to this node (made here or just received) is pushed on at once to this
    # many live peers instead of waiting for the next round: fewer, faster hops across the fleet
    # (p99 at 300 nodes on a lossy WAN: 944 → 630 ms). Its sends still count against
    # retransmit_limit, so the bytes per rumour stay bounded; only the frame count rises.
    eager_fanout_max: int = 6
    # each broadcast is sent retransmit_mult * ceil(log10(n + 1)) times by every node that learns it
    retransmit_mult: int = 4
    broadcast_queue_max: int = 1024
    # push-pull anti-entropy: a 16-byte digest to digest_peers_max random live peers per interval
    sync_interval_ms: int = 1000
    digest_peers_max: int = 2
    # SWIM: one member probed per period; k helpers ping-req it after probe_timeout_ms
    probe_interval_ms: int = 1000
    probe_timeout_ms: int = 500
    indirect_probes_k: int = 3
    # Lifeguard local health: probe timeout and interval scale by (score + 1), score in
    # 0 .. awareness_max - 1, raised by our own missed acks/nacks and refutations (1 = off)
    awareness_max: int = 8
    # Lifeguard suspicion: min = suspicion_mult * max(1, log10 n) * probe_interval_ms, starting at
    # suspicion_max_mult * min and falling towards min as independent suspicions confirm it
    suspicion_mult: int = 4
    suspicion_max_mult: int = 6
    # how often a dead member is pinged so a healed partition or a rebooted host can refute
    reconnect_interval_ms: int = 10_000
    # a host that announced sleep is left alone this long before it is suspected
    sleep_patience_ms: int = 600_000
    portable_sleep_patience_ms: int = 86_400_000
    portable_classes: frozenset[str] = frozenset({"portable"})
    # presence soft state: valid presence_ttl_ms after receipt, re-issued every presence_refresh_ms;
    # both stretch with the fleet (presence_refresh_for): every refresh is a fleet-wide rumour, so
    # n members refreshing every R ms cost each node n * retransmit_limit(n) / R records per ms —
    # with R growing as n * presence_refresh_per_member_ms that stays ~retransmit_limit(n) records
    # per presence_refresh_per_member_ms (≈ 16 × 90 B / 2 s ≈ 0.7 KB/s at 1000 hosts). Changes that
    # matter (SetSoftState, sleep, wake) still go out at once; this is only the keep-alive.
    presence_ttl_ms: int = 300_000
    presence_refresh_ms: int = 100_000
    presence_refresh_per_member_ms: int = 2_000
    # a presence sent straight to one peer (on ping/ack) is attached again after this long, so one
    # lost frame costs seconds of missing soft state there, not a whole refresh period
    presence_resend_ms: int = 5_000
    # size limits: a whole frame, one gossip frame (a bigger single delta still goes alone),
    # membership/presence piggybacked on a ping or ack
    frame_bytes_max: int = 4 * 1024 * 1024  # = mesh.transport's frame limit
    gossip_bytes_max: int = 8192
    piggyback_bytes_max: int = 1024
    # ping-req relays this node runs at once for others (a peer cannot make it hold more)
    relays_max: int = 64
    # corrections (our record about a peer sent back to it) at most once per this period per peer
    correction_interval_ms: int = 1000
    # signatures checked per received frame (~140 µs each): an honest frame needs at most one per
    # record (≤ ~50 in a gossip frame); more cannot buy a peer more of our CPU
    signature_checks_per_frame_max: int = 128
    # refusals (forged records, bad frames and deltas) are counted always, but logged at most
    # once per this period per sender
    forgery_log_interval_ms: int = 60_000
    # a feed refused because its owner is not admitted here is not asked for again this long
    # (or until the member list changes), so peers stop re-sending it every round
    refused_feed_ttl_ms: int = 600_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "portable_classes":
                if not isinstance(value, frozenset) or not all(isinstance(c, str) for c in value):
                    raise InvalidInput("portable_classes must be a frozenset of host-class strings")
                continue
            if type(value) is not int or value < 1:
                raise InvalidInput(f"MeshConfig.{f.name} must be a positive int, got {value!r}")
        if self.probe_timeout_ms >= self.probe_interval_ms:
            raise InvalidInput(
                "probe_timeout_ms must be shorter than probe_interval_ms",
                hint="the indirect probe needs the rest of the period to come back",
            )
        if self.frame_bytes_max < 4096:
            raise InvalidInput("frame_bytes_max below 4096 cannot carry a version vector")
        if self.piggyback_bytes_max > self.frame_bytes_max // 2 or self.gossip_bytes_max > self.frame_bytes_max // 2:
            raise InvalidInput("piggyback_bytes_max and gossip_bytes_max must be at most half of frame_bytes_max")
        if self.presence_refresh_ms >= self.presence_ttl_ms:
            raise InvalidInput("presence_refresh_ms must be shorter than presence_ttl_ms")

    # --- derived from the member count n (this node included) ------------------------------------

    def retransmit_limit(self, n: int) -> int:
        return self.retransmit_mult * max(1, math.ceil(math.log10(max(1, n) + 1)))

    def suspicion_min_ms(self, n: int) -> int:
        return int(self.suspicion_mult * max(1.0, math.log10(max(1, n))) * self.probe_interval_ms)

    def suspicion_max_ms(self, n: int) -> int:
        return self.suspicion_max_mult * self.suspicion_min_ms(n)

    def suspicion_timeout_ms(self, n: int, confirmations: int) -> int:
        """Lifeguard's dogpile: each independent suspicion shortens the wait, down to the minimum."""
        lo, hi = self.suspicion_min_ms(n), self.suspicion_max_ms(n)
        k = self.indirect_probes_k
        if confirmations <= 0 or k < 1:
            return hi
        frac = math.log(confirmations + 1) / math.log(k + 1)
        return max(lo, int(hi - (hi - lo) * frac))

    def presence_refresh_for(self, n: int) -> int:
        return max(self.presence_refresh_ms, max(1, n) * self.presence_refresh_per_member_ms)

    def presence_ttl_for(self, n: int) -> int:
        """The TTL keeps its ratio to the refresh period, so a stretched refresh never lets a
        live member's presence lapse between two refreshes."""
        return self.presence_ttl_ms * self.presence_refresh_for(n) // self.presence_refresh_ms

    def sleep_patience_for(self, host_class: str) -> int:
        if host_class in self.portable_classes:
            return self.portable_sleep_patience_ms
        return self.sleep_patience_ms

    def dead_bound_ms(self, n: int) -> int:
        """Upper bound from a member going silent to every live node holding it dead (no loss).

        Each live node probes each member at least once every two rounds of its shuffled
        round-robin (2 (n - 1) periods), suspects it one period later, and declares it dead at the
        latest suspicion_max_ms after that; one more period covers tick granularity and gossip.
        It holds for observers at local health 0 (an observer whose own network is failing probes
        up to ``awareness_max`` times slower, on purpose).
        """
        return (2 * max(1, n - 1) + 2) * self.probe_interval_ms + self.suspicion_max_ms(n)

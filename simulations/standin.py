"""A stand-in node protocol, used only while the real cores are not importable.

It is a small but complete dissemination + failure-detection protocol of the kind DESIGN.md
describes, so the world, fault models, checkers and metrics can be built and tested against
something that really moves bytes: signed single-writer feeds (one commit = one signed delta,
Ed25519 from ``crdt.identity``), an LWW fleet document, rumor-mongering with a retransmit limit
(fanout random peers per interval, Serf-style), push-pull anti-entropy by digest, and SWIM-like
probing with suspicion, refutation and incarnation numbers (longer patience for portable hosts).
``simulations.realnode`` replaces it with the real ``mesh.core``/``agent.policy``/``crdt`` code.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import msgpack

from crdt.identity import NodeKey, verify
from simulations import standin_policy as pol
from simulations.adapter import (
    AddFriend,
    AddHolding,
    Announce,
    Applied,
    Change,
    DeclaredDead,
    Effect,
    Fetch,
    FriendOffer,
    PeerAnswer,
    RemoveHolding,
    RepairStart,
    Revoke,
    Send,
    SetDiskFull,
    SetPin,
    Trimmed,
)
from simulations.standin_members import ALIVE, DEAD, LEFT, SUSPECT, Members
from simulations.standin_state import Shared, _h
from tva.errors import DecodeError, RemoteDataError, RevokedPeer, SignatureError

F_PING, F_GOSSIP, F_ACK, F_DIGEST, F_VV, F_SYNC, F_NOTICE, F_BUCKETS, F_GONE = range(9)
# Anti-entropy compares 64 bucket hashes first, so a lagging peer exchanges only the version
# vector entries of the buckets that differ, not all of a 1000-owner vector.
BUCKETS = 64


@dataclass(frozen=True)
class StandinConfig:
    gossip_interval_ms: int = 200
    fanout: int = 3
    retransmit_mult: int = 4
    probe_every_ticks: int = 5
    probe_timeout_ms: int = 500
    suspicion_ms: int = 5_000
    portable_suspicion_ms: int = 30_000
    anti_entropy: bool = True  # the deliberately broken variant turns this off
    anti_entropy_every_ticks: int = 5
    custody_every_ticks: int = 5
    repair_lease_ms: int = 15_000
    reconnect_every_ticks: int = 25
    frame_bytes_max: int = 65_536


class StandinNode:
    """One host running the stand-in protocol and stand-in policy on its own view."""

    def __init__(self, key: NodeKey, host_class: str, rng: random.Random, shared: Shared,
                 config: StandinConfig, bootstrap: list[str], state: dict | None = None) -> None:
        self.key = key
        self.peer_id = key.peer_id
        self.host_class = host_class
        self.rng = rng
        self.shared = shared
        self.cfg = config
        shared.peer_of[key.public] = key.peer_id
        st = state or {}
        # replicated state (persisted)
        self.log: dict[bytes, list[bytes]] = {o: list(v) for o, v in st.get("log", {}).items()}
        self.vv: dict[bytes, int] = {}
        self.vv_hash = 0
        self.bucket_hash = [0] * BUCKETS
        self.bucket_owners: list[dict[bytes, None]] = [{} for _ in range(BUCKETS)]
        self.entries: dict[bytes, dict[str, object]] = {}
        self.holders: dict[str, set[str]] = {}
        self.item_policy: dict[str, str] = {}
        self.classes: dict[str, str] = {}
        self.doc: dict[str, tuple[int, str, object]] = {}
        self.doc_hash = 0
        self.revoked: set[str] = set()
        self.lamport = 0
        self.incarnation = st.get("incarnation", -1) + 1
        self.disk_full = False
        self.members = Members(self.peer_id, rng)
        for peer in st.get("members", bootstrap):
            if peer != self.peer_id:
                self.members.learn(peer)
        # volatile
        self.pending: dict[bytes, dict[int, list]] = {}
        self.data_rumors: list[list] = []  # [kind, payload, remaining]
        self.ticks = rng.randrange(1000)
        self.probe: list | None = None  # [target, sent_ms, retried]
        self.in_flight: dict[tuple[str, str], int] = {}
        self.refused = 0
        for owner in sorted(self.log):
            for raw in self.log[owner]:
                self._apply_commit(msgpack.unpackb(raw), raw, [], relay=False)
        for key_, (lam, actor, value) in st.get("doc", {}).items():
            self._apply_doc(key_, lam, actor, value, relay=False)
        if not self.log.get(key.public):
            self._commit([["card", host_class]], [])
        self.members.queue_self(self.incarnation, self.disk_full)

    # --- SimNode: workload -------------------------------------------------------------------
    def change(self, op: Change, now_ms: int) -> list[Effect]:
        out: list[Effect] = []
        if isinstance(op, AddHolding):
            self._commit([["hold/" + op.item, [op.size_bytes, op.policy]]], out)
            if op.policy == "public":
                out.append(Announce(op.item, "dht", self.peer_id))
        elif isinstance(op, RemoveHolding):
            self._commit([["hold/" + op.item, None]], out)
        elif isinstance(op, SetPin):
            self._set_doc("pin/" + op.item, [op.copies_min, op.copies_max])
        elif isinstance(op, Revoke):
            self._set_doc("revoke/" + op.peer, True)
        elif isinstance(op, AddFriend):
            self._set_doc("friend/" + op.fleet_id, True)
        elif isinstance(op, SetDiskFull):
            self.disk_full = op.full
            self.incarnation += 1  # a new incarnation carries the soft-state change by rumor
            self.members.queue_self(self.incarnation, self.disk_full)
        return out

    def leave(self, now_ms: int) -> list[Effect]:
        self.members.queue_left(self.incarnation)
        targets = self.members.sample_live(self.cfg.fanout * 2)
        frame = self._gossip_frame(len(targets))
        return [Send(t, frame) for t in targets] if frame else []

    def snapshot(self) -> dict:
        return {
            "log": {o: list(v) for o, v in self.log.items()},
            "doc": dict(self.doc),
            "incarnation": self.incarnation,
            "members": self.members.known(),
        }

    # --- SimNode: timers -----------------------------------------------------------------------
    def tick(self, now_ms: int) -> list[Effect]:
        cfg = self.cfg
        self.ticks += 1
        out: list[Effect] = []
        members = self.members
        for peer in members.expired_suspects(now_ms):
            members.set_state(peer, DEAD, members.inc(peer), now_ms)
            members.queue(peer)
            out.append(DeclaredDead(peer, members.inc(peer)))
        if self.probe is not None and now_ms - self.probe[1] >= cfg.probe_timeout_ms:
            target, _, retried = self.probe
            if not retried and members.state(target) in (ALIVE, SUSPECT):
                self.probe = [target, now_ms, True]
                out.append(Send(target, self._small(F_PING)))
            else:
                self.probe = None
                if members.state(target) == ALIVE:
                    patience = cfg.portable_suspicion_ms if self.classes.get(target) == "portable" \
                        else cfg.suspicion_ms
                    members.suspect(target, members.inc(target), now_ms + patience)
        if self.ticks % cfg.probe_every_ticks == 0 and self.probe is None:
            target = members.sample_live(1)
            if target:
                self.probe = [target[0], now_ms, False]
                out.append(Send(target[0], self._small(F_PING)))
        if self.ticks % cfg.reconnect_every_ticks == 0:
            for peer in members.sample_dead(1):
                if not self._revoked(peer):
                    out.append(Send(peer, self._small(F_PING)))
        targets = members.sample_live(cfg.fanout)
        if targets:
            frame = self._gossip_frame(len(targets))
            if frame is not None:
                out.extend(Send(t, frame) for t in targets)
        if cfg.anti_entropy and self.ticks % cfg.anti_entropy_every_ticks == 0:
            peer = members.sample_live(1)
            if peer:
                out.append(Send(peer[0], self._pack([F_DIGEST, self.incarnation, self.disk_full,
                                                      self.vv_hash, self.doc_hash, members.gone_hash])))
        if self.ticks % cfg.custody_every_ticks == 0:
            self._custody(now_ms, out)
        return out

    # --- SimNode: frames -----------------------------------------------------------------------
    def receive(self, src: str, frame: bytes, now_ms: int) -> list[Effect]:
        out: list[Effect] = []
        if self._revoked(src):
            self.refused += 1
            return out
        try:
            msg = msgpack.unpackb(frame)
            kind, inc, full = int(msg[0]), int(msg[1]), bool(msg[2])
        except Exception:
            self.refused += 1
            return out
        members = self.members
        verdict = members.heard_from(src, inc, full, now_ms)
        if verdict is not None:  # it thinks src is suspect/dead at an incarnation >= src's own
            out.append(Send(src, self._pack([F_NOTICE, self.incarnation, self.disk_full, *verdict])))
        try:
            if kind == F_PING:
                out.append(Send(src, self._small(F_ACK)))
            elif kind == F_ACK:
                if self.probe is not None and self.probe[0] == src:
                    self.probe = None
            elif kind == F_GOSSIP:
                for rumor in msg[3]:
                    self._member_rumor(rumor, now_ms)
                for raw in msg[4]:
                    self._receive_commit(raw, out)
                for key_, lam, actor, value in msg[5]:
                    self._apply_doc(key_, lam, actor, value, relay=True)
            elif kind == F_DIGEST:
                if msg[5] != members.gone_hash:
                    out.append(Send(src, self._pack([F_GONE, self.incarnation, self.disk_full,
                                                     members.gone()])))
                if msg[3] != self.vv_hash or msg[4] != self.doc_hash:
                    out.append(Send(src, self._pack([F_BUCKETS, self.incarnation, self.disk_full,
                                                     self.bucket_hash, self.doc_hash])))
            elif kind == F_BUCKETS:
                theirs = msg[3]
                if not (isinstance(theirs, list) and len(theirs) == BUCKETS):
                    raise DecodeError("bucket digest of the wrong length")
                diff = [i for i in range(BUCKETS) if theirs[i] != self.bucket_hash[i]]
                out.append(Send(src, self._vv_frame(True, diff)))
            elif kind == F_VV:
                self._answer_vv(src, msg, out)
            elif kind == F_SYNC:
                for raw in msg[3]:
                    self._receive_commit(raw, out)
                for key_, lam, actor, value in msg[4]:
                    self._apply_doc(key_, lam, actor, value, relay=False)
            elif kind == F_GONE:
                for rumor in msg[3]:
                    self._member_rumor(rumor, now_ms)
            elif kind == F_NOTICE:
                self._member_rumor([self.peer_id, msg[3], msg[4], False], now_ms)
        except (RemoteDataError, ValueError, TypeError, IndexError, KeyError):
            self.refused += 1
        return out

    # --- read-only views for checkers ----------------------------------------------------------
    def version_vector(self) -> dict[str, int]:
        return {self.shared.peer_of[o]: v for o, v in sorted(self.vv.items())}

    def doc_digest(self) -> str:
        return f"{self.doc_hash:016x}/{len(self.doc)}"

    def live_view(self) -> frozenset[str]:
        return frozenset(p for p in self.members.live() if not self._revoked(p)) | {self.peer_id}

    def duties(self) -> dict[str, str]:
        return pol.duties(p for p in self.live_view() if self.classes.get(p) != "portable")

    def peers_for(self, item: str, offers: tuple[FriendOffer, ...],
                  external: tuple[str, ...]) -> list[PeerAnswer]:
        policy = self.item_policy.get(item)
        allowed = pol.GATE_ALLOWS.get(policy or "search_only", frozenset())
        live = self.live_view()
        out = [PeerAnswer(h, "seedbox" if self.classes.get(h) == "seedbox" else "fleet")
               for h in sorted(self.holders.get(item, ())) if h in live]
        out = [a for a in out if a.provenance in allowed]
        linked = set(self._friends())
        if "friend" in allowed:
            out += [PeerAnswer(o.peer, "friend", o.fleet_id) for o in offers if o.fleet_id in linked]
        out += [PeerAnswer(f"198.51.100.{i + 1}", src) for i, src in enumerate(external) if src in allowed]
        return out

    def next_deadline_ms(self, now_ms: int) -> int:
        return now_ms + self.cfg.gossip_interval_ms

    def sleep(self, now_ms: int) -> list[Effect]:
        return []  # the stand-in has no sleep announcement: portable patience covers it

    def wake(self, now_ms: int) -> list[Effect]:
        return []

    # --- feeds ---------------------------------------------------------------------------------
    def _commit(self, entries: list, out: list) -> None:
        owner = self.key.public
        prev = self.vv.get(owner, 0)
        body = [owner, prev, prev + 1, entries]
        sig = self.key.sign(msgpack.packb(body))
        raw = msgpack.packb([*body, sig])
        self.shared.verified[raw] = True
        self.shared.decoded[raw] = ([*body, sig], raw)
        self._apply_commit([*body, sig], raw, out, relay=True)

    def _receive_commit(self, raw: bytes, out: list) -> None:
        c, raw = self.shared.decode_commit(raw)
        owner, prev, version = c[0], c[1], c[2]
        have = self.vv.get(owner, 0)
        if version <= have:
            return  # stale or duplicate: already held
        peer = self.shared.peer_of.get(owner)
        if peer is not None and peer in self.revoked:
            raise RevokedPeer("commit from a revoked owner")
        if prev != have:
            buf = self.pending.setdefault(owner, {})
            if len(buf) < 64:
                buf[prev] = [c, raw]
            return
        self._verify(c, raw)
        self._apply_commit(c, raw, out, relay=True)
        buf = self.pending.get(owner)
        while buf and self.vv.get(owner, 0) in buf:
            c2, raw2 = buf.pop(self.vv[owner])
            self._verify(c2, raw2)
            self._apply_commit(c2, raw2, out, relay=True)

    def _verify(self, c: list, raw: bytes) -> None:
        ok = self.shared.verified.get(raw)
        if ok is None:
            ok = verify(c[0], c[4], msgpack.packb(c[:4]))
            self.shared.verified[raw] = ok
        if not ok:
            raise SignatureError("commit signature does not verify")

    def _apply_commit(self, c: list, raw: bytes, out: list, relay: bool) -> None:
        owner, version = c[0], int(c[2])
        peer = self.shared.peer_of.get(owner)
        if peer is None:
            from crdt.identity import peer_id_from_public
            peer = self.shared.peer_of[owner] = peer_id_from_public(owner)
        old = self.vv.get(owner, 0)
        bucket = owner[0] % BUCKETS
        delta = (_h(owner, old) if old else 0) ^ _h(owner, version)
        self.vv_hash ^= delta
        self.bucket_hash[bucket] ^= delta
        self.bucket_owners[bucket][owner] = None
        self.vv[owner] = version
        log = self.log.setdefault(owner, [])
        if len(log) < version:
            log.append(raw)
        table = self.entries.setdefault(owner, {})
        for key_, value in c[3]:
            table[key_] = value
            if key_ == "card":
                self.classes[peer] = value
            elif key_.startswith("hold/"):
                item = key_[5:]
                if value is None:
                    self.holders.get(item, set()).discard(peer)
                else:
                    self.holders.setdefault(item, set()).add(peer)
                    self.item_policy[item] = value[1]
        if peer != self.peer_id:
            self.members.learn(peer)
        if relay:
            self.data_rumors.append([0, raw, self._budget()])
        out.append(Applied(peer, version))

    # --- fleet document (LWW stand-in for automerge) ---------------------------------------------
    def _set_doc(self, key_: str, value: object) -> None:
        self.lamport += 1
        self._apply_doc(key_, self.lamport, self.peer_id, value, relay=True)

    def _apply_doc(self, key_: str, lam: int, actor: str, value: object, relay: bool) -> None:
        cur = self.doc.get(key_)
        if cur is not None and (cur[0], cur[1]) >= (lam, actor):
            return
        if cur is not None:
            self.doc_hash ^= _h(key_, cur[0], cur[1])
        self.doc_hash ^= _h(key_, lam, actor)
        self.doc[key_] = (lam, actor, value)
        self.lamport = max(self.lamport, lam)
        if key_.startswith("revoke/"):
            self.revoked.add(key_[7:])
            self.members.forget(key_[7:])
        if relay:
            self.data_rumors.append([1, [key_, lam, actor, value], self._budget()])

    def _revoked(self, peer: str) -> bool:
        return peer in self.revoked

    def _friends(self) -> list[str]:
        return [k[7:] for k in self.doc if k.startswith("friend/")]

    # --- membership ----------------------------------------------------------------------------
    def _member_rumor(self, rumor: list, now_ms: int) -> None:
        peer, state, inc = rumor[0], int(rumor[1]), int(rumor[2])
        if peer == self.peer_id:
            if state in (SUSPECT, DEAD) and inc >= self.incarnation:
                self.incarnation = inc + 1  # refute: I am alive, at a newer incarnation
                self.members.queue_self(self.incarnation, self.disk_full)
            return
        if self._revoked(peer):
            return
        patience = self.cfg.portable_suspicion_ms if self.classes.get(peer) == "portable" \
            else self.cfg.suspicion_ms
        self.members.rumor(peer, state, inc, bool(rumor[3]), now_ms, now_ms + patience)

    # --- frames --------------------------------------------------------------------------------
    def _budget(self) -> int:
        return self.cfg.retransmit_mult * max(1, math.ceil(math.log10(self.members.size() + 2)))

    def _pack(self, msg: list) -> bytes:
        return msgpack.packb(msg)

    def _small(self, kind: int) -> bytes:
        return msgpack.packb([kind, self.incarnation, self.disk_full])

    def _gossip_frame(self, n_targets: int) -> bytes | None:
        budget = self.cfg.frame_bytes_max - 64
        mrumors = self.members.take_rumors(n_targets, self._budget(), budget // 2)
        commits: list[bytes] = []
        docops: list[list] = []
        used = sum(len(r[0]) + 8 for r in mrumors)
        keep: list[list] = []
        for rumor in self.data_rumors:
            size = len(rumor[1]) if rumor[0] == 0 else 96
            if used + size <= budget:
                (commits if rumor[0] == 0 else docops).append(rumor[1])
                used += size
                rumor[2] -= n_targets
            if rumor[2] > 0:
                keep.append(rumor)
        self.data_rumors = keep
        if not (mrumors or commits or docops):
            return None
        return msgpack.packb([F_GOSSIP, self.incarnation, self.disk_full, mrumors, commits, docops])

    def _vv_frame(self, want_reply: bool, buckets: list[int]) -> bytes:
        vv = [[o, self.vv[o]] for b in buckets for o in self.bucket_owners[b]]
        return msgpack.packb([F_VV, self.incarnation, self.disk_full, vv, self.doc_hash, want_reply,
                              buckets])

    def _answer_vv(self, src: str, msg: list, out: list) -> None:
        theirs = {bytes(o): int(v) for o, v in msg[3]}
        buckets = [int(b) % BUCKETS for b in msg[6]]
        commits: list[bytes] = []
        for b in buckets:
            for owner in self.bucket_owners[b]:
                mine, have = self.vv[owner], theirs.get(owner, 0)
                if mine > have:
                    commits.extend(self.log[owner][have:mine])
        docs = [[k, lam, a, v] for k, (lam, a, v) in self.doc.items()] if msg[4] != self.doc_hash else []
        chunk: list[bytes] = []
        size = 0
        for raw in commits:
            if chunk and size + len(raw) > self.cfg.frame_bytes_max - 4096:
                out.append(Send(src, self._pack([F_SYNC, self.incarnation, self.disk_full, chunk, []])))
                chunk, size = [], 0
            chunk.append(raw)
            size += len(raw)
        if chunk or docs:
            out.append(Send(src, self._pack([F_SYNC, self.incarnation, self.disk_full, chunk, docs])))
        if msg[5] and (any(v > self.vv.get(o, 0) for o, v in theirs.items()) or docs):
            out.append(Send(src, self._vv_frame(False, buckets)))

    # --- policy --------------------------------------------------------------------------------
    def _custody(self, now_ms: int, out: list) -> None:
        pins = {k[4:]: tuple(v[2]) for k, v in self.doc.items() if k.startswith("pin/") and v[2]}
        if not pins:
            return
        members = self.members
        # A lease ends early when its target got the copy, went away or filled up.
        for key_ in [k for k, exp in self.in_flight.items()
                     if exp <= now_ms or k[1] in self.holders.get(k[0], ())
                     or members.state(k[1]) != ALIVE or members.full(k[1])]:
            del self.in_flight[key_]

        def is_live(p: str) -> bool:
            return (p == self.peer_id or members.state(p) in (ALIVE, SUSPECT)) and not self._revoked(p)

        def target_ok(p: str) -> bool:
            return (is_live(p) and p != self.peer_id and not members.full(p)
                    and self.classes.get(p) not in (None, "portable"))

        repairs, trims = pol.plan_custody(
            self.peer_id, pins, lambda it: self.holders.get(it, ()), is_live, target_ok,
            lambda: sorted(members.live()), self.in_flight,
            lambda it: self.peer_id in self.holders.get(it, ()),
        )
        for item, target in repairs:
            self.in_flight[(item, target)] = now_ms + self.cfg.repair_lease_ms
            out.append(RepairStart(item, target, self.peer_id))
            out.append(Fetch(item, target))  # the stand-in tells the target directly
        for item in trims:
            self._commit([["hold/" + item, None]], out)
            out.append(Trimmed(item, self.peer_id))


__all__ = ["ALIVE", "DEAD", "LEFT", "SUSPECT", "Applied", "Shared", "StandinConfig", "StandinNode"]

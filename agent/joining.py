"""The join listener: admission by invite, and the fleet key for members who missed a rotation.

A second libp2p host per agent, on its own port, whose private-network key is public
(``agent.secrets.join_psk``): a joiner holding only an invite, and a member whose fleet key is out
of date, can both reach it; it serves exactly two requests and refuses everything else (no frame
streams at all). Both are bounded (request size, requests in flight) and rate-limited (a token
bucket for everyone, one request per second per peer), so knocking costs the fleet little.

* ``join`` {invite, card_delta}: an admin checks the invite against its replica of the decisions
  (signed by a current admin, unexpired, never redeemed, joiner not revoked), records the
  admission (the invite's nonce is the one-time join secret, now redeemed) and answers with the
  decision log, every feed, and the fleet key sealed to the joiner's identity key.
* ``rekey`` {epoch}: a current member (Noise proves its peer id) whose key epoch is older gets the
  current fleet key sealed to it; anyone else gets a refusal.
* ``friend_link``, ``friend_view``, ``friend_unlink``: a friend fleet's gateway (agent.friends_wire),
  answered by ``friend_handler`` (agent.friends) — never with our decisions, key or members.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import msgpack
import trio

from agent import rpc, secrets
from agent.friends_wire import FRIEND_KINDS, check_request
from crdt import records
from mesh import invites
from tva.errors import (
    DecodeError,
    InvalidInput,
    InviteError,
    PeerUnavailable,
    RemoteDataError,
    RequestRefused,
    TvaError,
)

log = logging.getLogger("tva.join")

JOIN_KINDS = ("join", "rekey")
JOIN_REPLY_BYTES_MAX = 3 * 1024 * 1024
REQUESTS_PER_S = 5.0
REQUESTS_BURST = 20
PEER_INTERVAL_S = 1.0
PEERS_REMEMBERED_MAX = 4096
REKEY_DECISIONS_BYTES_MAX = 1024 * 1024
VECTOR_ENTRIES_MAX = 1200  # 37 bytes each: a rekey request stays under the 60 KiB request limit


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: int
    tokens: float = 0.0
    at_s: float | None = None

    def take(self, now_s: float) -> bool:
        if self.at_s is None:
            self.tokens, self.at_s = float(self.burst), now_s
        self.tokens = min(self.burst, self.tokens + (now_s - self.at_s) * self.rate_per_s)
        self.at_s = now_s
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def encode_join_query(kind: str, body: dict) -> bytes:
    return msgpack.packb([1, kind, body], use_bin_type=True)


def decode_join_query(data: bytes) -> tuple[str, dict]:
    if len(data) > rpc.REQUEST_BYTES_MAX:
        raise DecodeError("join query too large")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=rpc.REQUEST_BYTES_MAX,
                              max_str_len=8192, max_array_len=VECTOR_ENTRIES_MAX, max_map_len=8, max_ext_len=0)
    except Exception:
        raise DecodeError("join query does not decode") from None
    if not (isinstance(obj, list) and len(obj) == 3 and obj[0] == 1 and obj[1] in JOIN_KINDS + FRIEND_KINDS
            and isinstance(obj[2], dict)):
        raise DecodeError("the join listener answers only join, rekey and friend requests")
    kind, body = obj[1], obj[2]
    if kind in FRIEND_KINDS:
        return kind, check_request(kind, body)
    if kind == "join":
        rpc._field(body, "invite", str, invites.TOKEN_CHARS_MAX)
        rpc._field(body, "card_delta", bytes, 16384)
    else:
        if type(body.get("epoch")) is not int or not 0 <= body["epoch"] < 2**53:
            raise DecodeError("rekey needs the asker's key epoch")
        body["vector"] = _vector(body.get("vector", []))
    return kind, body


def _vector(raw: object) -> dict[bytes, int]:
    """The asker's decision-log vector (author key -> seq), checked field by field."""
    if not isinstance(raw, list) or len(raw) > VECTOR_ENTRIES_MAX:
        raise DecodeError("rekey's vector must be a list of [author, seq]")
    out: dict[bytes, int] = {}
    for entry in raw:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], bytes)
                and len(entry[0]) == 32 and type(entry[1]) is int and 0 < entry[1] < 2**40):
            raise DecodeError("rekey's vector has a malformed entry")
        out[entry[0]] = entry[1]
    return out


def vector_field(doc) -> list[list]:
    """Our vector for a rekey request (a longer one is cut: the answer then holds more ops than
    needed, which the log ignores as duplicates)."""
    return [[a, s] for a, s in sorted(doc.vector().items())][:VECTOR_ENTRIES_MAX]


class JoinListener:
    """Serves ``join`` and ``rekey`` on its own transport; ``run`` inside the daemon's nursery."""

    def __init__(self, state, transport, *, commit: Callable[[], None], on_admitted: Callable[[], None],
                 clock_ms: Callable[[], int], new_transport: Callable[[], object] | None = None,
                 friend_handler: Callable[[str, str, dict], dict] | None = None) -> None:
        """``transport`` serves the first run; a restarted listener (a supervised component) gets a
        new one from ``new_transport`` (a libp2p transport runs once)."""
        self.state = state
        self.transport = transport
        self._new_transport = new_transport
        self._runs = 0
        self._commit = commit
        self._on_admitted = on_admitted
        self._clock_ms = clock_ms
        self._friend_handler = friend_handler
        self._bucket = TokenBucket(REQUESTS_PER_S, REQUESTS_BURST)
        self._last_by_peer: dict[str, float] = {}
        self.counters = {"joins": 0, "rekeys": 0, "friend_requests": 0, "refused": 0, "rate_limited": 0}
        self._wire(transport)

    def _wire(self, transport) -> None:
        transport.set_peer_filter(lambda _peer: True)  # anyone may knock; only two requests answer
        transport.set_request_handler(self._handle)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._runs += 1
        if self._runs > 1:
            if self._new_transport is None:
                raise InvalidInput("the join listener cannot be restarted (no new_transport factory)")
            self.transport = self._new_transport()
            self._wire(self.transport)
        await self.transport.run(task_status=task_status)

    def listen_addrs(self) -> list[str]:
        return self.transport.listen_addrs()

    async def _handle(self, peer: str, payload: bytes) -> bytes:
        now_s = trio.current_time()
        last = self._last_by_peer.get(peer)
        if (last is not None and now_s - last < PEER_INTERVAL_S) or not self._bucket.take(now_s):
            self.counters["rate_limited"] += 1
            return rpc.encode_refusal("the join listener is busy", "try again in a few seconds")
        if len(self._last_by_peer) >= PEERS_REMEMBERED_MAX:
            self._last_by_peer.pop(next(iter(self._last_by_peer)))
        self._last_by_peer[peer] = now_s
        try:
            kind, body = decode_join_query(payload)
            if kind in FRIEND_KINDS:
                if self._friend_handler is None:
                    raise RequestRefused("this agent serves no friend fleets")
                reply = self._friend_handler(peer, kind, body)
                self.counters["friend_requests"] += 1
            elif kind == "join":
                reply = self._admit(peer, body)
                self.counters["joins"] += 1
            else:
                reply = self._rekey(peer, body)
                self.counters["rekeys"] += 1
            return rpc.encode_reply(reply)
        except TvaError as exc:
            self.counters["refused"] += 1
            return rpc.encode_refusal(exc.message, exc.hint)

    def _sealed_key(self, peer: str) -> dict:
        fleet = self.state.fleet
        return {"psk_epoch": fleet.psk_epoch, "sealed_psk": secrets.seal_psk(fleet.psk, peer)}

    def _admit(self, joiner: str, body: dict) -> dict:
        from crdt.feed import decode_delta
        from crdt.identity import public_from_peer_id

        state, doc, now = self.state, self.state.doc, self._clock_ms()
        try:
            inv = invites.parse_invite(body["invite"])
            invites.check_admission(inv, now_ms=now, fleet_id=state.fleet.fleet_id, roles=doc.roles(),
                                    revoked=state.revoked(), redeemed=frozenset(doc.redeemed()), joiner=joiner)
            if doc.role_of(state.peer_id) not in ("owner", "admin"):
                # our admission would be refused by every member: say so instead of pretending
                raise InviteError("this host is not an admin of the fleet and cannot admit",
                                  hint="dial the host that issued the invite")
        except InviteError as exc:
            log.info("refused join of %s: %s", joiner[:16], exc.message)
            raise
        # The joiner's card must come signed by the joiner itself: checked before anything merges.
        joiner_key = public_from_peer_id(joiner)
        if decode_delta(body["card_delta"]).owner != joiner_key:
            raise RemoteDataError("the join request carried another host's feed")
        state.feeds.set_allowed(frozenset(set(state.feeds.allowed or ()) | {joiner_key}))
        applied = state.feeds.apply_delta(body["card_delta"])
        card = records.card_of(state.feeds.feed(applied.owner))
        name = card.name if card else joiner[:12]
        doc.admit(joiner, name, inv.role, inv.nonce_hex, now)
        self._commit()
        self._on_admitted()
        log.info("admitted %s (%s) as %s", name, joiner[:16], inv.role)
        doc_bytes = doc.save()
        deltas = state.feeds.deltas_since({}, JOIN_REPLY_BYTES_MAX - len(doc_bytes))
        return {"doc": doc_bytes, "deltas": deltas, "fleet_name": state.fleet.fleet_name, **self._sealed_key(joiner)}

    def _rekey(self, peer: str, body: dict) -> dict:
        """The decisions the asker lacks (so a revoked host learns of its revocation from signed
        ops, not from our word), and — for a current member behind on it — the fleet key."""
        doc = self.state.doc
        admitted = peer in doc.admissions()
        if not admitted:
            raise RequestRefused("only members get the fleet key")
        decisions = doc.ops_missing_from(body["vector"], REKEY_DECISIONS_BYTES_MAX)
        if peer not in self.state.members():
            log.info("told revoked host %s of its revocation (it asked for the fleet key)", peer[:16])
            return {"psk_epoch": self.state.fleet.psk_epoch, "decisions": decisions, "member": False}
        reply = {"psk_epoch": self.state.fleet.psk_epoch, "decisions": decisions, "member": True}
        if body["epoch"] >= self.state.fleet.psk_epoch:
            return reply  # up to date: nothing sealed
        log.info("sent the fleet key (epoch %d) to %s, which held epoch %d", self.state.fleet.psk_epoch,
                 peer[:16], body["epoch"])
        return {**reply, **self._sealed_key(peer)}


# --- the asking side --------------------------------------------------------------------------


async def ask(transport, peer: str, addrs: list[str], kind: str, body: dict, timeout_ms: int) -> dict:
    """One join-network request to ``peer`` at ``addrs`` (over a running join-net transport)."""
    transport.add_peer_addrs(peer, addrs)
    reply = rpc.decode_reply(await transport.request(peer, encode_join_query(kind, body), timeout_ms))
    rpc.raise_if_refused(reply)
    return reply


def fleet_key_from(reply: dict, key) -> tuple[int, bytes] | None:
    """(epoch, psk) from a join or rekey reply; None when the reply says we are up to date."""
    sealed, epoch = reply.get("sealed_psk"), reply.get("psk_epoch")
    if type(epoch) is not int or epoch < 0:
        raise DecodeError("a join reply lacks the fleet key's epoch")
    if sealed is None:
        return None
    if not isinstance(sealed, bytes):
        raise DecodeError("a join reply's sealed fleet key is not bytes")
    return epoch, secrets.open_psk(sealed, key)


async def fetch_fleet_key(transport, doc, key, candidates: list[tuple[str, list[str]]], epoch: int,
                          timeout_ms: int) -> tuple[int, bytes] | None:
    """Ask members' join listeners, in order, for a fleet key newer than ``epoch``; the decisions
    each answer carries (what we lacked) go into ``doc`` on the way, verified op by op."""
    for peer, addrs in candidates:
        try:
            reply = await ask(transport, peer, addrs, "rekey", {"epoch": epoch, "vector": vector_field(doc)},
                              timeout_ms)
            decisions = reply.get("decisions", [])
            if isinstance(decisions, list):
                doc.take_ops(d for d in decisions if isinstance(d, bytes))
            got = fleet_key_from(reply, key)
        except (PeerUnavailable, RemoteDataError) as exc:
            log.debug("rekey from %s failed: %s", peer[:16], exc)
            continue
        if got is not None and got[0] > epoch:
            return got
    return None

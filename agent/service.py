"""The agent's operations behind the route table (agent.api), in the daemon and offline alike.

Reads adapt the replicated state into the policy core (agent.views) once per state change and
serve every answer from that snapshot; writes change the state through ``NodeState`` and
report what changed via ``on_change`` so the daemon can push it to the mesh at once. The
torrent engine and the fabric are not reached from here: the routes take them from their
context, so this object is complete at construction (the torrent manager is built on it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from agent import views
from agent.discovery import agent_version
from agent.friend_inputs import FriendInputs
from agent.policy import custody as custody_policy
from agent.policy import duties as duty_policy
from agent.policy import friend_custody
from agent.policy import peers as peers_policy
from agent.probes import disk_free_bytes
from agent.state import NodeState
from agent.torrent_index import repair_progress  # [torrents]
from crdt import records
from mesh import invites
from tva.errors import Conflict, Forbidden, NotFound

ChangeHook = Callable[[bytes | None, bool], None]  # (own feed delta, fleet document changed)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


PEERS_MEMO_MAX = 4096  # peers_for answers kept per snapshot
DISK_FREE_STEP_BYTES = 64 * 1024**2  # this host's free space moves with every write: compared in steps


def _coarse(inputs: tuple) -> tuple:
    live, me = inputs
    disk = None if me.disk_free_bytes is None else me.disk_free_bytes // DISK_FREE_STEP_BYTES
    return live, disk, round(me.uptime_score, 2)  # it moves a little every second


class Service:
    def __init__(self, state: NodeState, *, clock_ms: Callable[[], int] = wall_ms,
                 live: Callable[[], views.LiveInfo] = views.LiveInfo, on_change: ChangeHook | None = None,
                 media_dir: os.PathLike | None = None, bootstrap: Callable[[], list[str]] = list,
                 extras: Callable[[], dict[str, Any]] = dict,
                 custody_config: custody_policy.CustodyConfig | None = None,
                 friends: Callable[[], FriendInputs] | None = None) -> None:
        self.state = state
        self.custody_config = custody_config or custody_policy.CustodyConfig()
        self.clock_ms = clock_ms
        self._live = live
        self._on_change = on_change or (lambda _d, _c: None)
        self._media_dir = media_dir
        self._bootstrap = bootstrap
        self._extras = extras
        # [friends] what friend fleets contribute (agent.friends); offline: the links alone
        self._friends = friends or (lambda: FriendInputs.from_doc(state.doc))
        self._snapshot: views.Snapshot | None = None
        self._snapshot_inputs: tuple = ()
        self._peers_memo: dict[tuple, dict] = {}
        self._peers_memo_of: views.Snapshot | None = None
        self._peers_memo_friends: FriendInputs | None = None
        self._plans: tuple | None = None
        self._own_plans: tuple | None = None
        self._duties: tuple | None = None

    # --- snapshot cache ---------------------------------------------------------------------------

    def invalidate(self) -> None:
        """Called whenever feeds, the fleet document or liveness changed."""
        self._snapshot = None
        self._drop_plans()

    def _drop_plans(self) -> None:
        """Everything computed from the snapshot and the clock (one place, so that no cache added
        later is forgotten by one of its two callers)."""
        self._plans = None
        self._own_plans = None
        self._duties = None

    def friend_inputs(self) -> FriendInputs:
        return self._friends()

    def refresh(self) -> None:
        """A policy tick: plans again (leases age with the clock), but rebuild the snapshot only
        when what it was built from moved — liveness, peers' presence or this host's own (presence
        changes arrive without a callback). Rebuilding it is ~25 ms at 2,000 holdings, on the
        event loop: every tick, that was a stall every API request behind it waited out."""
        self._drop_plans()
        if self._snapshot is not None and self._snapshot_inputs != _coarse(self._inputs()):
            self._snapshot = None

    def _inputs(self) -> tuple:
        disk = disk_free_bytes(self._media_dir) if self._media_dir is not None else None
        return self._live(), views.Presence(disk, self.state.local.uptime_score)

    def snapshot(self) -> views.Snapshot:
        if self._snapshot is None:
            live, me = inputs = self._inputs()
            self._snapshot = views.build_snapshot(self.state, live, me,
                                                  friend_slots=len(self.friend_inputs().links))
            self._snapshot_inputs = _coarse(inputs)
        return self._snapshot

    def duty_assignments(self) -> tuple:
        if self._duties is None:
            self._duties = duty_policy.assign_duties(self.snapshot().view)
        return self._duties

    def own_custody_plans(self) -> tuple:
        """Plans counting only our own hosts (what we ask friends for is computed from these)."""
        if self._own_plans is None:
            self._own_plans = custody_policy.plan_all(self.snapshot().view, self.clock_ms(), self.custody_config)
        return self._own_plans

    def custody_plans(self) -> tuple:
        """Plans with friends' copies counted where a pin allows it (agent.policy.friend_custody)."""
        if self._plans is None:
            f = self.friend_inputs()
            self._plans = friend_custody.count_friends(self.snapshot().view, self.own_custody_plans(), f.links,
                                                       f.views)
        return self._plans

    def item_policy(self, infohash: str) -> str:
        """An item's effective policy: the most closed our holders and our friends say."""
        return peers_policy.item_policy(self.snapshot().view, infohash,
                                        friends=self.friend_inputs().peers_of(infohash.lower()))

    def _name(self, peer: str | None) -> str | None:
        if peer is None:
            return None
        card = self.snapshot().cards.get(peer)
        if card is not None:
            return card.name
        admission = self.state.doc.admissions().get(peer)
        return admission.name if admission else None

    # --- reads --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        snap, live = self.snapshot(), self._live()
        card = self.state.card()
        members = self.state.members()
        alive = sum(1 for p in members if snap.liveness.get(p) in ("alive", "suspect"))
        out = {
            "peer_id": self.state.peer_id, "fleet_id": self.state.fleet.fleet_id,
            "fleet_name": self.state.fleet.fleet_name, "host_name": card.name if card else None,
            "host_class": card.host_class if card else None, "members": len(members),
            "members_alive": alive if live.daemon else None, "daemon": live.daemon,
            "invalid_pins": [{"content": c, "why": w} for c, w in snap.invalid_pins],
            "invalid_overrides": [{"peer_id": p, "why": w} for p, w in snap.invalid_overrides],
            "version": agent_version(), **self.revocation_status(),
            "decisions": self.state.doc.stats_dict(),
        }
        out.update(self._extras())
        return out

    def revocation_status(self) -> dict[str, Any]:
        rev = self.state.revocation()
        if rev is None:
            return {"revoked": False, "revocation": None}
        return {"revoked": True, "revocation": {"by": rev.by, "by_name": self._name(rev.by), "at_ms": rev.at_ms,
                                                "reason": rev.reason}}

    def _refuse_if_revoked(self) -> None:
        rev = self.state.revocation()
        if rev is not None:
            raise Conflict(f"this host was revoked from fleet {self.state.fleet.fleet_name} by "
                           f"{self._name(rev.by) or rev.by}: it no longer takes part",
                           hint="its data is kept; to rejoin, use a fresh state dir and a new invite")

    def hosts(self) -> list[dict[str, Any]]:
        snap, live = self.snapshot(), self._live()
        counts = {peer: len(items) for peer, items in snap.holdings.items()}
        rows = []
        for peer, shown in sorted(snap.liveness.items()):
            card = snap.cards.get(peer)
            host = snap.view.hosts.get(peer)
            presence = live.presence.get(peer)
            rows.append({
                "peer_id": peer, "name": self._name(peer), "class": host.host_class if host else None,
                "state": shown, "overlay_ipv4": (card.overlay_ipv4 or None) if card else None,
                "overlay_ipv6": (card.overlay_ipv6 or None) if card else None,
                "disk_free_bytes": host.disk_free_bytes if host else (presence.disk_free_bytes if presence else None),
                "uptime_score": host.uptime_score if host else None, "holdings": counts.get(peer, 0),
                "self": peer == self.state.peer_id, "role": self.state.doc.role_of(peer),
            })
        return rows

    def holdings(self) -> list[dict[str, Any]]:
        snap = self.snapshot()
        rows = []
        for peer in sorted(snap.holdings):
            for content, h in sorted(snap.holdings[peer].items()):
                rows.append({"host": self._name(peer), "peer_id": peer, "content": content,
                             "infohash": h.infohash, "size_bytes": h.size_bytes, "state": h.state,
                             "bytes_done": h.bytes_done, "policy": h.policy, "source": h.source,
                             "custody": h.custody})
        return rows

    def custody(self) -> list[dict[str, Any]]:
        rows = []
        for plan in self.custody_plans():
            d = plan.to_json_dict()
            rows.append({**d, "min": plan.min_copies, "max": plan.max_copies,
                         "baton_name": self._name(plan.baton),
                         # [torrents] copies in flight: each pending target's bytes done / total
                         "transfers": repair_progress(self.snapshot(), plan),
                         # custody copies being dropped (the pin is over its max)
                         "trimming": [{"target": t, "host": self._name(t)} for t in plan.trims]})
        return rows

    def duties(self) -> list[dict[str, Any]]:
        out = []
        for a in self.duty_assignments():
            out.append({**a.to_json_dict(), "primary_name": self._name(a.primary)})
        return out

    def peers_for(self, infohash: str, external: list | tuple = ()) -> dict[str, Any]:
        """``external``: DHT peers from the torrent engine (agent.torrents), when it runs; friend
        fleets' holders come from their verified views (agent.friends). Answers are kept per
        snapshot and per friend inputs (the hottest read: a client asks again and again), so
        callers must not change the dict they get."""
        snapshot, f = self.snapshot(), self.friend_inputs()
        key = (infohash, tuple(external))
        if (self._peers_memo_of is not snapshot or self._peers_memo_friends is not f
                or len(self._peers_memo) >= PEERS_MEMO_MAX):
            self._peers_memo, self._peers_memo_of, self._peers_memo_friends = {}, snapshot, f
        d = self._peers_memo.get(key)
        if d is None:
            d = peers_policy.peers_for(snapshot.view, infohash, external=list(external),
                                       friends=f.peers_of(infohash.lower()),
                                       friend_fleets=frozenset(f.links)).to_json_dict()
            for p in d.get("peers", []):
                p.setdefault("host", self._name(p.get("peer_id")))
            self._peers_memo[key] = d
        return d

    def custodians_of(self, content: str) -> dict[str, Any]:
        snap = self.snapshot()
        holders = snap.view.by_content.get(content) or {}
        if not holders and content in snap.view.by_infohash:
            holders = {p: h for p, items in snap.view.by_infohash[content].items() for h in items.values()}
        rows = [{"peer_id": p, "host": self._name(p), "state": "complete" if h.complete else "partial",
                 "liveness": snap.liveness.get(p)} for p, h in sorted(holders.items())]
        return {"content": content, "holders": rows}

    # --- writes -------------------------------------------------------------------------------

    def commit(self, doc_changed: bool = False) -> bytes | None:
        """Sign what was written to the own feed (and/or the doc changed): invalidate, push to the mesh."""
        delta = self.state.own.commit(self.clock_ms())
        if doc_changed:
            self.state.refresh_membership()
        self.invalidate()
        self._on_change(delta, doc_changed)
        return delta

    def add_holding(self, content: str, infohash: str, size_bytes: int, policy: str | None, source: str) -> dict:
        self._refuse_if_revoked()
        note = ""
        if policy is None:
            # A private source stays closed until someone opens it explicitly.
            policy = "search_only" if source == "private-tracker" else "public"
        elif source == "private-tracker" and policy == "public":
            # Forced, not refused: the source account is at stake, and no request can open it further.
            policy, note = "f2f_only", "private-tracker content is f2f_only at most"
        h = records.Holding(content, infohash.lower(), size_bytes, "complete", policy, source, size_bytes)
        self.state.own.put(records.holding_key(content), records.encode_holding(h))
        self.commit()
        return {"message": f"holding {content} added ({h.policy})" + (f": {note}" if note else ""),
                "content": content, "infohash": h.infohash, "policy": h.policy, "note": note}

    def remove_holding(self, content: str) -> dict:
        self._refuse_if_revoked()
        key = records.holding_key(content)
        if self.state.own.get(key) is None:
            raise NotFound(f"this host holds no {content!r}", hint="`tva-agent holdings list` shows them")
        self.state.own.delete(key)
        self.commit()
        return {"message": f"holding {content} removed", "content": content}

    def pin(self, content: str, copies: int, max_copies: int | None, friends: bool = False) -> dict:
        self._refuse_if_revoked()
        members = len(self.state.members())
        linked = len(self.friend_inputs().links) if friends else 0
        if copies > members + linked:
            more = f" and {linked} friend fleet(s)" if friends else ""
            raise Conflict(f"cannot keep {copies} copies with {members} member host(s){more}",
                           hint="pin fewer copies, invite more hosts" + ("" if friends else ", or count friends' "
                                                                         "copies with --friends"))
        self.state.doc.pin(content, copies, max_copies, self.clock_ms(), friends=friends)
        self.commit(doc_changed=True)
        return {"message": f"pinned {content}: {copies} copies" + (", friends' copies count" if friends else ""),
                "content": content, "min": copies, "max": max_copies, "friends": friends}

    def unpin(self, content: str) -> dict:
        self._refuse_if_revoked()
        if not self.state.doc.unpin(content, self.clock_ms()):
            raise NotFound(f"{content!r} is not pinned", hint="`tva-agent custody` lists pins")
        self.commit(doc_changed=True)
        return {"message": f"unpinned {content}", "content": content}

    def revoke(self, host: str, reason: str) -> dict:
        self._refuse_if_revoked()
        peer = self.state.resolve_host(host)
        if peer == self.state.peer_id:
            raise Conflict("a host cannot revoke itself", hint="revoke it from another member")
        if not self.state.doc.revoke(peer, reason or "revoked", self.clock_ms()):
            raise Conflict(f"{self._name(peer) or peer} is already revoked", hint="revocations are permanent")
        epoch = self.rotate_fleet_key()
        self.commit(doc_changed=True)
        return {"message": f"revoked {self._name(peer) or peer}; fleet key rotated to epoch {epoch}",
                "peer_id": peer, "psk_epoch": epoch}

    def rotate_fleet_key(self) -> int:
        """A new fleet key, sealed to every remaining member (agent.secrets): the revoked host,
        which knew the old one, can no longer open a connection to any member."""
        from agent import secrets

        doc = self.state.doc
        held = doc.psk_rotation()
        epoch = max(self.state.fleet.psk_epoch, held.epoch if held else 0) + 1
        psk = secrets.new_psk()
        doc.rotate_psk(epoch, secrets.seal_for_members(psk, self.state.members()), self.clock_ms())
        return epoch

    def grant(self, host: str, role: str) -> dict:
        peer = self.state.resolve_host(host)
        self.state.doc.grant(peer, role, self.clock_ms())
        self.commit(doc_changed=True)
        return {"message": f"{self._name(peer) or peer} is now {role}", "peer_id": peer, "role": role}

    def invite(self, role: str, ttl_ms: int) -> dict:
        self._refuse_if_revoked()
        if self.state.doc.role_of(self.state.peer_id) not in ("owner", "admin"):
            raise Forbidden("only an admin may invite hosts",
                            hint="ask an admin (`tva-agent hosts` shows roles) to run `tva-agent invite`")
        bootstrap = self._bootstrap()
        token = invites.issue_invite(
            key=self.state.key, fleet_id=self.state.fleet.fleet_id, fleet_name=self.state.fleet.fleet_name,
            bootstrap=bootstrap, role=role, ttl_ms=ttl_ms,
            nonce=os.urandom(invites.NONCE_BYTES), now_ms=self.clock_ms())
        inv = invites.parse_invite(token)
        return {"invite": token, "role": role, "expires_at_ms": inv.expires_at_ms,
                "expires_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(inv.expires_at_ms / 1000))}

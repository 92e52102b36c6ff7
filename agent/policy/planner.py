"""CustodyPlanner: the incremental path — keep every pin's plan current as single facts change.

A full ``plan_all`` over 10k pins costs hundreds of milliseconds; a holding changes far more often
than that. Each pin's plan depends only on its own holdings and intents, the hosts, and the time
(leases), so a change re-plans:

* a holding → the pins matching its content id or infohash (before and after the change);
* intents of a content → that pin;
* a host (card, liveness, soft state) → the pins it holds, the pins with an intent naming it,
  and, among the pins still missing copies, those it was a repair target of or would now
  outrank a chosen target for (one hash per such pin, not a re-plan);
* the time → the pins with intents (plans hold lease durations, not deadlines).

The result is exactly what ``plan_all`` over the same view gives (a property test checks it).
The planner owns the ``FleetView`` passed in: the caller must not use or change it afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import checks, rendezvous
from .custody import CustodyConfig, CustodyPlan, _plan, _Pool, _validate, missing_copies
from .inputs import HoldingView, HostView, IntentView, PinView
from .view import FleetView, _check_pin_fits


class CustodyPlanner:
    def __init__(self, view: FleetView, now_ms: int, config: CustodyConfig = CustodyConfig()) -> None:
        _validate(view, now_ms, config)
        self._view = view
        self._now_ms = now_ms
        self._config = config
        self._pool = _Pool(view)
        self._plans: dict[str, CustodyPlan] = {}
        self._wanting: set[str] = set()  # pins whose plan still misses copies (reads the pool)
        self._replan(view.pins.keys())

    # --- reading ---------------------------------------------------------------------------

    @property
    def view(self) -> FleetView:
        """The current view (read-only: change it through the planner's methods)."""
        return self._view

    @property
    def now_ms(self) -> int:
        return self._now_ms

    def plans(self) -> tuple[CustodyPlan, ...]:
        """Every plan, sorted by content: equal to ``plan_all(view, now_ms, config)``."""
        return tuple(self._plans[c] for c in sorted(self._plans))

    def plan(self, content: str) -> CustodyPlan | None:
        return self._plans.get(content)

    # --- changes (each returns the plans that changed, sorted by content) -------------------

    def put_holding(self, hold: HoldingView) -> tuple[CustodyPlan, ...]:
        checks.instance(hold, "hold", HoldingView)
        old = self._view._put_holding(hold)
        touched = set(self._view.pins_touching(hold))
        if old is not None:
            touched.update(self._view.pins_touching(old))
        return self._replan(touched)

    def drop_holding(self, peer_id: str, content_id: str) -> tuple[CustodyPlan, ...]:
        checks.peer_id(peer_id, "peer_id")
        checks.text(content_id, "content_id")
        old = self._view._drop_holding(peer_id, content_id)
        return self._replan(self._view.pins_touching(old)) if old is not None else ()

    def set_intents(self, content: str, intents: Iterable[IntentView]) -> tuple[CustodyPlan, ...]:
        """Replace all intents recorded for ``content`` (as adapted from every baton's feed)."""
        content = PinView(content, 1).content  # validates and normalises like a pin key
        self._view._set_intents(content, intents)
        return self._replan([content] if content in self._view.pins else [])

    def put_host(self, host: HostView) -> tuple[CustodyPlan, ...]:
        """A new or changed host card, liveness or soft state."""
        checks.instance(host, "host", HostView)
        old = self._view.hosts.get(host.peer_id)
        self._view._put_host(host)
        new = self._view.hosts[host.peer_id]
        # Soft state (disk, uptime, addresses) only moves repair targets; holder counting and
        # pending intents read liveness, revocation and class alone.
        as_holder = old is None or (old.liveness, old.revoked, old.host_class) != (new.liveness, new.revoked, new.host_class)
        return self._host_changed(host.peer_id, as_holder=as_holder)

    def drop_host(self, peer_id: str) -> tuple[CustodyPlan, ...]:
        checks.peer_id(peer_id, "peer_id")
        if not self._view._drop_host(peer_id):
            return ()
        return self._host_changed(peer_id, as_holder=True)

    def put_pin(self, pin: PinView) -> tuple[CustodyPlan, ...]:
        checks.instance(pin, "pin", PinView)
        _check_pin_fits(pin, self._view.usable_host_count() + (self._view.friend_slots if pin.friends else 0))
        self._view.pins[pin.content] = pin
        return self._replan([pin.content])

    def drop_pin(self, content: str) -> bool:
        content = PinView(content, 1).content
        self._wanting.discard(content)
        self._plans.pop(content, None)
        return self._view.pins.pop(content, None) is not None

    def set_now(self, now_ms: int) -> tuple[CustodyPlan, ...]:
        checks.integer(now_ms, "now_ms")
        self._now_ms = now_ms
        return self._replan(list(self._view.intents))

    # --- internals -------------------------------------------------------------------------

    def _host_changed(self, peer_id: str, *, as_holder: bool) -> tuple[CustodyPlan, ...]:
        view = self._view
        pool = _Pool(view)
        touched: set[str] = set()
        if as_holder:
            for cid in view.by_peer.get(peer_id, ()):
                touched.update(view.pins_touching(view.by_content[cid][peer_id]))
            for content, intents in view.intents.items():
                if any(peer_id in (i.target_peer, i.baton_peer) for i in intents):
                    touched.add(content)
        old_entry, entry = self._pool.by_peer.get(peer_id), pool.by_peer.get(peer_id)
        same_rank = old_entry is not None and entry is not None and old_entry[:2] == entry[:2]
        for content in self._wanting:
            plan = self._plans[content]
            targets = [r.target for r in plan.repairs]
            need_bytes = (plan.size_bytes or 0) + self._config.reserve_bytes
            if peer_id in targets:
                # It may have lost eligibility, tier or rank; with only its disk changed, it
                # stays exactly where it was while the copy still fits.
                if not (same_rank and entry[2] >= need_bytes):  # type: ignore[index]
                    touched.add(content)
                continue
            if entry is None or entry[2] < need_bytes or peer_id in plan.pending:
                continue
            if same_rank and old_entry[2] >= need_bytes:  # type: ignore[index]
                continue  # it was already a candidate and lost to the chosen targets: still does
            if peer_id in view.holdings_for(content):
                continue
            if len(targets) < missing_copies(plan):
                touched.add(content)  # it was short of targets and this one qualifies
                continue
            key = rendezvous.key_bytes("pin", content)
            if pool.target_key(key, peer_id) < pool.target_key(key, targets[-1]):  # type: ignore[operator]
                touched.add(content)
        self._pool = pool
        return self._replan(touched)

    def _replan(self, contents: Iterable[str]) -> tuple[CustodyPlan, ...]:
        view, changed = self._view, []
        for c in sorted(set(contents)):
            pin = view.pins.get(c)
            if pin is None:
                continue
            new = _plan(view, pin, self._now_ms, self._config, self._pool)
            if missing_copies(new):
                self._wanting.add(c)
            else:
                self._wanting.discard(c)
            if self._plans.get(c) != new:
                self._plans[c] = new
                changed.append(new)
        return tuple(changed)

"""Long runs of the mesh core at simulator scale (opt in: TVA_SOAK=1)."""

from __future__ import annotations

import time

import pytest

from mesh.core import Leave, Liveness
from tests.conftest import require_soak
from tests.mesh.harness import Harness, Net


@pytest.mark.slow
@pytest.mark.parametrize("n", [200, 1000])
def test_churn_at_scale_converges_and_detects(n):
    require_soak()
    wall = time.monotonic()
    h = Harness(n, seed=n, net=Net(loss=0.05, dup=0.02, delay_ms_max=50))
    h.run_until(5000)
    stopped, leaver = h.ids[10:15], h.ids[20]
    for i, p in enumerate(h.ids[:40]):
        h.change(p, b"state-%d" % i)
    h.doc_add(h.ids[3], b"pin")
    for p in stopped:
        h.stop(p)
    h.handle(leaver, Leave())
    h.run_until(6000)
    h.stop(leaver)
    t0 = h.now
    done = h.run_until_true(h.converged, t0 + 60_000, 500)
    assert done is not None
    live = h.live()
    observers = live[:: max(1, len(live) // 50)]  # a sample of observers keeps the check cheap

    def settled() -> bool:
        views = [h.nodes[p].liveness() for p in observers]
        return all(all(v[x] is Liveness.DEAD for x in stopped) and v[leaver] is Liveness.LEFT for v in views)

    detected = h.run_until_true(settled, t0 + h.config.dead_bound_ms(n), 1000)
    assert detected is not None
    # with loss going on, some false suspicions are always in flight; once it stops they are refuted
    h.net = Net(dup=0.02, delay_ms_max=50)
    h.run_until(h.now + 30_000)
    for p in observers:
        assert sum(s is Liveness.ALIVE for s in h.nodes[p].liveness().values()) == len(live) - 1
    rate = sum(h.nodes[p].stats["bytes_sent"] for p in live) / len(live) / (h.now / 1000)
    print(f"n={n}: converged {done - t0} ms, failures settled {detected - t0} ms after churn; "
          f"{rate:.0f} B/s per node; "
          f"wall {time.monotonic() - wall:.1f} s")

"""Seeded, deterministic simulation of whole fleets running the real sans-I/O cores.

``python -m simulations --scenario churn --nodes 30 --seed 1`` — see ``simulations.__main__``.
World: ``world`` (event loop, trace), ``network`` (links, faults), ``sim`` (truth + effects),
``scenarios`` (named fault/workload schedules), ``checkers`` (safety per step, liveness after
healing), ``metrics``, ``run`` (one run → JSON-able result), ``plot``. Nodes: ``adapter`` (the
SimNode seam), ``realnode``/``realview`` (mesh.core + crdt + agent.policy), ``standin*`` (a
stand-in protocol used when the real cores are missing or the fleet is too big for them here).
"""

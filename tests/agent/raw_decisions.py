"""Decisions no check of ours would write — signed ops made straight with ``make_op``, as an older
or newer build or a misbehaving member could — put into a replica directly (tests only). The tool
lives with the simulator's rogue (``simulations.rogue``), which uses it too."""

from __future__ import annotations

from simulations.rogue import write_raw

__all__ = ["write_raw"]

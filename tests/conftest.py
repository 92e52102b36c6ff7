"""Shared test settings: hypothesis profiles and the root / soak gates."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

# Properties run with hypothesis' own search; CI runs more examples than a quick local loop.
settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=60
)
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150,
    print_blob=True,
)
settings.load_profile("ci" if os.environ.get("CI") else "default")

IS_ROOT = os.geteuid() == 0


def require_root(*tools: str) -> None:
    """Skip (with the reason) when not root; fail when root but a tool setup.sh installs is missing."""
    if not IS_ROOT:
        pytest.skip("needs root (network namespaces / wireguard-go); CI runs as root")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing {missing}: ./setup.sh test installs them")


def require_soak() -> None:
    if not os.environ.get("TVA_SOAK"):
        pytest.skip("long soak: opt in with TVA_SOAK=1")

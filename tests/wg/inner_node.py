"""A node run *inside* a network namespace, as the agent daemon will be: ``ip netns exec NS python -m
tests.wg.inner_node FLEET_ID NAME SOCK_DIR NAMES UNDERLAYS SUBNET``.

It uses the production code path (``UserspaceBackend`` without ``netns``: a private mount namespace
via ``unshare`` for wireguard-go's socket), reconciles, prints ``ready`` and waits for a line on
stdin, then tears down and prints ``down``.
"""

from __future__ import annotations

import sys
from ipaddress import IPv4Network
from pathlib import Path

from tests.wg.fleet import LabFleet
from wg.fabric import WgFabric
from wg.userspace import UserspaceBackend


def main(argv: list[str]) -> int:
    fleet_id, name, sock_dir, names, underlays, subnet = argv
    fleet = LabFleet(fleet_id.encode(), names.split(","), underlays.split(","), IPv4Network(subnet))
    backend = UserspaceBackend(sock_dir=Path(sock_dir))
    fabric = WgFabric(backend)
    try:
        report = fabric.reconcile(fleet.desired(name))
        print("ready" if report.applied else f"error {report.error}", backend.pid, flush=True)
        sys.stdin.readline()
    finally:
        fabric.close()
    print("down", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

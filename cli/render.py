"""Human output of each read command (the JSON shapes are documented in the README)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from cli.output import human_bytes, key_values, short_id, table


def human(args: argparse.Namespace, result: Any) -> None:
    cmd = args.command
    if cmd == "status":
        _status(result)
    elif cmd == "hosts":
        rows = [{**h, "peer": short_id(h.get("peer_id")), "disk": human_bytes(h.get("disk_free_bytes"))}
                for h in result]
        table(rows, [("name", "name"), ("peer", "peer id"), ("role", "role"), ("class", "class"), ("state", "state"),
                     ("overlay_ipv4", "overlay ipv4"), ("disk", "disk free"), ("holdings", "holdings")])
    elif cmd == "holdings" and args.action == "list":
        rows = [{**h, "size": human_bytes(h.get("size_bytes"))} for h in result]
        table(rows, [("host", "host"), ("content", "content"), ("infohash", "infohash"), ("size", "size"),
                     ("state", "state"), ("policy", "policy"), ("source", "source")])
    elif cmd == "custody":
        rows = [{**c, "copies_of": f"{c['copies']}/{c['min']}" + (f"..{c['max']}" if c.get("max") else ""),
                 "repairing": ", ".join(short_id(x.get("target")) + _progress(x)
                                        for x in c.get("transfers") or c.get("repairs") or []),
                 "trimming": ", ".join(x.get("host") or short_id(x.get("target")) for x in c.get("trimming") or [])}
                for c in result]
        table(rows, [("content", "content"), ("status", "status"), ("copies_of", "copies/min"),
                     ("baton_name", "baton"), ("repairing", "repairing"), ("trimming", "trimming")],
              empty="(no pins)")
    elif cmd == "duties":
        rows = [{**d, "standbys": [short_id(s) for s in d.get("standbys", [])]} for d in result]
        table(rows, [("duty", "duty"), ("primary_name", "primary"), ("standbys", "standbys")])
    elif cmd == "reaper":
        table(result if isinstance(result, list) else result.get("verdicts", []),
              [("name", "name"), ("infohash", "infohash"), ("state", "state"), ("reasons", "why"),
               ("actions", "actions")], empty="(no torrents)")
    elif cmd == "peers-for":
        print(f"{result['infohash']}  policy={result['policy']}")
        table(result.get("peers", []), [("source", "source"), ("host", "host"), ("addr", "address"),
                                        ("port", "port"), ("peer_id", "peer id")], empty="(no peers)")
    elif cmd == "custodians-of":
        table(result.get("holders", []), [("host", "host"), ("peer_id", "peer id"), ("state", "state")],
              empty="(nobody holds it)")
    elif cmd == "wg" and args.action == "status":
        iface = result.get("interface", {})
        key_values([(k, iface.get(k)) for k in ("mode", "reason", "backend", "overlay_ipv4", "overlay_ipv6",
                                                  "public_key") if k in iface])
        rows = [{**p, "rx": human_bytes(p.get("rx_bytes")), "tx": human_bytes(p.get("tx_bytes")),
                 "handshake": f"{p['handshake_age_s']} s ago" if p.get("handshake_age_s") is not None else "never"}
                for p in result.get("peers", [])]
        table(rows, [("name", "host"), ("endpoint", "endpoint"), ("handshake", "handshake"), ("rx", "rx"),
                     ("tx", "tx"), ("allowed_ips", "allowed ips")], empty="(no peers)")
    elif cmd == "dashboard":
        print(result["url"])
        print("(open it in a browser on this machine: it works once, within 5 minutes)", file=sys.stderr)
    elif cmd == "invite":
        print(result["invite"])
        print(f"(role {result['role']}, expires at {result['expires_at']})", file=sys.stderr)
    else:
        # writes: one line that says what happened
        print(result.get("message") or ", ".join(f"{k}={v}" for k, v in sorted(result.items())))


def _progress(repair: dict) -> str:
    done, total = repair.get("bytes_done"), repair.get("size_bytes")
    if done is None or not total:
        return ""
    return f" ({100 * done // total}%)"


def _status(s: dict) -> None:
    pairs = [
        ("peer id", s.get("peer_id")), ("host", f"{s.get('host_name')} ({s.get('host_class')})"),
        ("fleet", f"{s.get('fleet_name')} ({s.get('fleet_id')})"),
        ("members", f"{s.get('members')}" + (f" ({s['members_alive']} alive)" if s.get('members_alive') is not None else " (liveness needs the daemon)")),
        ("daemon", "running" if s.get("daemon") else "not running"),
    ]
    if s.get("listen_addrs"):
        pairs.append(("listening", s["listen_addrs"]))
    if s.get("api"):
        pairs.append(("api", s["api"]))
    wg = s.get("wg") or {}
    if wg:
        pairs.append(("tva0", wg.get("mode", "?") + (f" — {wg['reason']}" if wg.get("reason") else "")))
    if s.get("torrent"):
        pairs.append(("torrents", s["torrent"]))
    bad = (s.get("invalid_pins") or []) + (s.get("invalid_overrides") or [])
    if bad:
        pairs.append(("skipped decisions", f"{len(bad)} outside the limits (status --json lists them)"))
    rev = s.get("revocation")
    if s.get("revoked") and rev:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(rev.get("at_ms", 0) / 1000))
        pairs.append(("revoked", f"by {rev.get('by_name') or rev.get('by')} at {when} ({rev.get('reason') or '-'}): "
                                 "this host no longer takes part"))
    troubled = [f"{name} {c['state']}" + (f" ({c['reason']})" if c.get("reason") else "")
                for name, c in sorted((s.get("components") or {}).items()) if c.get("state") in ("degraded", "restarting")]
    if s.get("components"):
        pairs.append(("components", "; ".join(troubled) or "all ok"))
    gossip = s.get("gossip") or {}
    if gossip:  # where gossip bytes went, and how deep the rumour queues are
        sent = ", ".join(f"{k} {v // 1024} KiB" for k, v in gossip.get("item_bytes_sent", {}).items())
        queues = ", ".join(f"{k} {q.get('depth', 0)} (max {q.get('depth_max', 0)}, evicted {q.get('evicted', 0)})"
                           for k, q in gossip.get("queues", {}).items())
        pairs.append(("gossip sent", sent))
        pairs.append(("rumour queues", queues))
    if s.get("version"):
        pairs.append(("version", s["version"]))
    key_values(pairs)

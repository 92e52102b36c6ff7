"""Cross-fleet custody that moves data: real `tva-agent` processes, embedded libtorrent, loopback only.

Fleet alpha has one host that seeds a file; fleet beta (two hosts) offers alpha
``friend_custody_bytes`` when it redeems alpha's friend invite. ``pin --copies 2 --friends`` on
alpha cannot be met by alpha's own hosts, so alpha's view asks beta to keep a copy; a beta host
fetches it over libtorrent from alpha's holder (dialled from alpha's signed view), the file lands
byte for byte in beta's media dir, and alpha's custody counts beta's copy (status ok, two copies
with one of them beta's). A pin without ``--friends`` asks nothing and stays under.
"""

from __future__ import annotations

import subprocess

from tests.agent.procs import AgentProc, wait_until
from tests.agent.test_friends_e2e import start_fleet
from tests.agent.test_repair_e2e import MIB, plan_of, seed, sha256_of, write_payload

SYNC_MS = 1000
OFFER_BYTES = 64 * MIB


def make(tmp_path, name: str, **env: str) -> AgentProc:
    return AgentProc(tmp_path, name, env={"TVA_TORRENT_ENGINE": "libtorrent",
                                          "TVA_FRIEND_SYNC_INTERVAL_MS": str(SYNC_MS), **env})


def friend_copy_holder(p: AgentProc, infohash: str, ids: dict[str, str]) -> str | None:
    """The beta host whose finished friend-custody copy of ``infohash`` p's fleet shows."""
    for h in p.cli("holdings", "list", "--json"):
        if h["infohash"] == infohash and h["state"] == "complete" and h["peer_id"] in (ids["b1"], ids["b2"]):
            return h["peer_id"]
    return None


def listening(port: int) -> list[str]:
    """Local addresses of the TCP and UDP sockets bound to ``port`` (ss, iproute2)."""
    out = subprocess.run(["ss", "-Htuln", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return [line.split()[4] for line in out.splitlines() if line.strip()]


def test_a_friends_pin_moves_a_copy_into_the_friend_fleet_and_counts_it(tmp_path):
    a1, b1, b2 = make(tmp_path, "a1"), make(tmp_path, "b1"), make(tmp_path, "b2")
    procs = (a1, b1, b2)
    try:
        ids = start_fleet(a1, "alpha")
        ids |= start_fleet(b1, "beta", b2)
        content, infohash, digest = seed(a1, "film.bin", 6 * MIB)
        other, other_ih, _ = seed(a1, "other.bin", 1 * MIB)
        closed_digest = write_payload(a1.state_dir / "media" / "home.bin", 1 * MIB)
        closed = a1.cli("torrent", "add", str(a1.state_dir / "media" / "home.bin"), "--policy", "f2f_only",
                        "--json")["result"]

        token = a1.cli("invite", "--role", "friend", "--json")["invite"]
        b1.cli("friend", "add", token, "--custody-bytes", str(OFFER_BYTES), "--json")
        row = wait_until(lambda: [r for r in a1.cli("friends", "--json")
                                  if r.get("custody_bytes_offered_to_us") == OFFER_BYTES], 20,
                         "alpha to see beta's custody offer in beta's view")[0]
        assert row["name"] == "beta" and row["state"] == "linked"

        # Without --friends a pin alpha cannot meet alone is refused; with it, beta's copy may count.
        refused = a1.run_cli("pin", content, "--copies", "2")
        assert refused.returncode != 0 and "--friends" in refused.stderr
        a1.cli("pin", content, "--copies", "2", "--friends")
        a1.cli("pin", closed["content"], "--copies", "2", "--friends")
        a1.cli("pin", other, "--copies", "1")  # met by alpha alone: nothing asked of beta

        keeper = wait_until(lambda: friend_copy_holder(b1, infohash, ids), 90, "a beta host to finish the copy")
        keeper_proc = b1 if keeper == ids["b1"] else b2
        assert sha256_of(keeper_proc.state_dir / "media" / "film.bin") == digest  # libtorrent-verified, byte for byte
        held = next(h for h in keeper_proc.cli("holdings", "list", "--json")
                if h["peer_id"] == keeper and h["infohash"] == infohash)
        assert held["custody"] is True and held["bytes_done"] == held["size_bytes"] == 6 * MIB
        rows = {r["infohash"]: r for r in keeper_proc.cli("torrent", "list", "--json")}
        assert rows[infohash]["state"] == "seeding"
        # One copy for alpha, on one beta host; the pin alpha meets alone was never asked for.
        others = (b2 if keeper_proc is b1 else b1)
        assert sha256_of(others.state_dir / "media" / "film.bin") is None
        assert other_ih not in {r["infohash"] for p in (b1, b2) for r in p.cli("torrent", "list", "--json")}

        # The f2f_only item is kept too, and closed to the public swarm on the keeper (BEP 27).
        closed_keeper = wait_until(lambda: friend_copy_holder(b1, closed["infohash"], ids), 60, "the f2f_only copy")
        closed_proc = b1 if closed_keeper == ids["b1"] else b2
        assert sha256_of(closed_proc.state_dir / "media" / "home.bin") == closed_digest
        row = {r["infohash"]: r for r in closed_proc.cli("torrent", "list", "--json")}[closed["infohash"]]
        assert row["policy"] == "f2f_only"
        assert "public swarm" not in "".join(line for line in closed_proc.log.read_text().splitlines()
                                             if row["content"] in line)
        assert "opened to the public swarm" in keeper_proc.log.read_text()  # the public one may open

        plan = wait_until(lambda: (lambda p: p if p["status"] == "ok" else None)(plan_of(a1, content)), 30,
                          "alpha's custody to count beta's copy")
        beta_id = b1.cli("status", "--json")["fleet_id"]
        assert plan["friend_copies"] == [beta_id] and plan["copies"] == 1 and plan["min_copies"] == 2
        assert any("friend" in n for n in plan["notes"])
        # alpha's view of beta lists exactly that copy: beta shows alpha what it keeps for alpha.
        # (Its copy may have finished after the view alpha last pulled: views cross every sync interval.)
        closed_plan = wait_until(lambda: (lambda p: p if p["status"] == "ok" else None)(plan_of(a1, closed["content"])),
                                 30, "alpha's custody to count beta's f2f_only copy")
        assert closed_plan["friend_copies"] == [beta_id]
        found = [p for p in a1.cli("peers-for", infohash, "--json")["peers"] if p["source"] == "friend"]
        assert [p["peer_id"] for p in found] == [keeper]
        # The keeper's torrent engine, reachable by a friend fleet, binds concrete addresses only.
        bound = listening(found[0]["port"])
        assert bound and all(a.rsplit(":", 1)[0].split("%")[0] == "127.0.0.1" for a in bound), bound
    finally:
        for p in procs:
            p.kill()

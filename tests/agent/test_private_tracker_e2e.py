"""A private tracker's item through every path that could open it: CLI, API, the replicated holdings
and a custody repair — real `tva-agent` processes with embedded libtorrent, loopback only.

alpha adds a .torrent carrying BEP 27's private flag and a passkey in its announce URL (a tracker on
127.0.0.1:1, where nothing listens) with ``--policy public``: it is clamped to ``f2f_only``. A pin
of two copies makes beta repair it: beta adds it from alpha's .torrent (private flag kept, trackers
stripped — the passkey never reaches beta's disk or state), never from a bare magnet, and beta's
copy keeps the source and the closed policy; neither host opens it to the public swarm. The
CLI's ``holdings add --source private-tracker`` is ``search_only`` until opened and ``f2f_only`` at
most. (The replicated record itself refuses private-tracker + public: tests/crdt/test_records.py;
the API: tests/agent/test_api.py; peers_for's clamp: tests/policy/test_peers.py.)
"""

from __future__ import annotations

from media.bencode import decode, encode
from media.torrent_input import parse_torrent
from media.torrent_make import make_torrent_v1
from tests.agent.procs import AgentProc, wait_until
from tests.agent.test_repair_e2e import MIB, holding_of, plan_of, sha256_of, start_fleet, write_payload

PASSKEY = "s3cr3t-passkey-0f9a"
ANNOUNCE = f"http://127.0.0.1:1/announce?passkey={PASSKEY}"


def private_torrent(path) -> bytes:
    top = decode(make_torrent_v1(str(path), (ANNOUNCE,)), bytes_max=1 << 22)
    top[b"info"][b"private"] = 1
    return encode(top)


def stored_entry(p: AgentProc, infohash: str):
    """The torrent index entry the agent persisted (agent.torrent_index), as it will re-add it."""
    from agent.store import StateStore
    from agent.torrent_index import INDEX_FILE, decode_index

    data = StateStore(p.state_dir).read(INDEX_FILE)
    return decode_index(data).get(infohash) if data else None


def files_containing(root, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_a_private_trackers_item_stays_closed_through_cli_api_and_repair(tmp_path):
    env = {"TVA_TORRENT_ENGINE": "libtorrent"}
    alpha, beta = AgentProc(tmp_path, "alpha", env=env), AgentProc(tmp_path, "beta", env=env)
    try:
        ids = start_fleet(alpha, beta)

        # CLI (through the daemon's API): closed until opened, f2f_only at most, the reason said.
        ih0 = "ab" * 20
        added = alpha.cli("holdings", "add", "pt-closed", "--infohash", ih0, "--size", "10",
                          "--source", "private-tracker", "--json")
        assert added["policy"] == "search_only"
        added = alpha.cli("holdings", "add", "pt-open", "--infohash", "cd" * 20, "--size", "10",
                          "--source", "private-tracker", "--policy", "public", "--json")
        assert added["policy"] == "f2f_only" and "f2f_only at most" in added["note"]
        assert alpha.cli("peers-for", ih0, "--json")["policy"] == "search_only"

        # A .torrent with the private flag, added with --policy public: clamped.
        digest = write_payload(alpha.state_dir / "media" / "film.bin", 2 * MIB)
        tfile = tmp_path / "film.torrent"
        tfile.write_bytes(private_torrent(alpha.state_dir / "media" / "film.bin"))
        job = alpha.cli("torrent", "add", str(tfile), "--policy", "public", "--json")
        res = job["result"]
        assert job["state"] == "done" and res["policy"] == "f2f_only", job
        content, infohash = res["content"], res["infohash"]
        wait_until(lambda: (holding_of(beta, ids["alpha"], content) or {}).get("state") == "complete", 30,
                   "beta to learn alpha's complete holding")
        mine = holding_of(beta, ids["alpha"], content)
        assert mine["source"] == "private-tracker" and mine["policy"] == "f2f_only"

        # Repair: beta's copy comes from alpha's .torrent, private flag kept, trackers stripped.
        beta.cli("pin", content, "--copies", "2")
        for p in (alpha, beta):
            wait_until(lambda p=p: plan_of(p, content)["status"] == "ok" and plan_of(p, content)["copies"] == 2, 60,
                       f"{p.name}'s custody to reach two copies")
        assert sha256_of(beta.state_dir / "media" / "film.bin") == digest
        copy = holding_of(alpha, ids["beta"], content)
        assert copy["source"] == "private-tracker" and copy["policy"] == "f2f_only" and copy["custody"] is True
        assert files_containing(beta.state_dir, PASSKEY.encode()) == []  # the passkey never travelled
        answer = beta.cli("peers-for", infohash, "--json")
        assert answer["policy"] == "f2f_only"
        assert {p["source"] for p in answer["peers"]} <= {"fleet", "seedbox", "friend"}
        for p in (alpha, beta):
            assert "opened to the public swarm" not in p.log.read_text()
            assert "bare magnet" not in p.log.read_text()
        entry = wait_until(lambda: stored_entry(beta, infohash), 10, "beta's torrent index to keep the copy")
        assert entry.torrent is not None, "added from a bare magnet"
        meta = parse_torrent(entry.torrent)
        assert meta.private and b"announce" not in entry.torrent  # private flag kept, trackers stripped
        assert entry.source == "private-tracker" and entry.policy == "f2f_only"
    finally:
        for p in (alpha, beta):
            p.kill()

"""Real py-libp2p on loopback: scale, keys, refusals, restarts, leaks, garbage on the wire."""

from __future__ import annotations

import gc
import os

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.identity import NodeKey
from mesh.framing import encode_frame
from mesh.libp2p_addrs import parse_peer_addr, psk_hex, split_peer_addr
from mesh.libp2p_transport import FRAMES_PROTOCOL, INBOUND_FRAME_STREAMS_PER_PEER_MAX, Libp2pTransport
from mesh.transport import HELLO_BYTES_MAX, TransportLimits, WireVersions, encode_hello
from tests.mesh.test_transport_contract import FAST, open_nodes, receive
from tva.errors import ConfigError, DecodeError, InvalidInput, PeerUnavailable

SHORT = TransportLimits(dial_timeout_ms=1_500, backoff_initial_ms=200, backoff_max_ms=1_000)


def raw_host(psk: bytes | None, *, plaintext: bool = False):
    """A bare libp2p host we control byte by byte (an attacker, or a misconfigured peer)."""
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.crypto.x25519 import create_new_key_pair as new_x25519
    from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
    from libp2p.security.noise.transport import PROTOCOL_ID, Transport

    kp = create_new_key_pair()
    if plaintext:
        sec = {PLAINTEXT_PROTOCOL_ID: InsecureTransport(kp)}
    else:
        sec = {PROTOCOL_ID: Transport(kp, noise_privkey=new_x25519().private_key)}
    return new_host(key_pair=kp, sec_opt=sec, psk=psk.hex() if psk else None, enable_mDNS=False)


def peer_info(addr: str):
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from multiaddr import Multiaddr

    return info_from_p2p_addr(Multiaddr(addr))


async def test_peer_id_is_the_node_key_and_addrs_are_loopback():
    key_seed = os.urandom(32)
    t = Libp2pTransport(key_seed, os.urandom(32))
    async with trio.open_nursery() as nursery:
        await nursery.start(t.run)
        assert t.local_peer == NodeKey(key_seed).peer_id
        (addr,) = t.listen_addrs()
        assert addr.startswith("/ip4/127.0.0.1/tcp/") and addr.endswith(f"/p2p/{t.local_peer}")
        assert not addr.startswith("/ip4/127.0.0.1/tcp/0/")
        nursery.cancel_scope.cancel()


async def test_ten_nodes_in_one_process_exchange_frames_and_queries():
    # 90 simultaneous dials (Noise + PSK + identify) share one Python process and core: ~3-9 s
    # on a busy 2-core machine, so the dial time-out here is generous.
    patient = TransportLimits(dial_timeout_ms=20_000, backoff_initial_ms=200, backoff_max_ms=1_000)
    async with open_nodes("libp2p", 10, limits=patient) as nodes:
        for n in nodes:
            n.set_request_handler(lambda peer, p, me=n.local_peer: _tag(me, p))
        ok: list[bool] = []

        async def talk(src, dst):
            ok.append(await src.send(dst.local_peer, src.local_peer.encode()))
            reply = await src.request(dst.local_peer, b"status", timeout_ms=20_000)
            assert reply == dst.local_peer.encode() + b"/status"

        with trio.fail_after(60):
            async with trio.open_nursery() as senders:  # all 90 pairs at once, dials included
                for src in nodes:
                    for dst in nodes:
                        if dst is not src:
                            senders.start_soon(talk, src, dst)
            assert ok == [True] * 90
            for n in nodes:
                got = {await receive(n) for _ in range(9)}
                assert got == {(m.local_peer, m.local_peer.encode()) for m in nodes if m is not n}


async def _tag(me: str, payload: bytes) -> bytes:
    return me.encode() + b"/" + payload


async def test_a_node_with_the_wrong_key_cannot_connect():
    async with open_nodes("libp2p", 2, limits=SHORT) as (a, b):
        intruder = Libp2pTransport(os.urandom(32), os.urandom(32), limits=SHORT)
        async with trio.open_nursery() as nursery:
            await nursery.start(intruder.run)
            intruder.add_peer_addrs(a.local_peer, a.listen_addrs())
            a.add_peer_addrs(intruder.local_peer, intruder.listen_addrs())
            with trio.fail_after(10):
                assert not await intruder.send(a.local_peer, b"let me in")
                assert not await a.send(intruder.local_peer, b"hello?")
                with pytest.raises(PeerUnavailable):
                    await trio.sleep(SHORT.backoff_max_ms / 1000)
                    await intruder.request(a.local_peer, b"q", timeout_ms=3_000)
            assert intruder.stats()["dial_failures"] >= 1 and a.stats()["dial_failures"] >= 1
            assert a.stats()["frames_in"] == 0
            assert not a.is_connected(intruder.local_peer)
            # The fleet itself is unaffected.
            assert await b.send(a.local_peer, b"member")
            assert await receive(a) == (b.local_peer, b"member")
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("with_psk", [True, False])
async def test_a_plaintext_only_peer_is_refused(with_psk):
    psk = os.urandom(32)
    async with open_nodes("libp2p", 1, limits=SHORT, psk=psk) as (a,):
        plain = raw_host(psk if with_psk else None, plaintext=True)
        async with plain.run([__import__("multiaddr").Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            try:
                # Refused = the connect raises, or never completes (the PSK layer turns the
                # plaintext handshake into noise that waits for its own time-out).
                with trio.move_on_after(3):
                    with pytest.raises(Exception):  # noqa: B017 - libp2p raises its own types
                        await plain.connect(peer_info(a.listen_addrs()[0]))
                assert not plain.get_network().get_connections(peer_info(a.listen_addrs()[0]).peer_id)
                with trio.fail_after(10):
                    a.add_peer_addrs(plain.get_id().to_base58(), [str(plain.get_addrs()[0])])
                    assert not await a.send(plain.get_id().to_base58(), b"secret")
            finally:
                with trio.CancelScope(shield=True):
                    await plain.close()
        assert a.stats()["frames_in"] == 0 and not a.is_connected(plain.get_id().to_base58())


async def test_restarted_node_same_identity_reconnects_despite_negative_dial_cache():
    psk, b_seed = os.urandom(32), os.urandom(32)
    async with open_nodes("libp2p", 1, limits=SHORT, psk=psk) as (a,):
        b = Libp2pTransport(b_seed, psk, limits=SHORT)
        async with trio.open_nursery() as nursery:
            await nursery.start(b.run)
            b_addr = b.listen_addrs()[0]
            a.add_peer_addrs(b.local_peer, [b_addr])
            assert await a.send(b.local_peer, b"1")
            assert await receive(b) == (a.local_peer, b"1")
            nursery.cancel_scope.cancel()
        # b is down: the next sends fail (detected), and the swarm negative-caches b for 60 s.
        with trio.fail_after(10):
            while await a.send(b.local_peer, b"lost"):
                await trio.sleep(0.05)
            await trio.sleep(SHORT.backoff_max_ms / 1000)
            assert not await a.send(b.local_peer, b"still down")
        swarm = a._host.get_network()
        assert swarm._negative_peer_cache.is_blocked(b.local_peer), "the design point this test covers"
        assert not a.is_connected(b.local_peer)
        # b restarts with the same identity and the same port; a must reach it within seconds.
        port = b_addr.split("/tcp/")[1].split("/")[0]
        b2 = Libp2pTransport(b_seed, psk, limits=SHORT, listen_addrs=(f"/ip4/127.0.0.1/tcp/{port}",))
        async with trio.open_nursery() as nursery:
            await nursery.start(b2.run)
            with trio.fail_after(5):
                while not await a.send(b.local_peer, b"2"):
                    await trio.sleep(0.1)
                assert await receive(b2) == (a.local_peer, b"2")
            nursery.cancel_scope.cancel()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _task_count() -> int:
    def walk(task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())


async def test_nothing_leaks_on_shutdown():
    async def exercise():
        async with open_nodes("libp2p", 3) as nodes:
            nodes[0].set_request_handler(lambda peer, p: _tag("x", p))
            for src in nodes:
                for dst in nodes:
                    if src is not dst:
                        assert await src.send(dst.local_peer, b"x")
            assert await nodes[1].request(nodes[0].local_peer, b"q", timeout_ms=3_000)

    await exercise()  # warm-up: libp2p creates some process-wide state once
    await trio.sleep(0.2)
    gc.collect()
    fds, tasks = _open_fds(), _task_count()
    for _ in range(3):
        await exercise()
    await trio.sleep(0.2)
    # py-libp2p 0.8.1 drops (does not close) some connection sockets inside reference cycles:
    # they close at the next garbage collection, so without gc.collect() the count floats by 1-2
    # (bounded, measured over many rounds). Everything else is closed by host.close().
    gc.collect()
    assert _open_fds() == fds
    assert _task_count() == tasks


async def test_garbage_on_a_frame_stream_never_crashes_the_reader():
    """Hypothesis drives a real attacker host from a worker thread, one example per stream."""
    psk = os.urandom(32)
    async with open_nodes("libp2p", 2, psk=psk) as (a, friend):
        attacker = raw_host(psk)
        async with attacker.run([__import__("multiaddr").Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            try:
                await attacker.connect(peer_info(a.listen_addrs()[0]))
                a_id = peer_info(a.listen_addrs()[0]).peer_id

                hello = encode_frame(encode_hello(WireVersions()), HELLO_BYTES_MAX)

                async def spray(garbage: bytes) -> None:
                    # half the time after a proper hello, so the frame reader is fuzzed too, not
                    # only the hello check in front of it
                    stream = await attacker.new_stream(a_id, [FRAMES_PROTOCOL])
                    try:
                        await stream.write(hello + garbage if garbage[0] % 2 else garbage)
                    finally:
                        await stream.close()

                @settings(max_examples=40, database=None)
                @given(st.binary(min_size=1, max_size=3000))
                def fuzz(garbage: bytes) -> None:
                    trio.from_thread.run(spray, garbage)

                def fuzz_and_crafted() -> None:
                    fuzz()
                    for crafted in (b"\xff" * 12, b"\x80" * 11, b"\xff\xff\xff\x7f", b"\x81\x00"):
                        trio.from_thread.run(spray, crafted)

                with trio.fail_after(60):
                    await trio.to_thread.run_sync(fuzz_and_crafted)
                    await trio.sleep(0.3)
                assert a.stats()["decode_errors"] >= 4
                # The reader survived: a member's frames still arrive, and a still answers.
                assert await friend.send(a.local_peer, b"still alive")
                while True:
                    peer, frame = await receive(a)
                    if peer == friend.local_peer:
                        assert frame == b"still alive"
                        break
            finally:
                with trio.CancelScope(shield=True):
                    await attacker.close()


def test_peer_addresses_are_validated():
    me, other = NodeKey(bytes(32)).peer_id, NodeKey(bytes([1]) * 32).peer_id
    assert parse_peer_addr(me, f"/ip4/127.0.0.1/tcp/4001/p2p/{me}") == "/ip4/127.0.0.1/tcp/4001"
    for bad in ["", "nonsense", "/ip4/127.0.0.1/udp/1", "/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/1",
                "/ip4/127.0.0.1/tcp/0", f"/ip4/1.2.3.4/tcp/1/p2p/{other}", "/tcp/1", "x" * 300]:
        with pytest.raises(DecodeError):
            parse_peer_addr(me, bad)
    t = Libp2pTransport(os.urandom(32), os.urandom(32), limits=FAST)
    t.add_peer_addrs(me, ["/ip4/127.0.0.1/tcp/1"])
    with pytest.raises(DecodeError):
        t.add_peer_addrs(me, ["/ip4/127.0.0.1/tcp/2", "garbage"])
    assert t._addrs[me] == ["/ip4/127.0.0.1/tcp/1"], "a bad batch changes nothing"
    with pytest.raises(DecodeError):
        t.add_peer_addrs("not-a-peer", ["/ip4/127.0.0.1/tcp/1"])


@given(st.text(max_size=80))
def test_garbage_addresses_only_raise_decode_error(text):
    me = NodeKey(bytes(32)).peer_id
    try:
        parse_peer_addr(me, text)
    except DecodeError:
        pass


def test_psk_must_be_32_bytes():
    assert psk_hex(b"\x01" * 32) == "01" * 32
    assert psk_hex("AB" * 32) == "ab" * 32
    for bad in (b"short", "zz" * 32, "ab" * 31, b"\x00" * 33):
        with pytest.raises(InvalidInput):
            psk_hex(bad)


async def test_send_before_run_is_local_misuse():
    t = Libp2pTransport(os.urandom(32), os.urandom(32))
    with pytest.raises(InvalidInput):
        await t.send(NodeKey(bytes(32)).peer_id, b"x")


def test_bootstrap_address_names_its_peer():
    me = NodeKey(bytes(32)).peer_id
    assert split_peer_addr(f"/ip4/127.0.0.1/tcp/4001/p2p/{me}") == (me, "/ip4/127.0.0.1/tcp/4001")
    for bad in ["/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/tcp/4001/p2p/Qm-nope", "/p2p/" + me]:
        with pytest.raises(DecodeError):
            split_peer_addr(bad)


async def test_concurrent_senders_beyond_the_queue_cap_are_dropped_not_blocked():
    limits = TransportLimits(send_queue_frames_max=3, dial_timeout_ms=3_000)
    async with open_nodes("libp2p", 2, limits=limits) as (a, b):
        results: list[bool] = []

        async def one(i: int) -> None:
            results.append(await a.send(b.local_peer, b"%d" % i))

        with trio.fail_after(10):
            async with trio.open_nursery() as senders:  # all queue behind the first dial (~250 ms)
                for i in range(10):
                    senders.start_soon(one, i)
        assert results.count(True) == 3 and a.stats()["send_queue_drops"] == 7
        got = {(await receive(b))[1] for _ in range(3)}
        assert len(got) == 3


async def test_a_peer_cannot_hold_many_frame_streams_open():
    psk = os.urandom(32)
    async with open_nodes("libp2p", 1, psk=psk) as (a,):
        attacker = raw_host(psk)
        async with attacker.run([__import__("multiaddr").Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            try:
                info = peer_info(a.listen_addrs()[0])
                await attacker.connect(info)
                held = []  # keep them open: each accepted one occupies a reader slot
                for i in range(10):
                    try:  # a refused stream may fail to open, or accept the write and then die
                        s = await attacker.new_stream(info.peer_id, [FRAMES_PROTOCOL])
                        await s.write(encode_frame(encode_hello(WireVersions()), HELLO_BYTES_MAX) + b"\x01" + bytes([i]))
                        held.append(s)
                    except Exception:
                        pass
                with trio.fail_after(5):
                    while a.stats()["frames_in"] + a.stats()["filtered"] < 10:
                        await trio.sleep(0.02)
                assert a.stats()["frames_in"] == INBOUND_FRAME_STREAMS_PER_PEER_MAX
                assert a.stats()["filtered"] == 10 - INBOUND_FRAME_STREAMS_PER_PEER_MAX
            finally:
                with trio.CancelScope(shield=True):
                    await attacker.close()


async def test_a_taken_listen_port_is_a_config_error_not_a_shared_port():
    # py-libp2p binds with SO_REUSEPORT: without our check both nodes would "listen" and the
    # kernel would split connections between them.
    async with open_nodes("libp2p", 1) as (a,):
        port = a.listen_addrs()[0].split("/tcp/")[1].split("/")[0]
        b = Libp2pTransport(os.urandom(32), os.urandom(32), listen_addrs=(f"/ip4/127.0.0.1/tcp/{port}",))
        with pytest.raises(ConfigError, match="in use"):
            await b.run()
    with pytest.raises(ConfigError):
        await Libp2pTransport(os.urandom(32), os.urandom(32), listen_addrs=("/dns/x",)).run()


async def test_invalid_peer_ids_are_local_misuse():
    async with open_nodes("libp2p", 1) as (a,):
        with pytest.raises(InvalidInput):
            await a.send("not-a-peer", b"x")
        with pytest.raises(InvalidInput):
            await a.request("not-a-peer", b"x", timeout_ms=100)
        assert not a.is_connected("not-a-peer")


async def test_senders_queued_behind_a_failed_dial_do_not_redial():
    async with open_nodes("libp2p", 1, limits=SHORT) as (a,):
        ghost = NodeKey(os.urandom(32)).peer_id
        a.add_peer_addrs(ghost, ["/ip4/127.0.0.1/tcp/9"])  # discard port: nothing listens
        results: list[bool] = []

        async def one() -> None:
            results.append(await a.send(ghost, b"x"))

        with trio.fail_after(10):
            async with trio.open_nursery() as senders:
                for _ in range(10):
                    senders.start_soon(one)
        assert results == [False] * 10
        assert a.stats()["dials"] == 1 and a.stats()["dial_failures"] == 1

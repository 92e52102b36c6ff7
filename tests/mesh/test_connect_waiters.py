"""``ConnectWaiters`` (mesh.libp2p_streams): a dial is done when its peer is connected, not when
py-libp2p's connect returns (it sits out a 250 ms happy-eyeballs pause after connecting); under
trio's MockClock, with dials shaped like py-libp2p's."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from crdt.identity import NodeKey
from mesh.libp2p_streams import ConnectWaiters
from tva.errors import PeerUnavailable

PEER = NodeKey(b"\x01" * 32).peer_id
OTHER = NodeKey(b"\x02" * 32).peer_id
CONNECT_S = 0.02
PAUSE_S = 0.25  # py-libp2p's _HAPPY_EYEBALLS_DELAY


@pytest.fixture
def clock():
    return trio.testing.MockClock(autojump_threshold=0)


class Swarm:
    """Which peers are connected; a connection wakes the waiters, as the transport's notifee does."""

    def __init__(self, waiters: ConnectWaiters) -> None:
        self.waiters = waiters
        self.connected: set[str] = set()

    def connect(self, peer: str) -> None:
        self.connected.add(peer)
        self.waiters.wake(peer)

    def libp2p_dial(self, peer: str):
        async def dial() -> None:
            await trio.sleep(CONNECT_S)
            self.connect(peer)
            await trio.sleep(PAUSE_S)
        return dial


async def test_a_dial_is_done_once_its_peer_is_connected_not_when_libp2p_returns(clock):
    waiters = ConnectWaiters()
    swarm = Swarm(waiters)
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await waiters.connect(nursery, PEER, swarm.libp2p_dial(PEER), lambda: PEER in swarm.connected)
        assert trio.current_time() - start == pytest.approx(CONNECT_S)
    assert PEER in swarm.connected


async def test_another_peers_connection_does_not_release_a_dial(clock):
    waiters = ConnectWaiters()
    swarm = Swarm(waiters)

    async def slow_dial() -> None:
        await trio.sleep(CONNECT_S)
        swarm.connect(OTHER)  # someone else connects meanwhile
        await trio.sleep(CONNECT_S)
        swarm.connect(PEER)

    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await waiters.connect(nursery, PEER, slow_dial, lambda: PEER in swarm.connected)
        assert trio.current_time() - start == pytest.approx(2 * CONNECT_S)


async def test_the_peer_dialling_us_meanwhile_releases_the_dial(clock):
    waiters = ConnectWaiters()
    swarm = Swarm(waiters)

    async def hanging_dial() -> None:
        await trio.sleep(10)
        raise OSError("timed out")

    async def inbound() -> None:
        await trio.sleep(CONNECT_S)
        swarm.connect(PEER)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(inbound)
        await waiters.connect(nursery, PEER, hanging_dial, lambda: PEER in swarm.connected)
        assert trio.current_time() == pytest.approx(CONNECT_S)
        nursery.cancel_scope.cancel()


async def test_a_failed_dial_raises_what_it_raised_and_leaves_no_waiter(clock):
    waiters = ConnectWaiters()

    async def refused() -> None:
        await trio.sleep(CONNECT_S)
        raise ConnectionRefusedError("nobody listens")

    async with trio.open_nursery() as nursery:
        with pytest.raises(ConnectionRefusedError):
            await waiters.connect(nursery, PEER, refused, lambda: False)
    assert waiters._by_peer == {}


async def test_a_dial_that_ends_without_a_connection_is_an_unreachable_peer(clock):
    waiters = ConnectWaiters()

    async def nothing() -> None:
        await trio.sleep(CONNECT_S)

    async with trio.open_nursery() as nursery:
        with pytest.raises(PeerUnavailable):
            await waiters.connect(nursery, PEER, nothing, lambda: False)


async def test_a_cancelled_wait_leaves_no_waiter_behind(clock):
    waiters = ConnectWaiters()
    swarm = Swarm(waiters)
    async with trio.open_nursery() as nursery:
        with trio.move_on_after(CONNECT_S / 2):
            await waiters.connect(nursery, PEER, swarm.libp2p_dial(PEER), lambda: PEER in swarm.connected)
        assert waiters._by_peer == {}

"""A member's ``media_url`` and ``player`` queries are remote input: garbage gets a refusal, never a
crash, a play or a URL for something not held here. Real components: a founded state, the service,
a library over a scanned clip, the media plane (its key) and the player (libmpv is not started by
any of these queries)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import rpc
from agent.library_service import LibraryService
from agent.media_plane import MediaPlane
from agent.playback import Playback
from agent.player import Player
from agent.service import Service
from agent.state import NodeState
from agent.store import StateStore
from crdt import records
from media import signed_urls
from tests.media.clips import make_clip
from tests.media.library_support import library_config

MEMBER = "12D3KooWRogueMemberAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


@pytest.fixture(scope="module")
def playback(tmp_path_factory):
    import trio

    tmp = tmp_path_factory.mktemp("rpc")
    make_clip(tmp / "media" / "Heat.1995.mkv", seconds=2)
    cfg = library_config(tmp, media_port=0)
    state = NodeState.found(StateStore(cfg.state_dir), fleet_name="home",
                            card=records.HostCard(name="tv", host_class="desktop"), now_ms=1_800_000_000_000)
    library = LibraryService(cfg, Service(state, media_dir=cfg.media_dir()))
    trio.run(library.scan_now)

    async def never(_peer, _data, _timeout):
        raise AssertionError("no query may be forwarded")

    pb = Playback(state=state, service=library.service, library=library, plane=MediaPlane(cfg, library),
                  player=Player(on_watch=lambda *_: None), request=never)
    yield pb
    trio.run(library.aclose)


def answer(pb: Playback, kind: str, body) -> dict:
    import trio

    return rpc.decode_reply(trio.run(pb.handle_rpc, MEMBER, kind, body))


values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True),
                                st.text(max_size=40), st.binary(max_size=20)),
                      lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner,
                                                                                           max_size=3)), max_leaves=8)
bodies = st.dictionaries(st.sampled_from(["item", "ttl_s", "hls", "action", "start_s", "position_s", "headless",
                                          "hints", "x"]), values, max_size=6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["media_url", "player"]), body=bodies)
def test_garbage_bodies_are_refused_cleanly(playback, kind, body):
    # What the transport delivers went through msgpack and rpc.decode_query first.
    query = rpc.decode_query(msgpack.packb([1, kind, body], use_bin_type=True))
    reply = answer(playback, query.kind, query.body)
    assert isinstance(reply, dict)
    if "urls" in reply:  # a URL only for an item held here, signed for exactly that item
        assert reply["item"] == body["item"] and playback.plane.resolve(body["item"]) is not None
    if kind == "player" and body.get("action") == "play":
        assert "error" in reply  # garbage never starts playback
    assert playback.player.state == "idle"


def test_well_formed_queries_and_their_refusals(playback):
    key = playback.library.items(where="local")[0]["id"]
    reply = answer(playback, "media_url", {"item": key, "ttl_s": 600, "hls": True})
    url = reply["urls"][-1]["url"]
    assert url.split("?")[0].endswith(f"/media/{key}/hls/index.m3u8")
    assert signed_urls.check(playback.plane.key, key, url.split("?")[1], reply["expires_s"] - 1) is None
    assert "not held here" in answer(playback, "media_url", {"item": "Other-c0ffee12", "ttl_s": 60})["error"]
    assert answer(playback, "player", {"action": "status"})["state"] == "idle"
    assert "nothing is playing" in answer(playback, "player", {"action": "pause"})["error"]
    assert "unknown player action" in answer(playback, "player", {"action": "format-disk"})["error"]
    assert "seconds" in answer(playback, "player", {"action": "seek", "position_s": -5})["error"]
    assert "no host holds" in answer(playback, "player", {"action": "play", "item": "Nope-deadbeef"})["error"]

"""The mesh protocol core: pure, deterministic, sans-I/O.

``MeshNode(self_id, config, feeds, doc, rng).handle(event, now_ms) -> list[Effect]`` is the whole
interface: the shell feeds it events (``Tick`` at ``next_deadline_ms()``, frames from the
transport, local changes, the member list) and carries out the effects (``Send`` bytes to a peer,
``LivenessChanged`` to the policy core, ``StateChanged`` to whoever recomputes from the replicas).
See ``node`` for the dissemination design, ``swim`` for failure detection, ``frames`` for the wire
format and ``config`` for the tunables and the bounds they imply.
"""

from .config import MeshConfig
from .frames import FRAME_VERSION, decode_frame, encode_frame
from .node import MeshNode
from .types import (
    AnnounceSleep,
    Counter,
    DocSync,
    Effect,
    Event,
    FeedStore,
    FrameReceived,
    Leave,
    Liveness,
    LivenessChanged,
    LocalChanged,
    Log,
    MembersChanged,
    PeerUnreachable,
    Presence,
    Rng,
    Send,
    SetSoftState,
    StateChanged,
    Tick,
    Wake,
)

__all__ = [
    "FRAME_VERSION", "AnnounceSleep", "Counter", "DocSync", "Effect", "Event", "FeedStore",
    "FrameReceived", "Leave", "Liveness", "LivenessChanged", "LocalChanged", "Log", "MembersChanged",
    "MeshConfig", "MeshNode", "PeerUnreachable", "Presence", "Rng", "Send", "SetSoftState",
    "StateChanged", "Tick", "Wake", "decode_frame", "encode_frame",
]

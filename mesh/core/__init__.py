"""The mesh protocol core: pure, deterministic, sans-I/O.

``MeshNode(self_id, config, feeds, doc, rng, signer=key).handle(event, now_ms) -> list[Effect]`` is
the whole interface (``signer``: this node's ``crdt.identity.NodeKey``; ``verify`` defaults to
``signing.peer_verifier``). See ``node`` for the dissemination design, ``swim`` for failure detection, ``frames``
for the wire format and ``config`` for the tunables and the bounds they imply.

The shell's side of the contract:
- deliver ``Tick()`` at ``node.next_deadline_ms()`` (re-read it after every event);
- ``FrameReceived(peer, data)`` for every transport frame; ``PeerUnreachable(peer)`` when a Send
  could not be delivered; ``PeerWireVersion(peer, v)`` when the transport's hello agreed on a frame
  version with a peer;
- ``MembersChanged(members, classes)`` with the admitted, unrevoked members (e.g.
  ``FleetDoc.members()``) at start and whenever that set or a host class changes;
- ``LocalChanged(delta=...)`` after ``OwnFeed.commit``, ``LocalChanged(doc_changed=True)`` after a
  local fleet-document edit, an empty ``LocalChanged()`` after any other change to the replicas;
- optionally ``RestorePresence`` after the first ``MembersChanged``, with ``presence()`` as kept
  from before a restart;
- ``SetSoftState`` when disk free / uptime / endpoints change meaningfully (the core refreshes it
  every ``presence_refresh_for(n)`` by itself); ``AnnounceSleep`` just before suspending, ``Wake``
  after; ``Leave`` then keep ticking ~1 s before stopping.
Effects: ``Send`` goes to the transport (``Send.bulk`` on the bulk lane, the rest on the priority lane); ``LivenessChanged`` to the policy core; ``StateChanged``
means recompute from the replicas; ``Log``/``Counter`` go to logging and metrics. ``handle`` raises
only ``InvalidInput`` (local misuse); everything a peer sends is counted and survived.
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
    PeerWireVersion,
    Presence,
    RestorePresence,
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
    "MeshConfig", "MeshNode", "PeerUnreachable", "PeerWireVersion", "Presence", "RestorePresence", "Rng", "Send", "SetSoftState",
    "StateChanged", "Tick", "Wake", "decode_frame", "encode_frame",
]

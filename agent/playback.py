"""Playing anything the fleet holds: local file, a holder's media plane, or another host's screen.

``Playback`` ties the library (what an item is, who holds it), the media plane (signed URLs of
what this host holds), the player (mpv in this daemon) and the mesh's request channel between
members (``agent.rpc``: kinds ``media_url`` and ``player``; the mesh only lets members ask):

* ``play(ITEM)``: held here → the file itself. Else the best holder (alive and complete first) is
  asked for a signed URL of it, and mpv streams it over tva0 — or the underlay when the fleet runs
  mesh-only — never copying it first. Without ``start_s``, playback resumes at the item's watch
  state (the latest of any host's), unless it was watched.
* ``on=HOST``: the same call, carried out by that host's agent on its own screen.
* Watch state: the player reports positions; they become ``w/<item>`` records in this host's own
  feed (``crdt.watch``), at most ``WATCH_RECORDS_MAX`` of them (the oldest go first).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from agent import rpc
from agent.player import Player, Playing
from crdt import records, watch
from tva.errors import Conflict, DecodeError, InvalidInput, MediaUnavailable, NotFound, TvaError

log = logging.getLogger("tva.playback")

KINDS = ("media_url", "player")
ACTIONS = ("status", "play", "pause", "resume", "seek", "stop")
REMOTE_TIMEOUT_MS = 30_000  # a remote play waits for the far player to start (up to ~20 s)
URL_TIMEOUT_MS = 8_000
CONNECT_TIMEOUT_S = 2.0
WATCH_RECORDS_MAX = 2_000
HINTS_MAX = 8
PLAY_KEY_PATTERN = "^[A-Za-z0-9._:-]{1,128}$"  # an item id or content id; the API schema says the same
_KEY_RE = re.compile(PLAY_KEY_PATTERN)
_PEER_RE = re.compile(r"[1-9A-HJ-NP-Za-km-z]{20,128}")
Request = Callable[[str, bytes, int], Awaitable[bytes]]


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise InvalidInput(f"not an item key: {str(key)[:60]!r}", hint="an item id or a content id")
    return key


def check_start(value: Any, what: str = "start") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0 \
            or value > watch.POSITION_MS_MAX / 1000:
        raise InvalidInput(f"{what} must be a number of seconds, 0 or more")
    return float(value)


class Playback:
    def __init__(self, *, state, service, library, plane, player: Player, request: Request,
                 fabric_up: Callable[[], bool] = lambda: False) -> None:
        self.state = state
        self.service = service
        self.library = library
        self.plane = plane
        self.player = player
        self._request = request
        self._fabric_up = fabric_up

    # --- watch state ----------------------------------------------------------------------------------

    def save_watch(self, playing: Playing, position_s: float, duration_s: float | None, ended: bool) -> None:
        w = watch.WatchState.at(position_s, duration_s, self.service.clock_ms(), ended=ended)
        own = self.state.own
        key = watch.watch_key(playing.key)
        own.put(key, watch.encode_watch(w))
        mine = watch.watch_states_of(own.feed) if own.feed is not None else {}
        mine.pop(playing.key, None)
        for stale in watch.oldest_first(mine)[:max(0, len(mine) + 1 - WATCH_RECORDS_MAX)]:
            own.delete(watch.watch_key(stale))
        self.service.commit()

    def watch_of(self, key: str) -> tuple[str, watch.WatchState] | None:
        return watch.latest_watch_states(self.state.feeds).get(key)

    # --- resolving what to play -------------------------------------------------------------------------

    def _describe(self, key: str) -> dict:
        try:
            return self.library.item(key)
        except NotFound:
            return {"id": key, "content": key if not key.startswith("i") else None, "title": None, "holders": []}

    async def play(self, key: str, *, start_s: float | None, headless: bool, hints: tuple[str, ...] = ()) -> dict:
        item = self._describe(key)
        watch_key = item.get("content") or item["id"]
        local = self.plane.resolve(item["id"]) or (self.plane.resolve(item["content"]) if item.get("content") else None)
        if local is not None:
            playing = Playing(watch_key, item["id"], item.get("title"), local, "local", item.get("duration_s"))
        else:
            url, host = await self._stream_url(item, hints)
            playing = Playing(watch_key, item["id"], item.get("title"), url, host, item.get("duration_s"))
        resumed = None
        if start_s is None:
            found = self.watch_of(watch_key)
            if found is not None and found[1].resumable:
                start_s, resumed = found[1].position_s, found[1].to_json(self.service._name(found[0]))
        status = await self.player.play(playing, start_s=start_s or 0.0, headless=headless)
        return {**status, "host": self._self_name(), "resumed_from": resumed}

    async def _stream_url(self, item: dict, hints: tuple[str, ...]) -> tuple[str, str]:
        """A reachable, signed URL of ``item`` from its best holder, and that holder's name."""
        candidates = self._holders(item, hints)
        if not candidates:
            raise NotFound(f"no host holds {item['id']!r} completely", hint="`tva-agent library show ITEM` says where it is")
        why = []
        for peer in candidates:
            name = self.service._name(peer) or peer[:16]
            try:
                answer = await self.ask(peer, "media_url", {"item": item.get("content") or item["id"], "ttl_s": 12 * 3600})
            except TvaError as exc:
                why.append(f"{name}: {exc.message}")
                continue
            for url in self._usable_urls(peer, answer.get("urls")):
                if await _reachable(url):
                    log.info("playback: streaming %s from %s (%s)", item["id"], name, url.split("?")[0])
                    return url, name
            why.append(f"{name}: none of its media addresses answers")
        raise MediaUnavailable(f"no holder of {item['id']!r} could stream it: " + "; ".join(why)[:400],
                               hint="check `tva-agent hosts` (are the holders alive?) and tva0 (`tva-agent wg status`)")

    def _holders(self, item: dict, hints: tuple[str, ...]) -> list[str]:
        order = {"alive": 0, "suspect": 1}
        rows = [h for h in item.get("holders") or [] if h.get("state") == "complete"
                and h.get("peer_id") != self.state.peer_id and h.get("liveness") in order]
        rows.sort(key=lambda h: (order[h["liveness"]], h.get("host") or "", h["peer_id"]))
        peers = [h["peer_id"] for h in rows]
        members = self.state.members()
        peers += [p for p in hints if p in members and p != self.state.peer_id and p not in peers]
        return peers

    def _usable_urls(self, peer: str, urls: Any) -> list[str]:
        """The holder's URLs this host can use: tva0 when it has it; the underlay; loopback only when the
        holder runs on this machine (its card's addresses are loopback)."""
        if not isinstance(urls, list):
            return []
        card = records.cards(self.state.feeds).get(peer)
        same_machine = bool(card) and any("/127.0.0.1/" in a or "/::1/" in a for a in card.listen_addrs)
        out = []
        for entry in urls[:16]:
            if not isinstance(entry, dict) or not isinstance(entry.get("url"), str) or len(entry["url"]) > 1024:
                continue
            via = entry.get("via")
            if not entry["url"].startswith("http://") or (via == "overlay" and not self._fabric_up()) \
                    or (via == "loopback" and not same_machine) or via not in ("overlay", "underlay", "loopback"):
                continue
            out.append(entry["url"])
        return out

    def _self_name(self) -> str:
        return self.service._name(self.state.peer_id) or self.state.peer_id[:16]

    # --- URLs ----------------------------------------------------------------------------------------

    async def media_urls(self, key: str, *, ttl_s: int, hls: bool) -> dict:
        """Signed URLs of ``key``: this host's when it holds it, else its best holder's."""
        item = self._describe(key)
        for k in (item["id"], item.get("content")):
            if k and self.plane.resolve(k) is not None:
                return {**self.plane.urls_for(k, ttl_s=ttl_s, hls=hls), "host": self._self_name(),
                        "title": item.get("title")}
        why = []
        for peer in self._holders(item, ()):
            try:
                answer = await self.ask(peer, "media_url", {"item": item.get("content") or item["id"], "ttl_s": ttl_s,
                                                            "hls": hls})
            except TvaError as exc:
                why.append(exc.message)
                continue
            return {"item": answer.get("item"), "expires_s": answer.get("expires_s"),
                    "urls": [u for u in answer.get("urls") or [] if isinstance(u, dict)][:16],
                    "host": self.service._name(peer) or peer[:16], "title": item.get("title")}
        raise NotFound(f"no live holder of {key[:80]!r} answered" + (": " + "; ".join(why)[:300] if why else ""),
                       hint="`tva-agent library show ITEM` says where it is")

    # --- other hosts ----------------------------------------------------------------------------------

    async def ask(self, peer: str, kind: str, body: dict, timeout_ms: int | None = None) -> dict:
        if peer == self.state.peer_id:
            raise InvalidInput("that is this host")
        raw = await self._request(peer, rpc.encode_query(kind, body),
                                  timeout_ms or (REMOTE_TIMEOUT_MS if kind == "player" else URL_TIMEOUT_MS))
        reply = rpc.decode_reply(raw)
        rpc.raise_if_refused(reply)
        return reply

    async def control(self, action: str, body: dict, on: str | None) -> dict:
        """A player action here, or on host ``on`` (a peer id or a host name)."""
        if action not in ACTIONS:
            raise InvalidInput(f"unknown player action {action!r}", hint=", ".join(ACTIONS))
        if on:
            peer = self.state.resolve_host(on)
            if peer != self.state.peer_id:
                if action == "play":
                    body = self._forwardable(body)
                return await self.ask(peer, "player", {"action": action, **body})
        return await self._local(action, body, ())

    def _forwardable(self, body: dict) -> dict:
        """A play for another host names the item as the fleet knows it (its content id), and hints
        this host as a holder when the file is here (an item without a content id is only here)."""
        item = self._describe(check_key(body.get("item")))
        here = self.plane.resolve(item["id"]) is not None
        return {**body, "item": item.get("content") or item["id"], "hints": [self.state.peer_id] if here else []}

    async def _local(self, action: str, body: dict, hints: tuple[str, ...]) -> dict:
        p = self.player
        if action == "status":
            return {**p.status(), "host": self._self_name()}
        if action == "play":
            return await self.play(check_key(body.get("item")), start_s=check_start(body.get("start_s")),
                                   headless=body.get("headless") is True, hints=hints)
        if action == "pause":
            return {**p.pause(), "host": self._self_name()}
        if action == "resume":
            return {**p.resume(), "host": self._self_name()}
        if action == "seek":
            position = check_start(body.get("position_s"), "position")
            if position is None:
                raise InvalidInput("seek needs a position in seconds")
            return {**p.seek(position), "host": self._self_name()}
        return {**await p.stop(), "host": self._self_name()}

    # --- requests from members (agent.rpc) ------------------------------------------------------------

    async def handle_rpc(self, peer: str, kind: str, body: dict) -> bytes:
        """Answer a member's ``media_url`` or ``player`` query (the runtime checked membership)."""
        try:
            if kind == "media_url":
                ttl = body.get("ttl_s")
                if type(ttl) is not int or body.get("hls", False) not in (True, False):
                    raise DecodeError("media_url needs ttl_s (int) and hls (bool)")
                key = check_key(body.get("item"))
                if self.plane.resolve(key) is None:
                    raise NotFound(f"{key} is not held here")
                return rpc.encode_reply(self.plane.urls_for(key, ttl_s=ttl, hls=body.get("hls") is True))
            action = body.get("action")
            if action not in ACTIONS:
                raise Conflict(f"unknown player action {str(action)[:40]!r}", hint=", ".join(ACTIONS))
            hints = body.get("hints") or []
            if not isinstance(hints, list) or len(hints) > HINTS_MAX or not all(
                    isinstance(h, str) and _PEER_RE.fullmatch(h) for h in hints):
                raise DecodeError("player hints must be a short list of peer ids")
            name = self.service._name(peer) or peer[:16]
            if action != "status":
                log.info("playback: %s asks this host to %s", name, action)
            return rpc.encode_reply(await self._local(action, body, tuple(hints)))
        except (TvaError, trio.TooSlowError) as exc:
            message = exc.message if isinstance(exc, TvaError) else "timed out"
            return rpc.encode_refusal(message, getattr(exc, "hint", ""))


async def _reachable(url: str) -> bool:
    """Does anything accept a TCP connection at the URL's host and port (a dead address fails fast)?"""
    hostport = url.split("/", 3)[2]
    host, _, port = hostport.rpartition(":")
    try:
        with trio.fail_after(CONNECT_TIMEOUT_S):
            stream = await trio.open_tcp_stream(host.strip("[]"), int(port))
    except (OSError, ValueError, trio.TooSlowError):
        return False
    await stream.aclose()
    return True


def build(agent) -> Playback:
    """The daemon's playback, wired to its state, library, fabric and mesh (``agent.runtime``)."""
    from agent.media_plane import MediaPlane

    def underlay_hosts() -> list[str]:
        hosts = []
        for addr in agent._bootstrap_addrs():
            parts = addr.split("/")
            if len(parts) > 2 and parts[1] in ("ip4", "ip6"):
                hosts.append(parts[2])
        return list(dict.fromkeys(hosts))

    plane = MediaPlane(agent.cfg, agent.library, overlay_addrs=agent.fabric.overlay_addrs,
                       underlay_hosts=underlay_hosts,
                       on_health=lambda state, why: agent.supervisor.report("media", state, why))
    playback: Playback

    def on_watch(playing: Playing, position_s: float, duration_s: float | None, ended: bool) -> None:
        playback.save_watch(playing, position_s, duration_s, ended)

    player = Player(on_watch=on_watch, save_interval_s=agent.cfg.watch_save_interval_ms / 1000)
    playback = Playback(state=agent.state, service=agent.service, library=agent.library, plane=plane, player=player,
                        request=lambda peer, data, timeout_ms: agent.transport.request(peer, data, timeout_ms),
                        fabric_up=lambda: bool(agent.fabric.overlay_addrs()))
    return playback

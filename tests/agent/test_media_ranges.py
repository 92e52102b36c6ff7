"""The media plane's file serving on a real socket: ranges, validators, signed URLs, path escapes.

A real library scans real ffmpeg-made clips; the plane serves them over loopback with sendfile;
a raw client sends the requests (paths exactly as written, tricks included).
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media import signed_urls
from tests.agent.media_plane_support import http, running_plane, target_of, url_of
from tests.media.clips import make_clip

SECRET = b"TOP-SECRET-OUTSIDE-THE-MEDIA-ROOT"


def _setup(tmp_path) -> tuple[bytes, str]:
    clip = make_clip(tmp_path / "media" / "Films" / "Big.Buck.Bunny.2008.mkv", seconds=4, size="640x360")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.mkv").write_bytes(SECRET * 100)
    (outside / "dir").mkdir()
    (outside / "dir" / "another.mkv").write_bytes(SECRET * 50)
    # A planted symlink (e.g. by a torrent's symlink attribute) and a symlinked directory leading out.
    (tmp_path / "media" / "Evil.2020.mkv").symlink_to(outside / "secret.mkv")
    (tmp_path / "media" / "Linked").symlink_to(outside / "dir", target_is_directory=True)
    return clip.read_bytes(), str(clip)


async def test_ranges_are_byte_identical_and_validators_work(tmp_path):
    data, path = _setup(tmp_path)
    size = len(data)
    async with running_plane(tmp_path) as (plane, library):
        [item] = [i for i in library.items(where="local") if i["path"] == path]
        target = target_of(url_of(plane, item["id"]))
        port = plane.port
        status, h, body = await http(port, target)
        assert (status, body) == (200, data) and h["content-type"] == "video/x-matroska"
        assert h["accept-ranges"] == "bytes" and h["content-length"] == str(size) and h["etag"].startswith('"')
        assert h["last-modified"].endswith(" GMT")
        for rng, first, last in (("bytes=0-1023", 0, 1023), (f"bytes={size // 3}-{size // 2}", size // 3, size // 2),
                                 (f"bytes={size - 777}-", size - 777, size - 1), ("bytes=-4096", size - 4096, size - 1),
                                 (f"bytes={size - 10}-{size + 5000}", size - 10, size - 1)):
            status, h, body = await http(port, target, {"Range": rng})
            assert status == 206 and body == data[first:last + 1], rng
            assert h["content-range"] == f"bytes {first}-{last}/{size}"
        status, h, body = await http(port, target, {"Range": f"bytes={size}-"})
        assert (status, h["content-range"], body) == (416, f"bytes */{size}", b"")
        status, h, body = await http(port, target, {"Range": "bytes=0-9, 500-509"})
        boundary = h["content-type"].split("boundary=")[1]
        assert status == 206 and body.count(boundary.encode()) == 3 and int(h["content-length"]) == len(body)
        assert data[0:10] in body and data[500:510] in body
        etag, modified = h["etag"], h["last-modified"]
        assert (await http(port, target, {"If-None-Match": etag}))[0] == 304
        assert (await http(port, target, {"If-Modified-Since": modified}))[0] == 304
        assert (await http(port, target, {"Range": "bytes=0-9", "If-Range": etag}))[0] == 206
        assert (await http(port, target, {"Range": "bytes=0-9", "If-Range": '"stale"'}))[0] == 200
        status, h, body = await http(port, target, method="HEAD")
        assert (status, h["content-length"], body) == (200, str(size), b"")
        # Keep-alive: two requests on one connection, both answered.
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            req = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nRange: bytes=0-3\r\n\r\n".encode()
            await stream.send_all(req + req)
            got = bytearray()
            with trio.fail_after(10):
                while got.count(b"HTTP/1.1 206") < 2 or not got.endswith(data[:4]):
                    got += await stream.receive_some(65536)
        assert plane.server.requests >= 14
        # A file larger than one sendfile call (4 MiB): whole and mid ranges cross the chunk seams.
        noise = os.urandom(11 * 1024 * 1024 + 7)
        (tmp_path / "media" / "Noise.2001.mkv").write_bytes(noise)
        await library.scan_now()
        noise_id = next(i["id"] for i in library.items(where="local") if i["path"].endswith("Noise.2001.mkv"))
        target = target_of(url_of(plane, noise_id))
        assert (await http(port, target))[2] == noise
        status, _h, body = await http(port, target, {"Range": "bytes=4194000-9000000"})
        assert status == 206 and body == noise[4194000:9000001]


async def test_signatures_and_doors(tmp_path):
    _data, path = _setup(tmp_path)
    async with running_plane(tmp_path) as (plane, library):
        items = {i["path"]: i["id"] for i in library.items(where="local")}
        key = items[path]
        port = plane.port
        good = target_of(url_of(plane, key))
        base, _, query = good.partition("?")
        sig = query.split("sig=")[1]
        forged = base + "?" + query.replace(sig, ("A" if sig[0] != "A" else "B") + sig[1:])
        expired = base + "?" + signed_urls.sign(plane.key, key, int(time.time()) - 1)
        other = "/media/" + next(k for p, k in items.items() if p != path) + "?" + query
        for target in (forged, expired, other, base, base + "?exp=99999999999&sig=" + "A" * 22):
            status, _h, body = await http(port, target)
            assert status == 403 and SECRET not in body, target
        assert (await http(port, good))[0] == 200
        assert (await http(port, good, host="evil.example"))[0] == 403  # DNS rebinding
        assert (await http(port, good, {"Origin": "http://evil.example"}))[0] == 403
        assert (await http(port, good, {"Sec-Fetch-Site": "cross-site"}))[0] == 403
        assert (await http(port, good, host=f"localhost:{port}"))[0] == 200
        assert (await http(port, good, method="DELETE"))[0] == 405
        assert (await http(port, good, {"Content-Length": "5"}))[0] == 413


async def test_nothing_outside_the_item_is_ever_served(tmp_path):
    _data, path = _setup(tmp_path)
    async with running_plane(tmp_path) as (plane, library):
        items = {i["path"]: i["id"] for i in library.items(where="local")}
        port = plane.port
        key = items[path]
        query = target_of(url_of(plane, key)).split("?")[1]
        evil_keys = [k for p, k in items.items() if p != path]
        assert len(evil_keys) == 2  # the scan followed both symlinks: the plane must still refuse them
        attempts = [f"/media/{k}?{signed_urls.sign(plane.key, k, int(time.time()) + 60)}" for k in evil_keys]
        for trick in ("../../outside/secret.mkv", "..%2f..%2foutside%2fsecret.mkv", "%2e%2e/%2e%2e/etc/passwd",
                      "..", "%2e%2e", "%252e%252e", "hls/..%2f..%2f..%2fetc%2fpasswd", "hls/../../../etc/passwd",
                      "hls/seg/..%2f..%2fsecret.mkv", "hls/seg/00000.ts/..", "hls/sub/0.vtt%00",
                      "%00", "hls/seg/0.ts", "hls/seg/-0001.ts", "\\..\\..\\etc\\passwd"):
            attempts.append(f"/media/{key}/{trick}?{query}")
        attempts += [f"/media/../media/{key}?{query}", f"/media/{key}%2f..%2f..?{query}", f"/{key}?{query}",
                     f"/media/%2e%2e%2f{key}?{query}", "/etc/passwd", "/media", "/"]
        for target in attempts:
            status, _h, body = await http(port, target)
            assert status in (403, 404) and SECRET not in body and b"root:" not in body, (target, status)
            if target.startswith(f"/media/{key}/") or target in attempts[:2]:
                assert status == 404, target
        # Swapping the served file for a symlink after the item was resolved: still refused.
        os.rename(path, path + ".moved")
        os.symlink(str(tmp_path / "outside" / "secret.mkv"), path)
        status, _h, body = await http(port, target_of(url_of(plane, key)))
        assert status == 404 and SECRET not in body


@pytest.fixture
def served(tmp_path):
    """A plane running in a thread of its own (hypothesis examples then share it)."""
    _setup(tmp_path)
    ready: queue.Queue = queue.Queue()

    async def main():
        async with running_plane(tmp_path) as (plane, library):
            key = next(i["id"] for i in library.items(where="local") if "Big" in i["path"])
            stop = trio.Event()
            ready.put((plane.port, key, target_of(url_of(plane, key)).split("?")[1], trio.lowlevel.current_trio_token(),
                       stop))
            await stop.wait()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    port, key, query, token, stop = ready.get(timeout=60)
    yield port, key, query
    trio.from_thread.run_sync(stop.set, trio_token=token)
    thread.join(10)


def blocking_http(port: int, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close",
                 *(f"{k}: {v}" for k, v in headers.items())]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := sock.recv(1 << 20):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=120),
       name=st.sampled_from(["Range", "If-Range", "If-None-Match", "If-Match", "If-Modified-Since", "X-Junk"]),
       value=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80))
def test_garbage_requests_get_a_clean_refusal(served, target, name, value):
    port, key, query = served
    for t in ("/" + target.lstrip("/"), f"/media/{key}/{target}?{query}", f"/media/{key}?{query}&{target}"):
        status, raw = blocking_http(port, t, {name: value})
        assert status in (200, 206, 304, 400, 403, 404, 412, 416), (t, status)
        assert SECRET not in raw

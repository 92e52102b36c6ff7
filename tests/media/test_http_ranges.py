"""RFC 9110 ranges and preconditions (media.http_ranges): properties against plain slicing."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from media.http_ranges import (
    RANGES_MAX,
    UNSATISFIABLE,
    FileFacts,
    FileSpan,
    answer,
    content_type_for,
    format_http_date,
    parse_http_date,
    parse_range,
)

NOW = 1_800_000_000
FACTS = FileFacts(size=1000, etag='"abc-1"', last_modified_s=NOW - 3600, content_type="video/x-matroska")


def body_of(ans, data: bytes) -> bytes:
    return b"".join(p if isinstance(p, bytes) else data[p.offset:p.offset + p.length] for p in ans.body)


def get(headers: dict, facts: FileFacts = FACTS):
    return answer("GET", headers, facts, boundary="B0UND", now_s=NOW)


def hdr(ans, name: str) -> str | None:
    return dict(ans.headers).get(name)


specs = st.one_of(
    st.tuples(st.integers(0, 1200), st.integers(0, 1200)).map(lambda t: f"{min(t)}-{max(t)}"),
    st.integers(0, 1200).map(lambda a: f"{a}-"),
    st.integers(0, 1200).map(lambda n: f"-{n}"),
)


@given(st.integers(0, 1100), st.lists(specs, min_size=1, max_size=5))
def test_every_satisfiable_range_is_exactly_the_bytes_of_the_file(size, parts):
    data = bytes(i % 251 for i in range(size))
    facts = FileFacts(size, '"e"', NOW - 10, "video/mp4")
    ans = get({"range": "bytes=" + ", ".join(parts)}, facts)
    # What the RFC says each spec selects, by plain slicing.
    wanted = []
    for spec in parts:
        a, _, b = spec.partition("-")
        if a == "":
            if int(b) > 0 and size:
                wanted.append((max(0, size - int(b)), size - 1))
        elif int(a) < size:
            wanted.append((int(a), min(int(b), size - 1) if b else size - 1))
    if not wanted:
        assert ans.status == 416 and hdr(ans, "content-range") == f"bytes */{size}"
        return
    covered = sorted({i for a, b in wanted for i in range(a, b + 1)})
    assert ans.content_length == int(hdr(ans, "content-length"))
    if ans.status == 200:  # more disjoint ranges than RANGES_MAX: the header is ignored
        assert body_of(ans, data) == data
        return
    assert ans.status == 206
    if hdr(ans, "content-type").startswith("multipart/byteranges"):
        got = _multipart(body_of(ans, data), "B0UND", size)
        assert sorted(i for first, chunk in got for i in range(first, first + len(chunk))) == covered
        for first, chunk in got:
            assert chunk == data[first:first + len(chunk)]
    else:
        first, last = (int(x) for x in hdr(ans, "content-range").split()[1].split("/")[0].split("-"))
        assert list(range(first, last + 1)) == covered
        assert body_of(ans, data) == data[first:last + 1]


def _multipart(body: bytes, boundary: str, size: int) -> list[tuple[int, bytes]]:
    parts = []
    for chunk in body.split(f"--{boundary}".encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, payload = chunk.partition(b"\r\n\r\n")
        line = next(ln for ln in head.decode().split("\r\n") if ln.startswith("content-range"))
        first, last = (int(x) for x in line.split()[-1].split("/")[0].split("-"))
        assert line.endswith(f"/{size}")
        parts.append((first, payload[:last - first + 1]))
        assert payload[last - first + 1:] in (b"\r\n", b"")
    return parts


def test_first_middle_last_suffix_and_unsatisfiable():
    assert parse_range("bytes=0-99", 1000)[0].length == 100
    assert [(r.first, r.last) for r in parse_range("bytes=400-599", 1000)] == [(400, 599)]
    assert [(r.first, r.last) for r in parse_range("bytes=900-", 1000)] == [(900, 999)]
    assert [(r.first, r.last) for r in parse_range("bytes=-100", 1000)] == [(900, 999)]
    assert [(r.first, r.last) for r in parse_range("bytes=-5000", 1000)] == [(0, 999)]
    assert parse_range("bytes=1000-", 1000) is UNSATISFIABLE
    assert parse_range("bytes=-0", 1000) is UNSATISFIABLE
    for bad in ("bytes=5-1", "items=0-1", "bytes=", "bytes=a-b", "bytes 0-1", "bytes=--1", "bytes=0-1;x"):
        assert parse_range(bad, 1000) is None, bad
    many = "bytes=" + ",".join(f"{i * 10}-{i * 10}" for i in range(RANGES_MAX + 1))
    assert parse_range(many, 1000) is None  # too many ranges: ignored (whole file), not amplified
    overlapping = "bytes=" + ",".join("0-999" for _ in range(100))
    assert [(r.first, r.last) for r in parse_range(overlapping, 1000)] == [(0, 999)]


def test_validators_and_preconditions():
    whole = get({})
    assert whole.status == 200 and hdr(whole, "accept-ranges") == "bytes" and hdr(whole, "etag") == FACTS.etag
    assert hdr(whole, "last-modified") == format_http_date(FACTS.last_modified_s)
    assert body_of(whole, bytes(1000)) == bytes(1000) and whole.body == (FileSpan(0, 1000),)
    assert get({"if-none-match": FACTS.etag}).status == 304
    assert get({"if-none-match": f'W/{FACTS.etag}'}).status == 304  # weak comparison
    assert get({"if-none-match": '"other"'}).status == 200
    assert get({"if-modified-since": format_http_date(FACTS.last_modified_s)}).status == 304
    assert get({"if-modified-since": format_http_date(FACTS.last_modified_s - 1)}).status == 200
    assert get({"if-match": '"other"'}).status == 412
    assert get({"if-match": FACTS.etag, "range": "bytes=0-0"}).status == 206
    assert get({"if-unmodified-since": format_http_date(FACTS.last_modified_s - 5)}).status == 412
    # If-Range: the range only when the validator still matches (strongly).
    assert get({"range": "bytes=0-9", "if-range": FACTS.etag}).status == 206
    assert get({"range": "bytes=0-9", "if-range": '"old"'}).status == 200
    assert get({"range": "bytes=0-9", "if-range": f"W/{FACTS.etag}"}).status == 200
    assert get({"range": "bytes=0-9", "if-range": format_http_date(FACTS.last_modified_s)}).status == 206
    assert get({"range": "bytes=0-9", "if-range": format_http_date(FACTS.last_modified_s + 1)}).status == 200
    head = answer("HEAD", {"range": "bytes=0-9"}, FACTS, boundary="x", now_s=NOW)
    assert head.status == 206 and hdr(head, "content-length") == "10"
    assert hdr(get({"range": "bytes=0-9"}), "content-type") == "video/x-matroska"


@given(st.integers(0, 253_402_300_799))
def test_http_dates_round_trip_in_all_three_forms(epoch):
    text = format_http_date(epoch)
    assert parse_http_date(text) == epoch
    g = time.gmtime(epoch)  # the test may use the clock's calendar; the module under test may not
    assert text == time.strftime("%a, %d %b %Y %H:%M:%S GMT", g)
    asctime = time.strftime("%a %b ", g) + f"{g.tm_mday:2d}" + time.strftime(" %H:%M:%S %Y", g)
    assert parse_http_date(asctime) == epoch
    if 1970 <= g.tm_year < 2070:
        assert parse_http_date(time.strftime("%A, %d-%b-%y %H:%M:%S GMT", g)) == epoch


@given(st.text(max_size=80))
def test_garbage_headers_never_raise(text):
    for name in ("range", "if-range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since"):
        ans = get({name: text, **({"range": "bytes=0-1"} if name == "if-range" else {})})
        assert ans.status in (200, 206, 304, 412, 416)
    assert parse_http_date(text) is None or isinstance(parse_http_date(text), int)


def test_content_types():
    assert content_type_for("a.MKV") == "video/x-matroska"
    assert content_type_for("x.mp4") == "video/mp4"
    assert content_type_for("song.flac") == "audio/flac"
    assert content_type_for("noext") == "application/octet-stream"

"""RFC 9110 for one file (pure): validators, conditional requests and byte ranges → what to answer.

The media plane's server shell (``media.http_server``) hands this module the request's headers
and the file's facts (size, ETag, Last-Modified) and gets back an ``Answer``: a status, headers
and a body as a list of pieces — literal bytes or spans of the file — that the shell writes with
``sendfile``. Nothing here touches the file, the clock or a socket.

Decisions worth knowing (RFC 9110 references in brackets):
- Preconditions are evaluated in the RFC's order [13.2.2]: If-Match, If-Unmodified-Since,
  If-None-Match, If-Modified-Since, then Range with If-Range.
- A Range header that does not parse, or names another unit, is ignored (200, whole file)
  [14.2]. One whose every range is unsatisfiable gets 416 with ``Content-Range: bytes */size``.
- Several ranges are sorted and overlapping or adjacent ones coalesced [14.2 allows it]; one
  range left → a plain 206; several → ``multipart/byteranges`` [14.6]; more than
  ``RANGES_MAX`` after coalescing → the header is ignored (200), as nginx's ``max_ranges`` does:
  a request of thousands of tiny ranges must not cost more than the file.
- ``If-Range`` honours the range only when its validator matches strongly: the ETag by strong
  comparison, or a date equal to Last-Modified [13.1.5].
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass

RANGES_MAX = 16
HEADER_CHARS_MAX = 4096  # a Range or If-* header longer than this is treated as absent/invalid

CONTENT_TYPES = {
    "mkv": "video/x-matroska", "mk3d": "video/x-matroska", "mp4": "video/mp4", "m4v": "video/mp4",
    "webm": "video/webm", "avi": "video/x-msvideo", "mov": "video/quicktime", "ts": "video/mp2t",
    "m2ts": "video/mp2t", "mts": "video/mp2t", "mpg": "video/mpeg", "mpeg": "video/mpeg", "vob": "video/mpeg",
    "wmv": "video/x-ms-wmv", "flv": "video/x-flv", "ogv": "video/ogg", "3gp": "video/3gpp",
    "divx": "video/x-msvideo", "iso": "application/x-iso9660-image",
    "mp3": "audio/mpeg", "flac": "audio/flac", "m4a": "audio/mp4", "aac": "audio/aac", "ogg": "audio/ogg",
    "opus": "audio/ogg", "wav": "audio/wav", "wma": "audio/x-ms-wma", "mka": "audio/x-matroska",
    "ac3": "audio/ac3", "dts": "audio/vnd.dts", "ape": "audio/x-ape", "alac": "audio/mp4",
    "srt": "application/x-subrip", "vtt": "text/vtt", "ass": "text/x-ssa", "ssa": "text/x-ssa",
    "sup": "application/octet-stream", "sub": "text/plain", "idx": "text/plain",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_BYTES_RANGE = re.compile(r"\s*bytes\s*=\s*(.*)", re.IGNORECASE | re.DOTALL)
_SPEC = re.compile(r"(\d{1,19})?-(\d{1,19})?")
_ETAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*')
_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                       "nov", "dec"), start=1)}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_IMF = re.compile(r"[A-Za-z]{3}, (\d{2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT")
_RFC850 = re.compile(r"[A-Za-z]{6,9}, (\d{2})-([A-Za-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT")
_ASCTIME = re.compile(r"[A-Za-z]{3} ([A-Za-z]{3}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})")


def content_type_for(name: str) -> str:
    ext = name.rsplit(".", 1)[1].lower() if "." in name else ""
    return CONTENT_TYPES.get(ext, DEFAULT_CONTENT_TYPE)


# --- dates -----------------------------------------------------------------------------------------


def format_http_date(epoch_s: int) -> str:
    """IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT`` (the only form a server sends)."""
    days, rem = divmod(int(epoch_s), 86_400)
    # Civil date from days since 1970-01-01 (Howard Hinnant's algorithm): no clock module needed.
    z = days + 719_468
    era = (z if z >= 0 else z - 146_096) // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    weekday = _DAYS[(days + 3) % 7]  # 1970-01-01 was a Thursday
    month_name = next(k for k, v in _MONTHS.items() if v == month).capitalize()
    return f"{weekday}, {day:02d} {month_name} {year:04d} {rem // 3600:02d}:{rem % 3600 // 60:02d}:{rem % 60:02d} GMT"


def parse_http_date(text: str) -> int | None:
    """Seconds since the epoch from any of the three forms a recipient must accept [5.6.7]; None if not one."""
    text = text.strip()
    if len(text) > 64:
        return None
    if m := _IMF.fullmatch(text):
        day, mon, year, hh, mm, ss = m.groups()
    elif m := _RFC850.fullmatch(text):
        day, mon, yy, hh, mm, ss = m.groups()
        year = str(1900 + int(yy) if int(yy) >= 70 else 2000 + int(yy))  # two-digit years: the RFC's 50-year rule, simplified
    elif m := _ASCTIME.fullmatch(text):
        mon, day, hh, mm, ss, year = m.groups()
    else:
        return None
    month = _MONTHS.get(mon.lower())
    if month is None:
        return None
    try:
        values = (int(year), month, int(day), int(hh), int(mm), int(ss))
        if not (1 <= values[2] <= 31 and values[3] < 24 and values[4] < 60 and values[5] < 61):
            return None
        return calendar.timegm((*values, 0, 0, 0))
    except (ValueError, OverflowError):
        return None


# --- validators ------------------------------------------------------------------------------------


def _etags(field: str) -> list[tuple[bool, str]] | None:
    """``[(weak, opaque-tag)]`` of an If-Match / If-None-Match list; None when it is ``*``."""
    if field.strip() == "*":
        return None
    tags = []
    for part in _split_list(field):
        m = _ETAG.fullmatch(part)
        if m:
            tags.append((m.group(1) is not None, m.group(2)))
    return tags


def _split_list(field: str) -> list[str]:
    # Entity-tags never contain commas inside their quotes in practice (our own never do); a comma
    # in a foreign tag only makes that tag fail to match, which is the safe outcome.
    return [p for p in field.split(",") if p.strip()]


def strong_match(field: str, etag: str) -> bool:
    tags = _etags(field)
    return tags is None or any(not weak and tag == etag for weak, tag in tags)


def weak_match(field: str, etag: str) -> bool:
    tags = _etags(field)
    return tags is None or any(tag == etag for _weak, tag in tags)


# --- ranges ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ByteRange:
    first: int
    last: int  # inclusive

    @property
    def length(self) -> int:
        return self.last - self.first + 1


class Unsatisfiable:
    """Every range of the request lies past the end of the file (416)."""


UNSATISFIABLE = Unsatisfiable()


def parse_range(field: str, size: int) -> list[ByteRange] | Unsatisfiable | None:
    """The satisfiable ranges of a ``Range`` header (sorted and coalesced), ``UNSATISFIABLE``, or
    None when the header must be ignored (bad syntax, another unit, too many ranges)."""
    if len(field) > HEADER_CHARS_MAX:
        return None
    m = _BYTES_RANGE.fullmatch(field)
    if not m:
        return None
    specs = [s.strip() for s in m.group(1).split(",")]
    if not any(specs):
        return None
    ranges: list[ByteRange] = []
    for spec in specs:
        if not spec:
            continue  # empty list elements are allowed by the list syntax [5.6.1]
        sm = _SPEC.fullmatch(spec)
        if not sm or (sm.group(1) is None and sm.group(2) is None):
            return None
        first_t, last_t = sm.groups()
        if first_t is None:  # suffix: the last N bytes
            suffix = int(last_t)
            if suffix > 0 and size > 0:
                ranges.append(ByteRange(max(0, size - suffix), size - 1))
            continue
        first = int(first_t)
        if last_t is not None and int(last_t) < first:
            return None  # syntactically invalid: the whole header is ignored
        if first < size:
            ranges.append(ByteRange(first, min(int(last_t) if last_t is not None else size - 1, size - 1)))
    if not ranges:
        return UNSATISFIABLE
    merged: list[ByteRange] = []
    for r in sorted(ranges, key=lambda r: r.first):
        if merged and r.first <= merged[-1].last + 1:
            merged[-1] = ByteRange(merged[-1].first, max(merged[-1].last, r.last))
        else:
            merged.append(r)
    return merged if len(merged) <= RANGES_MAX else None


# --- the answer ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileSpan:
    offset: int
    length: int


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: tuple[bytes | FileSpan, ...]  # what GET sends (HEAD sends the same headers, no body)

    @property
    def content_length(self) -> int:
        return sum(len(p) if isinstance(p, bytes) else p.length for p in self.body)


@dataclass(frozen=True)
class FileFacts:
    size: int
    etag: str  # a strong entity-tag, quotes included
    last_modified_s: int
    content_type: str


def answer(method: str, headers: Mapping[str, str], facts: FileFacts, *, boundary: str, now_s: int) -> Answer:
    """What to send for a GET or HEAD of the file. ``headers``: lower-case names (one value each: a
    repeated header arrives joined with commas). ``boundary``: fresh randomness from the shell, used
    only for a multipart answer."""
    lm = min(facts.last_modified_s, now_s)  # a future mtime is never sent as a validator in the future
    base = [("accept-ranges", "bytes"), ("etag", facts.etag), ("last-modified", format_http_date(lm)),
            ("cache-control", "private, max-age=0")]

    def plain(status: int) -> Answer:
        return Answer(status, (*base, ("content-length", "0")), ())

    if (im := headers.get("if-match")) is not None and len(im) <= HEADER_CHARS_MAX:
        if not strong_match(im, facts.etag):
            return plain(412)
    elif (ius := headers.get("if-unmodified-since")) is not None:
        since = parse_http_date(ius)
        if since is not None and lm > since:
            return plain(412)
    if (inm := headers.get("if-none-match")) is not None and len(inm) <= HEADER_CHARS_MAX:
        if weak_match(inm, facts.etag):
            return Answer(304, tuple(base), ())
    elif (ims := headers.get("if-modified-since")) is not None:
        since = parse_http_date(ims)
        if since is not None and since <= now_s and lm <= since:
            return Answer(304, tuple(base), ())
    whole = Answer(200, (*base, ("content-type", facts.content_type), ("content-length", str(facts.size))),
                   (FileSpan(0, facts.size),) if facts.size else ())
    field = headers.get("range")
    if field is None or method not in ("GET", "HEAD"):
        return whole
    if (if_range := headers.get("if-range")) is not None and not _if_range_holds(if_range, facts.etag, lm, now_s):
        return whole
    ranges = parse_range(field, facts.size)
    if ranges is None:
        return whole
    if isinstance(ranges, Unsatisfiable):
        return Answer(416, (*base, ("content-range", f"bytes */{facts.size}"), ("content-length", "0")), ())
    if len(ranges) == 1:
        r = ranges[0]
        return Answer(206, (*base, ("content-type", facts.content_type),
                            ("content-range", f"bytes {r.first}-{r.last}/{facts.size}"),
                            ("content-length", str(r.length))), (FileSpan(r.first, r.length),))
    body: list[bytes | FileSpan] = []
    for i, r in enumerate(ranges):
        head = (f"{'' if i == 0 else chr(13) + chr(10)}--{boundary}\r\ncontent-type: {facts.content_type}\r\n"
                f"content-range: bytes {r.first}-{r.last}/{facts.size}\r\n\r\n")
        body += [head.encode("latin-1"), FileSpan(r.first, r.length)]
    body.append(f"\r\n--{boundary}--\r\n".encode("latin-1"))
    length = sum(len(p) if isinstance(p, bytes) else p.length for p in body)
    return Answer(206, (*base, ("content-type", f"multipart/byteranges; boundary={boundary}"),
                        ("content-length", str(length))), tuple(body))


def _if_range_holds(field: str, etag: str, last_modified_s: int, now_s: int) -> bool:
    field = field.strip()
    if field.startswith(('"', "W/")):
        m = _ETAG.fullmatch(field)
        return bool(m) and m.group(1) is None and m.group(2) == etag
    date = parse_http_date(field)
    # A date validator is strong only if the file was last modified at least a second before now.
    return date is not None and date == last_modified_s and last_modified_s < now_s


def etag_for(size: int, mtime_ns: int, inode: int) -> str:
    """A strong ETag that changes whenever the file is replaced or rewritten."""
    return f'"{size:x}-{mtime_ns:x}-{inode:x}"'

"""The ingest fast paths give the same results as the plain paths they shortcut (issue 15).

- A CDR start: the hour cache plus the ':MM:SS' table (adapters.asterisk_cdr) against
  `datetime.strptime(text, "%Y-%m-%d %H:%M:%S")` in the zone (fold 0, the documented reading
  of a repeated hour) and against a fresh LocalClock.epoch (the plain path the parser used
  for every row before, which also decides what is rejected).
- A customer digest: fields.customer_digest against base.hash_customer.
- A CSV export's time: csv_export._time with its hour cache against strptime/fromisoformat.
- Whole parses of the committed fixtures and of fuzzed lines with the fast paths switched
  off (the ':MM:SS' table emptied, customer_digest replaced by hash_customer, every row
  through the row-by-row loop) and on.
- The chunk decoded as the csv reader reads it (STREAM_DECODE) against decoded at once
  (asterisk_cdr._parse_decoded) on fuzzed bytes in several encodings: bad bytes, BOMs,
  CR, CRLF, NUL, quotes left open, blank lines.
- The common-shape blocks (asterisk_cdr._CommonRows: a block of rows column by column)
  against the row-by-row loop on fixtures and on fuzzed 16/18/21-column rows with every
  odd value the loop treats apart, in blocks of 1 to 512 rows; and the bulk
  customer_digests against customer_digest.

The start column's layout is cdr_csv's 'YYYY-MM-DD HH:MM:SS' (Asterisk's cdr_csv writes
start, answer and end with that format; the fixtures under tests/fixtures/asterisk/ follow it).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adapters.asterisk_cdr as cdr
from adapters.asterisk_cdr import AsteriskCdrSettings, LocalClock, ParsedCdr, parse_cdr
from adapters.base import hash_customer
from adapters.csv_export import _time
from adapters.fields import customer_digest, customer_digests

FIXTURES = Path(__file__).parent / "fixtures" / "asterisk"
ZONES = [ZoneInfo("Europe/Oslo"), ZoneInfo("UTC"), ZoneInfo("Australia/Lord_Howe"),
         ZoneInfo("America/St_Johns")]  # fmt: skip  (Lord Howe shifts by 30 min)
LAYOUT = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", re.ASCII)
SETTINGS = AsteriskCdrSettings.model_validate({
    "name": "pbx", "adapter": "asterisk_cdr", "path": "unused.csv",
    "queues": {"support-in": "support"}, "directions": {"sales-out": "outbound"},
})  # fmt: skip


def line(start: str, src: str = "4799462840", duration: int = 60) -> str:
    """One 16-column cdr_csv row (the base layout of the Asterisk CDR specification)."""
    return (f'"","{src}","22334400","support-in","","SIP/trunk-1","SIP/218-2","Queue","",'
            f'"{start}","","",{duration},{duration - 5},"ANSWERED","DOCUMENTATION"\n')  # fmt: skip


def plain(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch the fast paths off: every start through LocalClock.epoch, every customer
    through hash_customer."""
    monkeypatch.setattr(cdr, "MINUTE_SECONDS", {})
    monkeypatch.setattr(cdr, "customer_digest", hash_customer)
    monkeypatch.setattr(cdr, "customer_digests", lambda raws: list(map(hash_customer, raws)))
    monkeypatch.setattr(cdr, "FAST_BLOCKS", False)
    monkeypatch.setattr(cdr, "STREAM_DECODE", False)


def strptime_epoch(text: str, tz: ZoneInfo) -> float | None:
    """The reference reading of a start, or None where the parser must reject it."""
    if not LAYOUT.fullmatch(text):
        return None
    try:
        moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    if not 1970 <= moment.year <= 2999:
        return None
    return moment.replace(tzinfo=tz).timestamp()


def starts_of(texts: list[str], tz: ZoneInfo, clock: LocalClock) -> list[float | None]:
    """Each text's start as parse_cdr reads it (None: rejected), in chunks of 7 lines so
    the hour cache carries over from chunk to chunk as in a pull."""
    out: list[float | None] = []
    for i in range(0, len(texts), 7):
        part = texts[i : i + 7]
        data = "".join(line(text) for text in part).encode()
        parsed = parse_cdr(data, 1, SETTINGS, tz, clock)
        by_line: dict[int, float | None] = {r.line: None for r in parsed.rejections}
        legs = iter(parsed.legs)
        for n in range(1, len(part) + 1):
            out.append(None if n in by_line else next(legs).start)
    return out


@pytest.mark.parametrize("tz", ZONES, ids=lambda z: z.key)
def test_starts_around_offset_changes_equal_strptime(tz: ZoneInfo) -> None:
    # Every 7 min 13 s over the days of both 2026 changes of each zone (Oslo: 29 Mar 02:00
    # -> 03:00, 25 Oct 03:00 -> 02:00; Lord Howe: 5 Apr and 4 Oct, 30 minutes; St John's:
    # 8 Mar and 1 Nov at -3:30/-2:30), ambiguous times read as fold 0 by both.
    texts = []
    for day in ("2026-03-08", "2026-03-29", "2026-04-05", "2026-10-04", "2026-10-25",
                "2026-11-01", "2026-12-31"):  # fmt: skip
        moment = datetime.fromisoformat(f"{day} 00:00:00")
        for _ in range(0, 86400, 433):
            texts.append(moment.strftime("%Y-%m-%d %H:%M:%S"))
            moment += timedelta(seconds=433)
    fast = starts_of(texts, tz, LocalClock(tz))
    assert len(fast) == len(texts) == 7 * 200  # 86400 / 433 -> 200 a day, none rejected
    assert fast == [strptime_epoch(text, tz) for text in texts]


starts = st.one_of(
    # valid layouts, any second of 1970..2999 (and a little beyond, rejected)
    st.datetimes(datetime(1969, 12, 31), datetime(3000, 1, 2)).map(
        lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),
    # near-misses: one character changed, dropped or added
    st.tuples(st.datetimes(datetime(2000, 1, 1), datetime(2030, 1, 1)),
              st.integers(0, 18), st.sampled_from(list("0123456789 :-T\u0663x")),
              st.sampled_from(["replace", "drop", "insert"])).map(
        lambda t: _mutate(t[0].strftime("%Y-%m-%d %H:%M:%S"), t[1], t[2], t[3])),
    st.text(alphabet="0123456789-: ", max_size=22),
)  # fmt: skip


def _mutate(text: str, at: int, char: str, how: str) -> str:
    if how == "replace":
        return text[:at] + char + text[at + 1 :]
    if how == "drop":
        return text[:at] + text[at + 1 :]
    return text[:at] + char + text[at:]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(starts, min_size=1, max_size=30), zone=st.sampled_from(ZONES))
def test_fuzzed_starts_equal_the_plain_path(texts: list[str], zone: ZoneInfo) -> None:
    clock = LocalClock(zone)
    warm = [t for t in texts if strptime_epoch(t, zone) is not None]
    for text in warm:  # the hour cache filled first, so the fuzzed texts take the fast path
        clock.epoch(text)
    fast = starts_of(texts, zone, clock)
    for text, got in zip(texts, fast, strict=True):
        try:
            expected: float | None = LocalClock(zone).epoch(text)
        except ValueError:
            expected = None
        assert got == expected, text
        if LAYOUT.fullmatch(text):  # the ASCII layout: strptime agrees too
            assert got == strptime_epoch(text, zone), text


@settings(max_examples=500, deadline=None)
@given(raw=st.one_of(
    st.text(alphabet="0123456789", max_size=16),
    st.text(alphabet="0123456789+ -()\u0663\u00b2<>\"a@", max_size=16),
    st.text(max_size=12),
))  # fmt: skip
def test_customer_digest_equals_hash_customer(raw: str) -> None:
    assert customer_digest(raw) == hash_customer(raw)


@pytest.mark.parametrize("raw", ["4799462840", "004799462840", "0", "000", "", "0047",
                                 "12\u0663", "\u00b2", "+4799462840", "s", "anonymous"])
def test_customer_digest_edge_cases(raw: str) -> None:
    # "004799462840" and "+4799462840" are one customer ('00' read as '+'), "0"/"000" none,
    # U+0663 and U+00B2 are digits to str.isdigit but not ASCII: all left to hash_customer.
    assert customer_digest(raw) == hash_customer(raw)
    assert customer_digest("004799462840") == customer_digest("4799462840")
    assert customer_digest("000") is None


def parse_both(data: bytes, tz: ZoneInfo, monkeypatch: pytest.MonkeyPatch) -> tuple[
    ParsedCdr, ParsedCdr
]:
    fast = parse_cdr(data, 1, SETTINGS, tz, LocalClock(tz))
    with monkeypatch.context() as patch:
        plain(patch)
        slow = parse_cdr(data, 1, SETTINGS, tz, LocalClock(tz))
    return fast, slow


@pytest.mark.parametrize("name", ["mixed.csv", "calls18.csv", "calls21.csv", "partial.csv"])
def test_fixture_parses_equal_with_fast_paths_off(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = (FIXTURES / name).read_bytes()
    fast, slow = parse_both(data, ZONES[0], monkeypatch)
    assert fast.legs, name  # the fixture has calls: the comparison is not of two empties
    assert fast == slow


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(starts, st.sampled_from(
    ["4799462840", "004799462840", "+47 99 46 28 40", "0", "", "anonymous", "12\u0663"]),
    st.integers(0, 900)), min_size=1, max_size=25))  # fmt: skip
def test_fuzzed_lines_parse_equal_with_fast_paths_off(
    rows: list[tuple[str, str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = "".join(line(start, src, duration) for start, src, duration in rows).encode()
    fast, slow = parse_both(data, ZONES[0], monkeypatch)
    assert fast == slow
    assert len(fast.legs) + len(fast.rejections) == len(rows)  # each line counted once


# -- common-shape blocks (asterisk_cdr._CommonRows) against the row-by-row loop ----------
BLOCK_SETTINGS = AsteriskCdrSettings.model_validate({
    "name": "pbx", "adapter": "asterisk_cdr", "path": "unused.csv",
    "queues": {"support-in": "support", "sales-out": "telesales"},
    "directions": {"sales-out": "outbound", "support-in": "inbound"},
    "outcomes": {"SALE": "sale"}, "exclude_contexts": ["from-internal"],
})  # fmt: skip
LATEST = datetime(2026, 10, 10, tzinfo=UTC).timestamp()  # some fuzzed starts are after


def quoted(field: str) -> str:
    return '"' + field.replace('"', '""') + '"'


def cdr_line(fields: dict[str, str], width: int) -> str:
    """A cdr_csv row of `width` columns in the column order of the Asterisk CDR
    specification (accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp,
    lastdata, start, answer, end, duration, billsec, disposition, amaflags, then uniqueid,
    userfield, then peeraccount, linkedid, sequence); duration and billsec unquoted, as
    cdr_csv writes them."""
    g = fields.get
    row = [quoted(""), quoted(g("src", "4799462840")), quoted(g("dst", "22334400")),
           quoted(g("dcontext", "support-in")), quoted('"Olsen, John" <4799462840>'),
           quoted(g("channel", "SIP/trunk-1")), quoted(g("dstchannel", "SIP/218-2")),
           quoted(g("lastapp", "Queue")), quoted("support,tT,,,300"),
           quoted(g("start", "2026-03-29 10:00:12")), quoted(""), quoted(""),
           g("duration", "60"), g("billsec", "55"), quoted(g("disposition", "ANSWERED")),
           quoted("DOCUMENTATION")]  # fmt: skip
    if width >= 18:
        row += [quoted(g("uniqueid", "1774771212.1")), quoted(g("userfield", ""))]
    if width == 21:
        row += [quoted(""), quoted(g("linkedid", "1774771212.1")), quoted(g("sequence", "1"))]
    return ",".join(row) + "\n"


def sometimes(common: str, *odd: str) -> st.SearchStrategy[str]:
    """`common` three times in four, else one of the values the row loop treats apart."""
    return st.one_of(st.just(common), st.just(common), st.just(common), st.sampled_from(odd))


BLOCK_FIELDS = st.fixed_dictionaries({
    "src": sometimes("4799462840", "004799462840", "0", "000", "", "anonymous", "12\u0663",
                     "+47 99 46 28 40", "4791111111", "0712345678"),
    "dst": sometimes("22334400", "0047", "", "00"),
    "dcontext": sometimes("support-in", "sales-out", "from-internal", "unmapped"),
    "channel": sometimes("SIP/trunk-1", "Local/201@from-queue;1", "Local/201@from-queue;2",
                         "Local/;2", "DAHDI/1-1;2"),
    "dstchannel": sometimes("SIP/218-2", "", "Local/202@from-queue;1", "Local/", "SIP/2"),
    "lastapp": sometimes("Queue", "Dial", "AppDial", "AppDial2"),
    "start": st.one_of(st.sampled_from(["2026-03-29 10:00:12", "2026-03-29 01:59:59",
                                        "2026-03-29 02:30:00", "2026-10-25 02:30:00",
                                        "2026-12-01 08:00:00", "2026-10-04 02:10:00",
                                        "2019-01-02 23:59:59"]),
                       starts),
    "duration": sometimes("60", "0", "604800", "604801", " 12", "1_0", "+5", "-1", "",
                          "\u0663", "x"),
    "billsec": sometimes("55", "0", "59", " 7", "-1", "\u0663"),
    "disposition": sometimes("ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION",
                             "UNKNOWN", " answered", "no answer", "junk", ""),
    "uniqueid": sometimes("1774771212.1", "", "1774771212.2"),
    "userfield": sometimes("", "SALE", "junk"),
    "linkedid": sometimes("1774771212.1", "", "1774771300.9"),
    "sequence": sometimes("1", "", "2"),
})  # fmt: skip


def parse_blocks_both(
    data: bytes, tz: ZoneInfo, latest: float | None, block_rows: int,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[ParsedCdr, ParsedCdr]:
    """(block path on, row-by-row only) on `data`, each with a fresh clock."""
    with monkeypatch.context() as patch:
        patch.setattr(cdr, "BLOCK_ROWS", block_rows)
        fast = parse_cdr(data, 3, BLOCK_SETTINGS, tz, LocalClock(tz), latest)
        patch.setattr(cdr, "FAST_BLOCKS", False)
        rows = parse_cdr(data, 3, BLOCK_SETTINGS, tz, LocalClock(tz), latest)
    return fast, rows


def blocks_taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Spy on _CommonRows.legs: one entry per block, True when it made the block's legs."""
    taken: list[bool] = []
    original = cdr._CommonRows.legs

    def spy(self: cdr._CommonRows, block: list[list[str]]) -> list[cdr.Leg] | None:
        legs = original(self, block)
        taken.append(legs is not None)
        return legs

    monkeypatch.setattr(cdr._CommonRows, "legs", spy)
    return taken


@pytest.mark.parametrize("name", ["mixed.csv", "calls18.csv", "calls21.csv", "partial.csv"])
@pytest.mark.parametrize("block_rows", [1, 2, 3, 512])
def test_fixture_blocks_equal_the_row_by_row_path(
    name: str, block_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = (FIXTURES / name).read_bytes()
    taken = blocks_taken(monkeypatch)
    fast, rows = parse_blocks_both(data, ZONES[0], None, block_rows, monkeypatch)
    assert fast.legs, name
    assert fast == rows
    if name != "mixed.csv" and block_rows == 1:  # mixed.csv: every row is odd on purpose
        assert any(taken), name  # some blocks went the common way: not two loops compared


def test_common_blocks_are_taken_and_odd_ones_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    # Blocks of 2: lines 1-2 common (18 columns), 3-4 with a lower-case disposition the
    # loop reads after strip().upper(), 5-6 common, 7-8 with a dialed Local ;2 side
    # (excluded), 9-10 common but an outbound call (dst is the customer), 11-12 with a
    # future start (latest = 2026-10-10), 13-14 with a start in Lord Howe's 02:00 hour of
    # 4 October 2026, when clocks go from 02:00 to 02:30 (+10:30 -> +11): its first and
    # last second differ in offset, so the hour cache holds None and LocalClock.epoch reads
    # it (02:10 does not exist: read as +10:30, 15:40 UTC the day before).
    odd = [{}, {}, {"disposition": "answered "}, {}, {}, {}, {"channel": "Local/1@q;2"}, {},
           {"dcontext": "sales-out"}, {}, {"start": "2026-12-01 08:00:00"}, {},
           {"start": "2026-10-04 02:10:00"}, {}]  # fmt: skip
    data = "".join(cdr_line(fields, 18) for fields in odd).encode()
    taken = blocks_taken(monkeypatch)
    fast, rows = parse_blocks_both(data, ZoneInfo("Australia/Lord_Howe"), LATEST, 2, monkeypatch)
    assert taken == [True, False, True, False, True, False, False]
    assert fast == rows
    assert len(fast.legs) == 12 and len(fast.excluded) == 1 and len(fast.rejections) == 1
    assert fast.legs[7].customer == customer_digest("22334400")  # outbound: dst
    assert fast.legs[2].reason == "" and fast.legs[2].answered  # "answered " read as ANSWERED
    assert fast.legs[10].start == datetime(2026, 10, 3, 15, 40, tzinfo=UTC).timestamp()


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(BLOCK_FIELDS, st.sampled_from([16, 18, 21, 21, 18, 0])),
                     min_size=1, max_size=24),
       width=st.sampled_from([16, 18, 21]), mixed=st.booleans(),
       block_rows=st.sampled_from([1, 2, 3, 5, 512]), zone=st.sampled_from(ZONES),
       latest=st.sampled_from([None, LATEST]))  # fmt: skip
def test_fuzzed_blocks_equal_the_row_by_row_path(
    rows: list[tuple[dict[str, str], int]], width: int, mixed: bool, block_rows: int,
    zone: ZoneInfo, latest: float | None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One width for the whole file, or (mixed) each row its own: 16, 18, 21 or a blank line.
    lines = []
    for fields, own in rows:
        chosen = own if mixed else width
        lines.append(cdr_line(fields, chosen) if chosen else "\n")
    data = "".join(lines).encode()
    fast, by_rows = parse_blocks_both(data, zone, latest, block_rows, monkeypatch)
    assert fast == by_rows
    with monkeypatch.context() as patch:  # and every fast path off
        plain(patch)
        assert fast == parse_cdr(data, 3, BLOCK_SETTINGS, zone, LocalClock(zone), latest)


@settings(max_examples=300, deadline=None)
@given(raws=st.lists(st.one_of(
    st.text(alphabet="0123456789", max_size=12),
    st.text(alphabet="0123456789+ -\n\u0663", max_size=8),
    st.sampled_from(["4799462840", "004799462840", "0", "000", "", "0712345678"]),
), max_size=12))  # fmt: skip
def test_customer_digests_equal_customer_digest(raws: list[str]) -> None:
    assert customer_digests(raws) == [customer_digest(raw) for raw in raws]
    assert customer_digests(raws) == [hash_customer(raw) for raw in raws]


# -- the chunk decoded as the reader goes (STREAM_DECODE) against decoded at once -----------
ENCODINGS = ["utf-8", "latin-1", "cp1252", "utf-16-le", "utf-16", "ascii"]
RAW_LINES = st.one_of(
    st.tuples(BLOCK_FIELDS, st.sampled_from([16, 18, 21])).map(lambda t: cdr_line(*t)),
    st.sampled_from(["\n", "\r\n", "\r", '"open quote,1\n', '",x\n', "\x00\n", "\ufeff\n",
                     "a\rb\n", "Ølsen,æ\n", "\u20ac\n"]),
)  # fmt: skip


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(RAW_LINES.map(lambda line: ("text", line)),
                                st.binary(max_size=12).map(lambda raw: ("raw", raw))),
                      max_size=14),
       encoding=st.sampled_from(ENCODINGS), crlf=st.booleans(), open_end=st.booleans(),
       block_rows=st.sampled_from([1, 3, 512]))  # fmt: skip
def test_fuzzed_bytes_parse_equal_streamed_or_decoded_at_once(
    lines: list[tuple[str, object]], encoding: str, crlf: bool, open_end: bool,
    block_rows: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    parts = []
    for kind, line in lines:
        if kind == "raw":
            assert isinstance(line, bytes)
            parts.append(line + b"\n")  # bytes that may not decode: a rejected line
        else:
            assert isinstance(line, str)
            parts.append((line.replace("\n", "\r\n") if crlf else line).encode(encoding, "replace"))
    data = b"".join(parts)
    if open_end and data.endswith(b"\n"):
        data = data[:-1]  # a file's last line without its newline (filetail hands it out)
    chosen = BLOCK_SETTINGS.model_copy(update={"encoding": encoding})
    tz = ZONES[0]
    with monkeypatch.context() as patch:
        patch.setattr(cdr, "BLOCK_ROWS", block_rows)
        streamed = parse_cdr(data, 5, chosen, tz, LocalClock(tz), LATEST)
        patch.setattr(cdr, "STREAM_DECODE", False)
        at_once = parse_cdr(data, 5, chosen, tz, LocalClock(tz), LATEST)
    assert streamed == at_once


@pytest.mark.parametrize("encoding", sorted(cdr.STREAMED_CODECS))
def test_clean_chunks_are_streamed(encoding: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The comparison above is not of two _parse_decoded runs: a clean chunk never reaches it.
    data = "".join(cdr_line({}, 18) for _ in range(5)).encode(encoding)
    monkeypatch.setattr(cdr, "_parse_decoded", lambda *args: pytest.fail("not streamed"))
    parsed = parse_cdr(data, 1, BLOCK_SETTINGS, ZONES[0])
    assert len(parsed.legs) == 5 and not parsed.rejections


# -- CSV export times: csv_export._time with its hour cache against the plain reading ------
def csv_plain(text: str, time_format: str | None, tz: ZoneInfo) -> float | None:
    try:
        return _time(text, time_format, tz)  # no cache: strptime / fromisoformat each time
    except (ValueError, OverflowError):
        return None


def csv_fast(texts: list[str], time_format: str | None, tz: ZoneInfo) -> list[float | None]:
    hours: dict[str, float | None] = {}
    out: list[float | None] = []
    for text in texts:
        try:
            out.append(_time(text, time_format, tz, hours))
        except (ValueError, OverflowError):
            out.append(None)
    return out


iso_texts = st.one_of(
    starts,
    starts.map(lambda t: t.replace(" ", "T", 1)),
    starts.map(lambda t: t + "+02:00"),
)


@pytest.mark.parametrize("time_format", [None, "%Y-%m-%d %H:%M:%S"])
@pytest.mark.parametrize("tz", ZONES, ids=lambda z: z.key)
def test_csv_times_around_offset_changes_equal_the_plain_path(
    tz: ZoneInfo, time_format: str | None
) -> None:
    texts = []
    for day in ("2026-03-08", "2026-03-29", "2026-04-05", "2026-10-04", "2026-10-25",
                "2026-11-01"):  # fmt: skip
        moment = datetime.fromisoformat(f"{day} 00:00:00")
        for _ in range(0, 86400, 433):
            texts.append(moment.strftime("%Y-%m-%d %H:%M:%S"))
            moment += timedelta(seconds=433)
    fast = csv_fast(texts + texts, time_format, tz)  # the second pass: all from the cache
    expected = [strptime_epoch(text, tz) for text in texts]
    assert None not in expected
    assert fast == expected + expected


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(iso_texts, min_size=1, max_size=30), zone=st.sampled_from(ZONES),
       time_format=st.sampled_from([None, "%Y-%m-%d %H:%M:%S"]))  # fmt: skip
def test_fuzzed_csv_times_equal_the_plain_path(
    texts: list[str], zone: ZoneInfo, time_format: str | None
) -> None:
    warm = [t for t in texts if csv_plain(t, time_format, zone) is not None]
    fast = csv_fast(warm + texts, time_format, zone)[len(warm) :]
    assert fast == [csv_plain(text, time_format, zone) for text in texts]

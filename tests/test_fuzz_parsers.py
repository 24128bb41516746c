"""Parsers under fuzzing: every input row becomes one stored contact or one counted rejection.

Hypothesis feeds the pure parsers (Asterisk Master.csv, generic CSV, the vendor API page
parsers) and the webhook decoders random and mutated input: missing and extra columns,
broken quoting, NUL bytes, huge fields, wrong encodings and BOMs, dates out of range,
negative and enormous durations, JSON of the wrong shape. The properties:

- nothing but the documented whole-source errors (HeaderError, ShapeError) leaves a parser;
- contacts + rejections == rows (lines/records for files, items for JSON pages; items a
  vendor parser deliberately leaves for later - not final yet, internal, child legs - are
  counted separately and must be exactly the ones its single-item parser returns None for);
- every rejection has a reason from the bounded vocabulary and its own line;
- every contact can be committed to a real store, once per distinct id.

Each test is bounded (max_examples <= 200, no deadline); all of them run in well under a
minute on two cores.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import aircall, freshdesk, liveagent, twilio, zendesk
from adapters.asterisk_cdr import AsteriskCdrSettings, parse_cdr
from adapters.base import FieldError, Leg, ShapeError
from adapters.csv_export import CsvSettings, HeaderError, parse_csv
from adapters.generic_webhook import (
    GenericWebhookAdapter,
    GenericWebhookSettings,
    generic_signature,
    parse_event,
)
from adapters.twilio import twilio_signature
from collector.calls import merge_legs
from collector.config import Settings
from collector.health import HealthState
from collector.model import CHANNELS_KNOWN, DIRECTIONS, Contact, Rejection
from collector.store import SqliteStore
from collector.webhooks import WebhookReceiver
from tests.vendor_support import CONTEXT

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ZONES = ["UTC", "Europe/Oslo", "Pacific/Kiritimati", "America/Adak", "Australia/Lord_Howe"]
NOW = 1_773_133_700.0  # 2026-03-10

# -- shared checks ---------------------------------------------------------------------------
FILE_REASONS = {"columns", "date", "duration", "disposition", "encoding", "quoting", "handled",
                "direction", "price", "id", "future"}
API_REASONS = {"shape", "date", "duration", "id", "status", "direction", "price", "currency",
               "handled", "account", "future"}


def check_contact(contact: Contact, queues: set[str]) -> None:
    assert isinstance(contact, Contact)
    assert contact.id and isinstance(contact.id, str)
    assert contact.channel in CHANNELS_KNOWN
    assert contact.direction in DIRECTIONS
    assert contact.queue in queues
    assert math.isfinite(contact.start)
    for value in (contact.handle_seconds, contact.talk_seconds, contact.billable_seconds):
        assert math.isfinite(value) and value >= 0, contact
    assert contact.price is None or (math.isfinite(contact.price) and contact.price >= 0)


def check_rejections(rejections: list[Rejection], reasons: set[str], lines: range) -> None:
    assert all(r.reason in reasons for r in rejections), rejections
    numbers = [r.line for r in rejections]
    assert len(numbers) == len(set(numbers)), "one rejection per row"
    assert all(n in lines for n in numbers), (numbers, lines)


def check_stored(contacts: list[Contact], tz: str) -> None:
    """A real store takes every contact (none poisons the batch), once per distinct id."""
    store = SqliteStore(":memory:", ZoneInfo(tz))
    try:
        assert store.commit("fuzz", contacts, "pos") == len({c.id for c in contacts})
    finally:
        store.close()


# -- text building blocks --------------------------------------------------------------------
NASTY = st.sampled_from(["", " ", '"', '""', ",", "\x00", "\r", "\t", "\ufeff",
                         "é", "日本", "\u2028", "NULL", "-", "٣", "1e400", "nan", "inf"])
SMALL_TEXT = st.one_of(NASTY, st.text(max_size=12), st.text(alphabet=',"\x00\r ab', max_size=8))
HUGE = st.builds(lambda ch, n: ch * n, st.sampled_from(["x", '"', "9", ",", "\x00"]),
                 st.integers(1_000, 120_000))
FIELD = st.one_of(SMALL_TEXT, SMALL_TEXT, SMALL_TEXT, HUGE)
DATE_TEXT = st.one_of(
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),  # years 1..9999
    st.sampled_from(["0000-00-00 00:00:00", "9999-12-31 23:59:59", "0001-01-01 00:00:00",
                     "2026-02-30 10:00:00", "2026-03-29 02:30:00", "2026-10-25 02:30:00",
                     "2026-01-01 24:00:00", "2026-01-01 10:00:60", "2026-1-1 1:0:0",
                     "2026-01-01T10:00:00", "2026-01-01 10:00:00+05:00", ""]),
    FIELD,
)
DURATION_TEXT = st.one_of(
    st.integers(-10**6, 10**7).map(str),
    st.integers(-(10**400), 10**400).map(str),
    st.sampled_from(["", "-0", "1.5", " 7 ", "1e9", "inf", "-inf", "nan", "9" * 5000]),
    FIELD,
)


# -- Asterisk Master.csv ---------------------------------------------------------------------
CDR_QUEUES = {"support-in": "support", "sales-out": "telesales"}
CDR_SETTINGS = AsteriskCdrSettings(
    name="pbx", adapter="asterisk_cdr", path=Path("Master.csv"), queues=CDR_QUEUES,
    directions={"sales-out": "outbound"}, outcomes={"SALE": "sale"},
)


def quote(field: str) -> str:
    return '"' + field.replace('"', '""') + '"'


@st.composite
def cdr_row(draw: st.DrawFn) -> str:
    """One Master.csv line: a plausible row, then zero or more mutations."""
    fields = [
        quote(draw(st.sampled_from(["", "acct"]))),
        quote(draw(st.one_of(st.just("5551234"), FIELD))),
        quote(draw(st.one_of(st.just("100"), FIELD))),
        quote(draw(st.sampled_from([*CDR_QUEUES, "internal", ""]))),
        quote('"Doe, John" <5551234>'), quote("SIP/trunk-0001"), quote("SIP/100-0002"),
        quote("Dial"), quote("SIP/100,30"),
        quote(draw(DATE_TEXT)), quote(""), quote(""),
        draw(DURATION_TEXT), draw(DURATION_TEXT),
        quote(draw(st.sampled_from(["ANSWERED", "NO ANSWER", "BUSY", "FAILED", "answered ",
                                    "CONGESTION", "UNKNOWN", "", "HUNG UP"]))),
        quote("DOCUMENTATION"),
    ]
    layout = draw(st.sampled_from([16, 18, 21]))
    if layout >= 18:
        fields += [quote(draw(st.one_of(st.just("1762000000.1"), FIELD))),
                   quote(draw(st.sampled_from(["", "SALE", "junk"])))]
    if layout == 21:
        fields += [quote(""), quote("1762000000.1"), "7"]
    for _ in range(draw(st.integers(0, 2))):
        where = draw(st.integers(0, len(fields) - 1))
        mutation = draw(st.sampled_from(["drop", "extra", "raw", "quote", "nul"]))
        if mutation == "drop":
            del fields[where]
        elif mutation == "extra":
            fields.insert(where, quote(draw(FIELD)))
        elif mutation == "raw":
            fields[where] = draw(FIELD)  # unquoted: may carry commas and stray quotes
        elif mutation == "quote":
            fields[where] = '"' + fields[where]  # an opened quote that never closes
        else:
            fields[where] = fields[where][:1] + "\x00" + fields[where][1:]
        if not fields:
            break
    return ",".join(fields).replace("\n", " ")


ENCODED_LINE = st.one_of(
    st.tuples(cdr_row(), st.sampled_from(["utf-8", "utf-8", "latin-1", "utf-16-le", "cp1252"]))
    .map(lambda pair: pair[0].encode(pair[1], "replace")),
    st.binary(max_size=60),
    st.sampled_from([b"", b"\r", b"\xef\xbb\xbf", b"\xff\xfe", b"\x00" * 5]),
)


def non_blank_segments(data: bytes) -> int:
    segments = data.split(b"\n")
    if segments and segments[-1] == b"":
        segments.pop()
    return sum(1 for s in segments if s not in (b"", b"\r"))


@FUZZ
@given(
    lines=st.lists(ENCODED_LINE, max_size=12),
    bom=st.booleans(),
    zone=st.sampled_from(ZONES),
    usegmtime=st.booleans(),
    first_line=st.integers(1, 10**6),
)
def test_cdr_parser_accounts_for_every_line(
    lines: list[bytes], bom: bool, zone: str, usegmtime: bool, first_line: int
) -> None:
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + b"\n"
    expected = non_blank_segments(data)
    cdr_settings = CDR_SETTINGS.model_copy(update={"usegmtime": usegmtime})
    legs, rejections, excluded = parse_cdr(data, first_line, cdr_settings, ZoneInfo(zone))
    assert len(legs) + len(rejections) + len(excluded) == expected
    lines = range(first_line, first_line + data.count(b"\n"))
    check_rejections(rejections, FILE_REASONS, lines)
    check_rejections(excluded, {"internal_leg", "excluded_context"}, lines)
    calls: dict[str, list[Leg]] = {}
    for leg in legs:
        calls.setdefault(leg.call, []).append(leg)
    for call, group in calls.items():  # the contacts the store makes of them, one per call
        check_contact(merge_legs(call, group), {*CDR_QUEUES.values(), "other"})
    store = SqliteStore(":memory:", ZoneInfo(zone))
    try:  # a real store takes every leg (none poisons the batch), once per (call, id)
        committed = store.commit_records("fuzz", [], legs, "pos")
        assert committed.records == len({(leg.call, leg.id) for leg in legs})
        assert sum(store.counts().values()) == len(calls)
    finally:
        store.close()


# -- generic CSV export ----------------------------------------------------------------------
CSV_HEADER = ["id", "started_at", "handle_seconds", "talk_seconds", "handled", "direction",
              "queue", "channel", "price", "outcome", "customer"]
CSV_QUEUES = {"Support Team": "support"}
CSV_SETTINGS = CsvSettings(
    name="csv", adapter="csv", path=Path("export.csv"),
    columns={name: name for name in CSV_HEADER},
    queues=CSV_QUEUES, outcomes={"won": "sale"},
)
ISO_TEXT = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.sampled_from([ZoneInfo(z) for z in ZONES])).map(
        lambda d: d.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "2026-13-01",
                     "2026-03-29T02:30:00", "2026-01-01T10:00:00Z", "", "yesterday"]),
    FIELD,
)


@st.composite
def csv_record(draw: st.DrawFn) -> list[str]:
    row = [
        draw(st.one_of(st.uuids().map(str), FIELD)),
        draw(ISO_TEXT),
        draw(DURATION_TEXT),
        draw(DURATION_TEXT),
        draw(st.sampled_from(["1", "0", "true", "no", "Y", "", "maybe"])),
        draw(st.sampled_from(["inbound", "OUTBOUND", "", "sideways"])),
        draw(st.sampled_from(["Support Team", "sales", "", "Ünïcode queue"])),
        draw(st.sampled_from(["voice", "chat", "EMAIL", "fax", ""])),
        draw(st.one_of(st.sampled_from(["", "0.12", "-1", "1e400", "nan"]), FIELD)),
        draw(st.sampled_from(["won", "lost", ""])),
        draw(FIELD),
    ]
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.booleans()) and row:
            del row[draw(st.integers(0, len(row) - 1))]
        else:
            row.insert(draw(st.integers(0, len(row))), draw(FIELD))
    return row


def blank(text: str) -> bool:
    """A line the csv module reads as no fields at all ("", or only CRs): not a record.

    csv.reader(["\r\r\n"]) gives [[]], the same as an empty line; hypothesis found it.
    """
    return text.strip("\r") == ""


def write_records(rows: list[list[str]]) -> list[str]:
    """Each record as csv.writer quotes it (quotes balanced; fields may hold newlines)."""
    texts = []
    for row in rows:
        buffer = io.StringIO()
        # csv.writer leaves a lone CR unquoted with this terminator: that is a broken row,
        # which the raw-line test below covers; here every record is well formed.
        csv.writer(buffer, lineterminator="\n").writerow([f.replace("\r", "") for f in row])
        texts.append(buffer.getvalue()[:-1])
    return texts


@FUZZ
@given(
    rows=st.lists(csv_record(), max_size=10),
    bad_bytes=st.lists(st.booleans(), max_size=10),
    zone=st.sampled_from(ZONES),
    first_line=st.integers(2, 10**6),
)
def test_csv_parser_accounts_for_every_record(
    rows: list[list[str]], bad_bytes: list[bool], zone: str, first_line: int
) -> None:
    records = write_records(rows)
    encoded = []
    for index, text in enumerate(records):
        raw = text.encode("utf-8", "surrogatepass")
        if index < len(bad_bytes) and bad_bytes[index]:
            # Not UTF-8, in the middle of the record but never just before a quote: there
            # it would turn a quoted field's opening quote into a literal one (csv quotes
            # only at a field's start), and the quoted field that then opens at the next
            # quote would swallow the records after it, so fewer records than written
            # would be there to count (hypothesis found `\xff\xfe","` this way).
            cut = len(raw) // 2
            while raw[cut : cut + 1] == b'"':
                cut += 1
            raw = raw[:cut] + b"\xff\xfe" + raw[cut:]
        encoded.append(raw)
    data = b"".join(raw + b"\n" for raw in encoded)
    expected = sum(1 for text in records if not blank(text))
    # A record longer than the caps is a runaway quote: only its first line is rejected and
    # the rest is read as records of their own. Keep to records within the caps here.
    assert all(t.count("\n") < 100 and len(t) < 1024 * 1024 for t in records)
    result = parse_csv(data, first_line, list(CSV_HEADER), CSV_SETTINGS, ZoneInfo(zone),
                       at_eof=True)
    assert result.unconsumed == b""
    assert len(result.contacts) + len(result.rejections) == expected
    check_rejections(result.rejections, FILE_REASONS,
                     range(first_line, first_line + data.count(b"\n")))
    for contact in result.contacts:
        check_contact(contact, {*CSV_QUEUES.values(), "other"})
    check_stored(result.contacts, zone)


RAW_CSV_LINE = st.one_of(
    st.text(alphabet='ab,"\x00\r 9-:T', max_size=40),
    st.lists(FIELD, max_size=13).map(",".join),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
)


@FUZZ
@given(
    lines=st.lists(RAW_CSV_LINE, max_size=12),
    with_header=st.booleans(),
    bom=st.booleans(),
    at_eof=st.booleans(),
)
def test_csv_parser_broken_quoting_never_raises_or_invents_records(
    lines: list[str], with_header: bool, bom: bool, at_eof: bool
) -> None:
    lines = [line.replace("\n", " ") for line in lines]
    header_text = ",".join(CSV_HEADER)
    text = ("\ufeff" if bom else "") + "\n".join(([header_text] if with_header else []) + lines)
    data = (text + "\n").encode("utf-8", "surrogatepass") if text else b""
    try:
        result = parse_csv(data, 1, None, CSV_SETTINGS, ZoneInfo("UTC"), at_eof=at_eof)
    except HeaderError:
        assert not with_header  # the documented whole-source error: no usable header
        return
    body_lines = len(lines)
    consumed = body_lines - result.unconsumed.count(b"\n")
    produced = len(result.contacts) + len(result.rejections)
    assert produced <= consumed  # a record spanning lines counts once; nothing invented
    non_blank = [line for line in lines if not blank(line)]
    if at_eof:
        assert result.unconsumed == b""
        assert (produced > 0) == bool(non_blank)
    if not any('"' in line for line in lines):
        assert produced == len(non_blank)  # without quotes a record is a line
    first_body = 2 if with_header else 1  # without one, the first record is read as header
    check_rejections(result.rejections, FILE_REASONS, range(1, first_body + body_lines))
    check_stored(result.contacts, "UTC")


# -- vendor API pages ------------------------------------------------------------------------
JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e308, -1e308, 1e300]),
    SMALL_TEXT,
)
JSON = st.recursive(JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)
RFC2822 = st.one_of(
    st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S +0000")),
    st.sampled_from(["Tue, 10 Mar 2026 14:00:42 +0000", "Mon, 01 Jan 0001 00:00:00 -1200",
                     "Fri, 31 Dec 9999 23:59:59 +1400", "not a date", ""]),
)
ISO_Z = st.one_of(
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.sampled_from(["2026-03-10T14:00:00Z", "0001-01-01T00:00:00+14:00",
                     "9999-12-31T23:59:59-12:00", "2026-02-30T00:00:00Z", ""]),
)
UNIX = st.one_of(st.integers(-(10**12), 10**12), st.floats(allow_nan=True, allow_infinity=True),
                 st.sampled_from([1773133600, 1773133700, 1e300, -1e300]))
LOCAL_TIME = st.one_of(
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),
    st.sampled_from(["2026-03-10 14:00:00", "0001-01-01 00:00:00", "9999-12-31 23:59:59", ""]),
)
DURATION = st.one_of(st.integers(-(10**6), 10**6), st.sampled_from([1e308, 10**400, "42", "-1",
                                                                     "1e999", "nan", "", None]),
                     JSON_LEAF)


def some(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the plausible value, sometimes any JSON at all."""
    return st.one_of(strategy, strategy, strategy, JSON)


def record(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """A vendor record with some keys dropped and some of the wrong type; or not a record."""
    full = st.fixed_dictionaries({}, optional={k: some(v) for k, v in fields.items()})
    return st.one_of(full, full, full, full, JSON)


TWILIO_CALL = record({
    "sid": st.one_of(st.uuids().map(lambda u: "CA" + u.hex), st.just("CA1")),
    "status": st.sampled_from([*twilio.FINAL, *twilio.PENDING, "initiated", "weird"]),
    "direction": st.sampled_from([*twilio.DIRECTIONS, "sideways"]),
    "start_time": RFC2822, "end_time": RFC2822, "duration": DURATION,
    "price": st.sampled_from([None, "", "-0.0130", "abc", "-1e400"]),
    "price_unit": st.sampled_from(["USD", "usd", "EUR", None]),
    "parent_call_sid": st.sampled_from([None, "", "CA0"]),
    "to": st.sampled_from(["+14155550199", "+1"]), "from": JSON_LEAF,
})
ZENDESK_TICKET = record({
    "id": st.one_of(st.integers(1, 10**6), JSON_LEAF),
    "status": st.sampled_from(["solved", "closed", "open", "new"]), "created_at": ISO_Z,
    "via": st.fixed_dictionaries({"channel": st.sampled_from(["email", "voice", "web"])}),
    "group_id": st.integers(1, 5), "tags": st.lists(st.sampled_from(["sale", "x"]), max_size=2),
    "requester_id": st.integers(1, 10**6),
    "custom_fields": st.lists(st.fixed_dictionaries({"id": st.just(360), "value": DURATION}),
                              max_size=2),
})
AIRCALL_CALL = record({
    "id": st.one_of(st.integers(1, 10**9), JSON_LEAF),
    "status": st.sampled_from(["done", "initial", "answered"]),
    "direction": st.sampled_from(["inbound", "outbound", "x"]),
    "started_at": UNIX, "ended_at": UNIX, "answered_at": st.one_of(st.none(), UNIX),
    "duration": DURATION, "missed_call_reason": st.sampled_from(["no_available_agent", "x"]),
    "number": st.fixed_dictionaries({"name": st.sampled_from(["Support FR", "?"]),
                                     "digits": JSON_LEAF}),
    "user": st.fixed_dictionaries({"wrap_up_time": DURATION}),
    "tags": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["Sale", "x"])}), max_size=2),
    "raw_digits": JSON_LEAF,
})
LIVEAGENT_CALL = record({  # CallListItem, camelCase as the calls API returns it
    "id": st.one_of(st.uuids().map(str), JSON_LEAF),
    "type": st.sampled_from([*liveagent.CALL_TYPES, liveagent.CALL_INTERNAL, "x"]),
    "dateCreated": LOCAL_TIME, "dateFinished": st.one_of(st.none(), LOCAL_TIME),
    "dateAnswered": st.one_of(st.none(), LOCAL_TIME), "callDuration": DURATION,
    "viaNumber": st.sampled_from(["d1", "d2", None]), "fromNumber": JSON_LEAF,
})
LIVEAGENT_TICKET = record({
    "id": st.one_of(st.uuids().map(str), JSON_LEAF),
    "status": st.sampled_from(["R", "C", "X", "B", "I", "N", "A"]),
    "channel_type": st.sampled_from([*liveagent.CHANNEL_TYPES, "Z"]),
    "date_created": LOCAL_TIME, "departmentid": st.sampled_from(["d1", None]),
    "tags": st.lists(JSON_LEAF, max_size=2), "owner_email": JSON_LEAF,
})
FRESHDESK_TICKET = record({
    "id": st.one_of(st.integers(1, 10**6), JSON_LEAF),
    "status": st.sampled_from([2, 3, 4, 5, "4"]), "created_at": ISO_Z, "updated_at": ISO_Z,
    "source": st.sampled_from([1, 2, 3, 7, 10, 99]), "group_id": st.integers(1, 5),
    "tags": st.lists(JSON_LEAF, max_size=2), "requester_id": JSON_LEAF,
    "custom_fields": st.fixed_dictionaries({"cf_handle_time": DURATION}),
})

TWILIO = twilio.TwilioSettings(name="tw", adapter="twilio", account_sid="AC" + "0" * 32,
                               auth_token="t", queues={"+14155550199": "support"})
ZENDESK = zendesk.ZendeskSettings(name="zd", adapter="zendesk", subdomain="acme", email="a@b.c",
                                  api_token="t", queues={"1": "support"}, outcomes={"sale": "sale"},
                                  handle_time="custom_field", handle_time_field=360)
AIRCALL = aircall.AircallSettings(name="ac", adapter="aircall", api_id="i", api_token="t",
                                  queues={"Support FR": "support"}, outcomes={"Sale": "sale"})
LIVEAGENT = liveagent.LiveAgentSettings(name="la", adapter="liveagent", subdomain="acme",
                                        api_key="k", queues={"d1": "support"})
FRESHDESK = freshdesk.FreshdeskSettings(name="fd", adapter="freshdesk", domain="acme",
                                        api_key="k", queues={"1": "support"},
                                        handle_time_field="cf_handle_time")
VENDOR_QUEUES = {"support", "other"}
SECRET = "generic-shared-secret"


def page_items(data: Any, key: str | None) -> list[Any] | None:
    """The items of a page of the right shape, else None (the parser must raise ShapeError)."""
    if key is None:
        return data if isinstance(data, list) else None
    if isinstance(data, dict) and isinstance(data.get(key), list):
        return data[key]
    return None


def single_outcome(parse_one: Callable[[Any], Contact | None], item: Any) -> str:
    """What the single-item parser makes of one item: contact, rejected or later."""
    if not isinstance(item, dict):
        return "rejected"
    try:
        return "later" if parse_one(item) is None else "contact"
    except FieldError as exc:
        assert exc.reason in API_REASONS, exc.reason
        return "rejected"
    except (TypeError, ValueError):
        return "rejected"  # the page parser counts these as "shape"


def check_page(items: list[Any], contacts: list[Contact], rejections: list[Rejection],
               parse_one: Callable[[Any], Contact | None],
               left_at_page: Callable[[dict[str, Any]], bool] = lambda item: False) -> None:
    outcomes = []
    for item in items:
        if isinstance(item, dict) and left_at_page(item):
            outcomes.append("later")
        else:
            outcomes.append(single_outcome(parse_one, item))
    later = outcomes.count("later")
    assert len(contacts) + len(rejections) + later == len(items)
    assert len(contacts) == outcomes.count("contact")
    check_rejections(rejections, API_REASONS, range(1, len(items) + 1))
    assert sorted(r.line for r in rejections) == [
        i for i, outcome in enumerate(outcomes, start=1) if outcome == "rejected"]
    for contact in contacts:
        check_contact(contact, VENDOR_QUEUES)
    check_stored(contacts, "UTC")


def wrapped(items: st.SearchStrategy[Any], key: str, extra: dict[str, Any]) -> Any:
    page = st.fixed_dictionaries({key: st.lists(items, max_size=8), **extra})
    return st.one_of(page, page, page, JSON)


@FUZZ
@given(data=wrapped(TWILIO_CALL, "calls", {"next_page_uri": st.sampled_from([None, "/next"])}))
def test_twilio_calls_page(data: Any) -> None:
    items = page_items(data, "calls")
    if items is None:
        with pytest.raises(ShapeError):
            twilio.parse_calls_page(data, TWILIO, "USD", NOW)
        return
    parsed = twilio.parse_calls_page(data, TWILIO, "USD", NOW)
    check_page(items, parsed.contacts, parsed.rejections,
               lambda item: twilio.parse_call(item, TWILIO, "USD", NOW),
               lambda item: bool(item.get("parent_call_sid")))


@FUZZ
@given(data=wrapped(ZENDESK_TICKET, "tickets", {
    "end_of_stream": st.booleans(), "after_cursor": st.sampled_from([None, "c1"]),
    "metric_sets": st.lists(st.fixed_dictionaries({"ticket_id": JSON_LEAF}), max_size=2)}))
def test_zendesk_export_page(data: Any) -> None:
    items = page_items(data, "tickets")
    if items is None:
        with pytest.raises(ShapeError):
            zendesk.parse_export_page(data, ZENDESK)
        return
    contacts, rejections, *_ = zendesk.parse_export_page(data, ZENDESK)
    check_page(items, contacts, rejections,
               lambda item: zendesk.parse_ticket(item, ZENDESK, None))


@FUZZ
@given(data=wrapped(AIRCALL_CALL, "calls", {
    "meta": st.fixed_dictionaries({"total": JSON_LEAF, "next_page_link": JSON_LEAF})}))
def test_aircall_calls_page(data: Any) -> None:
    items = page_items(data, "calls")
    if items is None or not isinstance(data.get("meta"), dict):
        with pytest.raises(ShapeError):
            aircall.parse_calls_page(data, AIRCALL, NOW)
        return
    parsed = aircall.parse_calls_page(data, AIRCALL, NOW)

    def parse_one(item: dict[str, Any]) -> Contact | None:
        """Not "done": held back while young; an unusable start or too old is rejected."""
        contact = aircall.parse_call(item, AIRCALL)
        if contact is None:
            started = aircall.unix_seconds(item.get("started_at"), "started_at")
            if not NOW - started < AIRCALL.pending_max_age.total_seconds():
                raise FieldError("status", "call never finished")
        return contact

    check_page(items, parsed.contacts, parsed.rejections, parse_one)


@FUZZ
@given(data=st.one_of(st.lists(LIVEAGENT_CALL, max_size=8), JSON), calls=st.booleans())
def test_liveagent_page(data: Any, calls: bool) -> None:
    parse = liveagent.parse_call if calls else liveagent.parse_ticket
    items = page_items(data, None)
    if items is None:
        with pytest.raises(ShapeError):
            liveagent.parse_page(data, parse, LIVEAGENT, NOW)
        return
    contacts, rejections, *_ = liveagent.parse_page(data, parse, LIVEAGENT, NOW)
    check_page(items, contacts, rejections, lambda item: parse(item, LIVEAGENT, NOW))


@FUZZ
@given(data=st.one_of(st.lists(LIVEAGENT_TICKET, max_size=8), JSON))
def test_liveagent_tickets_page(data: Any) -> None:
    items = page_items(data, None)
    if items is None:
        with pytest.raises(ShapeError):
            liveagent.parse_page(data, liveagent.parse_ticket, LIVEAGENT, NOW)
        return
    contacts, rejections, *_ = liveagent.parse_page(data, liveagent.parse_ticket,
                                                      LIVEAGENT, NOW)
    check_page(items, contacts, rejections,
               lambda item: liveagent.parse_ticket(item, LIVEAGENT, NOW))


@FUZZ
@given(data=st.one_of(st.lists(FRESHDESK_TICKET, max_size=8), JSON))
def test_freshdesk_tickets_page(data: Any) -> None:
    items = page_items(data, None)
    if items is None:
        with pytest.raises(ShapeError):
            freshdesk.parse_tickets_page(data, FRESHDESK)
        return
    contacts, rejections, *_ = freshdesk.parse_tickets_page(data, FRESHDESK)
    check_page(items, contacts, rejections, lambda item: freshdesk.parse_ticket(item, FRESHDESK))


UNHASHABLE_PAGES: list[tuple[str, Callable[[], Any], list[str]]] = [
    ("twilio status", lambda: twilio.parse_calls_page(
        {"calls": [{"sid": "CA1", "status": []}]}, TWILIO, "USD", NOW), ["shape"]),
    ("zendesk id", lambda: zendesk.parse_export_page(
        {"tickets": [{"id": []}], "end_of_stream": True, "after_cursor": None}, ZENDESK),
     ["shape"]),
    # A metric set with an unusable ticket_id belongs to no ticket: it is skipped.
    ("zendesk metric ticket_id", lambda: zendesk.parse_export_page(
        {"tickets": [], "end_of_stream": True, "after_cursor": None,
         "metric_sets": [{"ticket_id": {}}]}, ZENDESK), []),
    ("liveagent call type", lambda: liveagent.parse_page(
        [{"id": "1", "type": []}], liveagent.parse_call, LIVEAGENT, NOW), ["direction"]),
    ("liveagent ticket status", lambda: liveagent.parse_page(
        [{"id": "1", "status": []}], liveagent.parse_ticket, LIVEAGENT, NOW), ["shape"]),
    ("freshdesk source", lambda: freshdesk.parse_tickets_page(
        [{"id": 1, "status": 4, "created_at": "2026-03-10T14:00:00Z", "source": []}],
        FRESHDESK), ["shape"]),
]


def rejections_in(result: Any) -> list[Rejection]:
    """The rejections in whatever a page parser returns (a tuple, a parsed-page object)."""
    if isinstance(result, list):
        return [r for r in result if isinstance(r, Rejection)]
    if isinstance(result, tuple):
        return [r for part in result for r in rejections_in(part)]
    if hasattr(result, "__dict__"):
        return rejections_in(tuple(vars(result).values()))
    return []


@pytest.mark.parametrize(("case", "reasons"), [(c, r) for _, c, r in UNHASHABLE_PAGES],
                         ids=[name for name, _, _ in UNHASHABLE_PAGES])
def test_vendor_parsers_survive_unhashable_fields(
    case: Callable[[], Any], reasons: list[str]
) -> None:
    # One item of the wrong JSON type is one counted rejection, never an exception.
    assert [r.reason for r in rejections_in(case())] == reasons


NON_FINITE_TIMES: list[tuple[str, Callable[[], Contact | None]]] = [
    ("aircall started_at NaN", lambda: aircall.parse_call(
        {"id": 1, "status": "done", "direction": "inbound", "started_at": math.nan,
         "ended_at": math.nan}, AIRCALL)),
    ("generic webhook start NaN", lambda: parse_event(
        json.loads('{"id": "e1", "start": NaN}'), GenericWebhookSettings(
            name="crm", adapter="generic_webhook", webhook_secret=SECRET))),
]


@pytest.mark.parametrize("case", [c for _, c in NON_FINITE_TIMES],
                         ids=[name for name, _ in NON_FINITE_TIMES])
def test_vendor_parsers_reject_non_finite_times(case: Callable[[], Contact | None]) -> None:
    with pytest.raises(FieldError) as info:
        case()
    assert info.value.reason == "date"


# -- webhook decoders, through the receiver with valid signatures ----------------------------
HOOK = "http://127.0.0.1:9878/webhooks/"
AIRCALL_TOKEN = "45XXYYZZa08aircall"
GENERIC_EVENT = record({
    "id": st.one_of(st.uuids().map(str), JSON_LEAF),
    "channel": st.sampled_from([*CHANNELS_KNOWN, "fax"]),
    "direction": st.sampled_from(["inbound", "outbound", "x"]),
    "start": st.one_of(ISO_Z, UNIX), "handled": JSON_LEAF,
    "handle_seconds": DURATION, "talk_seconds": DURATION, "billable_seconds": DURATION,
    "price": st.one_of(DURATION, st.floats()), "queue": JSON_LEAF, "outcome": JSON_LEAF,
    "customer": JSON_LEAF, "reason": JSON_LEAF,
})
TWILIO_FORM = st.lists(st.tuples(
    st.sampled_from(["AccountSid", "CallSid", "CallStatus", "CallDuration", "Direction", "From",
                     "To", "Timestamp", "ParentCallSid", "x"]),
    st.one_of(st.sampled_from(["AC" + "0" * 32, "CA1", "completed", "busy", "ringing",
                               "inbound", "outbound-api", "42", "-1", "1e999", ""]),
              RFC2822, SMALL_TEXT)), max_size=9)
OUTCOMES = ("accepted", "duplicate", "ignored", "rejected")


@pytest.fixture(scope="module")
def receivers(tmp_path_factory: pytest.TempPathFactory) -> WebhookReceiver:
    tw = twilio.TwilioAdapter(TWILIO.model_validate(
        {**TWILIO.model_dump(), "auth_token": "t", "webhook": True}), CONTEXT)
    ac = aircall.AircallAdapter(AIRCALL.model_validate(
        {**AIRCALL.model_dump(), "api_token": "t", "webhook": True,
         "webhook_token": AIRCALL_TOKEN}), CONTEXT)
    gw = GenericWebhookAdapter(GenericWebhookSettings(
        name="crm", adapter="generic_webhook", webhook_secret=SECRET,
        queues={"Support Team": "support"}), CONTEXT)
    health = HealthState()
    health.configure({"tw": 60, "ac": 60, "crm": 60})
    store = SqliteStore(tmp_path_factory.mktemp("hooks") / "state.db", ZoneInfo("UTC"))
    return WebhookReceiver(Settings(), [tw, ac, gw], store, health, clock=lambda: NOW)


def post(receiver: WebhookReceiver, kind: str, source: str, body: bytes,
         headers: dict[str, str]) -> tuple[int, bytes]:
    url = HOOK + f"{kind}/{source}"
    status, _, answer = receiver.handle("POST", f"/webhooks/{kind}/{source}", headers, body, url)
    return status, answer


def check_hook(status: int, answer: bytes) -> None:
    """200 accepted/duplicate/ignored, or 400 rejected with a reason; never 5xx, never 401."""
    assert (status, answer.split(b":")[0].strip()) in {
        (200, b"accepted"), (200, b"duplicate"), (200, b"ignored"), (400, b"rejected")}, answer


@FUZZ
@given(event=st.one_of(GENERIC_EVENT, JSON), raw=st.one_of(st.none(), st.binary(max_size=50)))
def test_generic_webhook(receivers: WebhookReceiver, event: Any, raw: bytes | None) -> None:
    body = raw if raw is not None else json.dumps(event).encode()
    stamp = str(int(NOW))
    headers = {"X-Contact-Cost-Timestamp": stamp,
               "X-Contact-Cost-Signature": generic_signature(SECRET, stamp, body)}
    check_hook(*post(receivers, "generic", "crm", body, headers))


@FUZZ
@given(data=st.one_of(AIRCALL_CALL, JSON), event=st.sampled_from(["call.ended", "call.created"]),
       resource=st.sampled_from(["call", "user"]))
def test_aircall_webhook(receivers: WebhookReceiver, data: Any, event: str, resource: str) -> None:
    body = json.dumps({"resource": resource, "event": event, "token": AIRCALL_TOKEN,
                       "data": data}).encode()
    check_hook(*post(receivers, "aircall", "ac", body, {}))


@FUZZ
@given(params=TWILIO_FORM)
def test_twilio_status_callback(receivers: WebhookReceiver, params: list[tuple[str, str]]) -> None:
    body = urlencode(params).encode()
    url = HOOK + "twilio/tw"
    signed = parse_qsl(body.decode(), keep_blank_values=True)  # what the receiver will see
    headers = {"X-Twilio-Signature": twilio_signature("t", url, signed)}
    check_hook(*post(receivers, "twilio", "tw", body, headers))


def test_webhook_outcomes_add_up(receivers: WebhookReceiver) -> None:
    """Runs after the webhook fuzzers (same module receiver): every request was counted once."""
    text = receivers.health.body.decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("contactcenter_webhook_requests_total{"):
            status = line.split('status="')[1].split('"')[0]
            counts[status] = counts.get(status, 0) + float(line.rsplit(" ", 1)[1])
    assert set(counts) <= set(OUTCOMES), counts
    stored = receivers.store.counts()  # type: ignore[attr-defined]
    assert sum(stored.values()) == counts.get("accepted", 0)


"""Webhook receiver: signatures, redelivery, size and age limits, routes; and one real POST."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from adapters.aircall import AircallAdapter, AircallSettings
from adapters.base import Adapter, Contact, FieldError, WebhookRefused, WebhookRequest
from adapters.fields import json_depth_within
from adapters.generic_webhook import (
    GenericWebhookAdapter,
    GenericWebhookSettings,
    generic_signature,
)
from adapters.twilio import (
    TwilioAdapter,
    TwilioSettings,
    twilio_signature,
    twilio_signature_valid,
)
from collector.config import Settings
from collector.health import HealthState
from collector.webhooks import WebhookReceiver
from tests.conftest import parse_exposition, wait_for
from tests.vendor_support import CONTEXT, fixture_text, new_store, stored_ids

SID = "AC00000000000000000000000000000001"
TOKEN = "twilio-auth-token"
HOOK = "http://127.0.0.1:9878/webhooks/twilio/twilio-main"
NOW = 1773133700.0
SECRET = "generic-shared-secret"


def test_twilio_published_test_vector() -> None:
    # The worked example in Twilio's "Webhooks security" documentation.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+12349013030"), ("Digits", "1234"),
              ("From", "+12349013030"), ("To", "+18005551212")]
    assert twilio_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert twilio_signature_valid("12345", url, list(reversed(params)),
                                  "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    tampered = [*params[:2], ("Digits", "9999"), *params[3:]]
    assert not twilio_signature_valid("12345", url, tampered, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not twilio_signature_valid("12345", url, params, None)


def adapters() -> list[Adapter]:
    return [
        TwilioAdapter(TwilioSettings(
            name="twilio-main", adapter="twilio", account_sid=SID, auth_token=TOKEN,
            webhook=True, queues={"+14155550199": "support"}), CONTEXT),
        TwilioAdapter(TwilioSettings(
            name="twilio-quiet", adapter="twilio", account_sid=SID, auth_token=TOKEN), CONTEXT),
        AircallAdapter(AircallSettings(
            name="aircall-eu", adapter="aircall", api_id="i", api_token="t", webhook=True,
            webhook_token="45XXYYZZa08aircall", queues={"Support FR": "support"},
            outcomes={"Sale": "sale"}), CONTEXT),
        GenericWebhookAdapter(GenericWebhookSettings(
            name="crm", adapter="generic_webhook", webhook_secret=SECRET,
            queues={"Support Team": "support"}, outcomes={"won": "sale"}), CONTEXT),
    ]


@pytest.fixture
def receiver(tmp_path: Path) -> WebhookReceiver:
    health = HealthState()
    health.configure({"twilio-main": 60, "twilio-quiet": 60, "aircall-eu": 60, "crm": 60})
    return WebhookReceiver(Settings(), adapters(), new_store(tmp_path), health,
                           max_body_bytes=4096, clock=lambda: NOW)


def webhook_counts(receiver: WebhookReceiver) -> dict[tuple[str, str], float]:
    values = parse_exposition(receiver.health.body.decode())
    return {
        (dict(labels)["source"], dict(labels)["status"]): value
        for (name, labels), value in values.items()
        if name == "contactcenter_webhook_requests_total"
    }


# -- Twilio ------------------------------------------------------------------------------------
CALLBACK = [
    ("AccountSid", SID), ("ApiVersion", "2010-04-01"),
    ("CallSid", "CA00000000000000000000000000000077"), ("CallStatus", "completed"),
    ("CallDuration", "42"), ("Direction", "inbound"), ("From", "+14155550123"),
    ("To", "+14155550199"), ("Timestamp", "Tue, 10 Mar 2026 14:00:42 +0000"),
    ("SequenceNumber", "3"), ("CallbackSource", "call-progress-events"),
]


def twilio_post(receiver: WebhookReceiver, params: list[tuple[str, str]], url: str = HOOK,
                signed_url: str | None = None, token: str = TOKEN) -> tuple[int, str, bytes]:
    body = urlencode(params).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Twilio-Signature": twilio_signature(token, signed_url or url, params)}
    path = "/" + url.split("/", 3)[3]
    return receiver.handle("POST", path, headers, body, url)


def test_twilio_callback_is_stored_once_and_redelivery_is_a_duplicate(
    receiver: WebhookReceiver,
) -> None:
    assert twilio_post(receiver, CALLBACK)[:1] == (200,)
    status, _, answer = twilio_post(receiver, CALLBACK)
    assert (status, answer) == (200, b"duplicate\n")
    assert stored_ids(receiver.store, "twilio-main") == ["CA00000000000000000000000000000077"]
    counts = webhook_counts(receiver)
    assert counts[("twilio-main", "accepted")] == 1 and counts[("twilio-main", "duplicate")] == 1
    sources = receiver.health.sources()
    assert sources["twilio-main"].records == 1
    assert sources["twilio-main"].duplicates == 1  # contactcenter_source_duplicate_records


def test_twilio_invalid_or_missing_signature_is_401_and_never_stored(
    receiver: WebhookReceiver,
) -> None:
    assert twilio_post(receiver, CALLBACK, token="wrong-token")[0] == 401
    tampered = [(k, "999" if k == "CallDuration" else v) for k, v in CALLBACK]
    body = urlencode(tampered).encode()
    good = twilio_signature(TOKEN, HOOK, CALLBACK)
    path = "/webhooks/twilio/twilio-main"
    assert receiver.handle("POST", path, {"X-Twilio-Signature": good}, body, HOOK)[0] == 401
    assert receiver.handle("POST", path, {}, urlencode(CALLBACK).encode(), HOOK)[0] == 401
    assert stored_ids(receiver.store, "twilio-main") == []
    assert webhook_counts(receiver)[("twilio-main", "unauthorized")] == 3


def test_twilio_public_url_is_what_the_signature_covers(tmp_path: Path) -> None:
    public = "https://hooks.example.com/cc/webhooks/twilio/twilio-main?site=oslo"
    source = TwilioAdapter(TwilioSettings(name="twilio-main", adapter="twilio", account_sid=SID,
                                          auth_token=TOKEN, webhook=True, public_url=public),
                           CONTEXT)
    health = HealthState()
    health.configure({"twilio-main": 60})
    receiver = WebhookReceiver(Settings(), [source], new_store(tmp_path), health)
    status, _, _ = twilio_post(receiver, CALLBACK, url=HOOK, signed_url=public)
    assert status == 200
    assert twilio_post(receiver, CALLBACK, url=HOOK)[0] == 401  # signed for the inner URL


def test_twilio_progress_callbacks_are_ignored_until_the_call_is_final(
    receiver: WebhookReceiver,
) -> None:
    ringing = [(k, "ringing" if k == "CallStatus" else v) for k, v in CALLBACK]
    assert twilio_post(receiver, ringing)[2] == b"ignored\n"
    assert stored_ids(receiver.store, "twilio-main") == []


# -- Aircall -----------------------------------------------------------------------------------
def aircall_post(receiver: WebhookReceiver, body: bytes) -> tuple[int, str, bytes]:
    return receiver.handle("POST", "/webhooks/aircall/aircall-eu",
                           {"Content-Type": "application/json"}, body,
                           "https://hooks.example.com/webhooks/aircall/aircall-eu")


def test_aircall_call_ended_with_the_token_is_stored_once(receiver: WebhookReceiver) -> None:
    body = fixture_text("aircall", "webhook_call_ended.json").encode()
    assert aircall_post(receiver, body)[0] == 200
    assert aircall_post(receiver, body)[2] == b"duplicate\n"
    assert stored_ids(receiver.store, "aircall-eu") == ["812345001"]
    counts = webhook_counts(receiver)
    assert counts[("aircall-eu", "accepted")] == 1 and counts[("aircall-eu", "duplicate")] == 1


def test_aircall_wrong_token_is_401_and_other_events_are_ignored(
    receiver: WebhookReceiver,
) -> None:
    event = json.loads(fixture_text("aircall", "webhook_call_ended.json"))
    assert aircall_post(receiver, json.dumps({**event, "token": "guess"}).encode())[0] == 401
    assert aircall_post(receiver, json.dumps({k: v for k, v in event.items()
                                              if k != "token"}).encode())[0] == 401
    assert aircall_post(receiver, b"not json")[0] == 401
    answered = {**event, "event": "call.answered"}
    assert aircall_post(receiver, json.dumps(answered).encode())[2] == b"ignored\n"
    assert stored_ids(receiver.store, "aircall-eu") == []
    assert webhook_counts(receiver)[("aircall-eu", "unauthorized")] == 3


# -- generic -----------------------------------------------------------------------------------
EVENT = {"id": "evt-1001", "channel": "chat", "direction": "inbound", "queue": "Support Team",
         "start": "2026-03-10T09:00:00Z", "handled": True, "handle_seconds": 300,
         "talk_seconds": 240, "outcome": "won", "customer": "alice@example.com", "price": 0.05}


def generic_post(receiver: WebhookReceiver, event: object, stamp: float = NOW,
                 secret: str = SECRET, source: str = "crm") -> tuple[int, str, bytes]:
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    headers = {"X-Contact-Cost-Timestamp": str(int(stamp)),
               "X-Contact-Cost-Signature": generic_signature(secret, str(int(stamp)), body)}
    return receiver.handle("POST", f"/webhooks/generic/{source}", headers, body,
                           f"http://127.0.0.1/webhooks/generic/{source}")


def test_generic_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert generic_signature("k", "1700000000", b"{}") == "sha256=" + expected


def test_generic_event_is_mapped_through_configured_labels(receiver: WebhookReceiver) -> None:
    assert generic_post(receiver, EVENT)[0] == 200
    assert generic_post(receiver, EVENT)[2] == b"duplicate\n"
    row = receiver.store._db.execute(  # the stored, normalised row
        "SELECT channel, queue, outcome, handle_seconds, price, customer FROM contacts"
    ).fetchone()
    assert row[:5] == ("chat", "support", "sale", 300.0, 0.05)
    assert row[5] and "alice" not in row[5]
    free_text = {**EVENT, "id": "evt-1002", "queue": "Whatever the CRM says", "channel": "fax"}
    assert generic_post(receiver, free_text)[0] == 200
    labels = receiver.store._db.execute(
        "SELECT channel, queue FROM contacts WHERE id = 'evt-1002'").fetchone()
    assert labels == ("other", "other")


def test_generic_stale_or_future_timestamp_is_refused(receiver: WebhookReceiver) -> None:
    assert generic_post(receiver, EVENT, stamp=NOW - 301)[0] == 401
    assert generic_post(receiver, EVENT, stamp=NOW + 301)[0] == 401
    assert generic_post(receiver, EVENT, stamp=NOW - 299)[0] == 200
    assert webhook_counts(receiver)[("crm", "stale")] == 2


def test_generic_bad_signature_is_401(receiver: WebhookReceiver) -> None:
    assert generic_post(receiver, EVENT, secret="not-the-secret")[0] == 401
    body = json.dumps(EVENT).encode()
    assert receiver.handle("POST", "/webhooks/generic/crm", {}, body, "http://x/")[0] == 401
    assert stored_ids(receiver.store, "crm") == []


def test_signed_but_malformed_event_is_a_counted_rejection(receiver: WebhookReceiver) -> None:
    status, _, answer = generic_post(receiver, {**EVENT, "start": "yesterday"})
    assert (status, answer) == (400, b"rejected: date\n")
    assert generic_post(receiver, b"[1, 2")[0] == 400
    rejected = receiver.health.sources()["crm"].rejected
    assert rejected == {"date": 1, "shape": 1}


# -- common ------------------------------------------------------------------------------------
def test_body_over_the_limit_is_413(receiver: WebhookReceiver) -> None:
    big = {**EVENT, "padding": "x" * 5000}
    assert generic_post(receiver, big)[0] == 413
    headers = {"Content-Length": "999999"}
    assert receiver.handle("POST", "/webhooks/generic/crm", headers, b"{}", "http://x/")[0] == 413
    assert stored_ids(receiver.store, "crm") == []
    assert webhook_counts(receiver)[("crm", "too_large")] == 2


@pytest.mark.parametrize("path", [
    "/webhooks/generic/nobody",  # unknown source
    "/webhooks/twilio/twilio-quiet",  # source without webhook = true
    "/webhooks/twilio/crm",  # wrong kind for the source
    "/webhooks/generic/crm/extra",
    "/webhooks/",
])
def test_unknown_or_disabled_webhooks_are_404(receiver: WebhookReceiver, path: str) -> None:
    assert receiver.handle("POST", path, {}, b"{}", "http://x" + path)[0] == 404


def test_only_post_is_accepted(receiver: WebhookReceiver) -> None:
    assert receiver.handle("GET", "/webhooks/generic/crm", {}, b"", "http://x/")[0] == 405


def test_store_failure_is_503_so_the_vendor_retries(receiver: WebhookReceiver) -> None:
    receiver.store.close()
    assert generic_post(receiver, EVENT)[0] == 503
    assert webhook_counts(receiver)[("crm", "error")] == 1


# -- over real HTTP, through the running exporter ---------------------------------------------
def test_signed_event_posted_to_the_running_exporter_shows_in_the_gauges(
    tmp_path: Path, start_exporter: Callable[..., Any]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'currency = "USD"\ntimezone = "UTC"\ninterval = "1s"\n'
        f'store = "{tmp_path / "state.db"}"\n\n'
        '[[sources]]\nname = "crm"\nadapter = "generic_webhook"\n'
        f'webhook_secret = "{SECRET}"\nqueues = {{ "Support Team" = "support" }}\n'
    )
    exporter = start_exporter(config)
    event = {**EVENT, "start": time.time() - 60}
    body = json.dumps(event).encode()

    def post(payload: bytes, secret: str = SECRET) -> int:
        stamp = str(int(time.time()))
        request = urllib.request.Request(
            exporter.url + "/webhooks/generic/crm", data=payload, method="POST",
            headers={"Content-Type": "application/json", "X-Contact-Cost-Timestamp": stamp,
                     "X-Contact-Cost-Signature": generic_signature(secret, stamp, payload)})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert post(body) == 200
    assert post(body) == 200  # redelivery
    assert post(body, secret="forged") == 401

    def contacts() -> float | None:
        values = parse_exposition(exporter.metrics())
        key = ("contactcenter_contacts", frozenset({
            "period": "day", "window": "current", "channel": "chat",
            "direction": "inbound", "queue": "support"}.items()))
        return values.get(key)

    assert wait_for(contacts, timeout=20, what="the webhook contact in the gauges") == 1
    values = parse_exposition(exporter.metrics())
    for status, count in (("accepted", 1), ("duplicate", 1), ("unauthorized", 1)):
        key = ("contactcenter_webhook_requests_total",
               frozenset({"source": "crm", "status": status}.items()))
        assert values[key] == count


# -- hostile bodies and headers (issue 10, items 4 and 5) ------------------------------------
def test_aircall_body_nested_too_deep_is_401_not_a_recursion_error(
    receiver: WebhookReceiver,
) -> None:
    # 200,000 "[" made json.loads raise RecursionError before the token was checked. The
    # depth pre-scan refuses it; the sender is unknown, so it is unauthorized, not rejected.
    receiver.max_body_bytes = 1_048_576  # the default cap: the body gets to the adapter
    assert aircall_post(receiver, b"[" * 200_000)[0] == 401
    token_first = b'{"token": "45XXYYZZa08aircall", "data": ' + b"[" * 200_000
    assert aircall_post(receiver, token_first)[0] == 401  # right token, undecodable body
    assert webhook_counts(receiver)[("aircall-eu", "unauthorized")] == 2
    assert receiver.health.sources()["aircall-eu"].rejected == {}


def test_aircall_token_that_cannot_be_read_is_401_never_a_rejected_record(
    receiver: WebhookReceiver,
) -> None:
    # A lone surrogate decodes from JSON ("\udc80") but is no UTF-8 text: it was counted
    # as a rejected record without any authentication. Now: 401, unauthorized.
    event = json.loads(fixture_text("aircall", "webhook_call_ended.json"))
    for token in ('"\\udc80"', "12345", "null", '["45XXYYZZa08aircall"]'):
        body = json.dumps({**event, "token": "@"}).replace('"@"', token).encode()
        assert aircall_post(receiver, body)[0] == 401, token
    assert aircall_post(receiver, b"\xff\xfe{}")[0] == 401  # not UTF-8 at all
    assert webhook_counts(receiver)[("aircall-eu", "unauthorized")] == 5
    assert receiver.health.sources()["aircall-eu"].rejected == {}
    assert stored_ids(receiver.store, "aircall-eu") == []


def test_aircall_verified_but_unusable_call_is_one_rejected_record(
    receiver: WebhookReceiver,
) -> None:
    # Only content from a verified sender can be a rejected record.
    event = json.loads(fixture_text("aircall", "webhook_call_ended.json"))
    bad = {**event, "data": {**event["data"], "direction": "sideways"}}
    assert aircall_post(receiver, json.dumps(bad).encode())[:3:2] == (400,
                                                                     b"rejected: direction\n")
    assert receiver.health.sources()["aircall-eu"].rejected == {"direction": 1}


def test_generic_signed_body_nested_too_deep_is_a_shape_rejection(
    receiver: WebhookReceiver,
) -> None:
    # Signed by the shared secret, so the sender is known: a rejected record, reason shape.
    receiver.max_body_bytes = 1_048_576
    assert generic_post(receiver, b"[" * 200_000)[:3:2] == (400, b"rejected: shape\n")
    assert receiver.health.sources()["crm"].rejected == {"shape": 1}


@pytest.mark.parametrize("length", ["\u00b2", "\u0663", "1_0", "-1", "0x10", "", "+5"])
def test_content_length_must_be_ascii_digits(receiver: WebhookReceiver, length: str) -> None:
    # "²".isdigit() is True and int("٣") is 3: both used to pass the size check.
    body = json.dumps(EVENT).encode()
    stamp = str(int(NOW))
    headers = {"Content-Length": length, "X-Contact-Cost-Timestamp": stamp,
               "X-Contact-Cost-Signature": generic_signature(SECRET, stamp, body)}
    status, _, _ = receiver.handle("POST", "/webhooks/generic/crm", headers, body, "http://x/")
    assert status == 400
    assert webhook_counts(receiver)[("crm", "bad_request")] == 1
    assert stored_ids(receiver.store, "crm") == []


def test_header_names_are_matched_without_regard_to_case(receiver: WebhookReceiver) -> None:
    body = json.dumps(EVENT).encode()
    stamp = str(int(NOW))
    headers = {"x-contact-cost-timestamp": stamp,
               "X-CONTACT-COST-SIGNATURE": generic_signature(SECRET, stamp, body),
               "content-length": str(len(body))}
    assert receiver.handle("POST", "/webhooks/generic/crm", headers, body, "http://x/")[0] == 200


# -- the router knows no vendor: any adapter with webhook_kind and receive() ------------------
class _Scripted(GenericWebhookAdapter):
    """An adapter whose receive() raises what the test says."""

    webhook_kind = "scripted"
    raises: Exception | None = None

    def receive(self, request: WebhookRequest, now: float) -> Contact | None:
        assert request.headers["x-any-case"] == "yes"  # Headers: case-insensitive
        assert request.body == b"{}" and now == NOW
        if self.raises is not None:
            raise self.raises
        return None


@pytest.fixture
def scripted(tmp_path: Path) -> tuple[WebhookReceiver, _Scripted]:
    adapter = _Scripted(GenericWebhookSettings(name="s1", adapter="x", webhook_secret="k"),
                        CONTEXT)
    health = HealthState()
    health.configure({"s1": 60})
    return WebhookReceiver(Settings(), [adapter], new_store(tmp_path), health,
                           clock=lambda: NOW), adapter


@pytest.mark.parametrize(("raised", "status", "counted"), [
    (None, 200, "ignored"),
    (WebhookRefused(401, "unauthorized"), 401, "unauthorized"),
    (WebhookRefused(403, "Not A Bounded Reason!"), 403, "refused"),  # free text is not a label
    (WebhookRefused(200, "stale"), 400, "stale"),  # a refusal is never a success
    (FieldError("date", "start missing"), 400, "rejected"),
    (RuntimeError("a bug in the adapter"), 500, "error"),  # the exporter keeps serving
])
def test_router_answers_and_counts_what_receive_raises(
    scripted: tuple[WebhookReceiver, _Scripted], raised: Exception | None, status: int,
    counted: str,
) -> None:
    receiver, adapter = scripted
    adapter.raises = raised
    answer = receiver.handle("POST", "/webhooks/scripted/s1", {"X-Any-Case": "yes"}, b"{}",
                             "http://x/webhooks/scripted/s1")
    assert answer[0] == status
    assert webhook_counts(receiver) == {("s1", counted): 1}
    rejected = receiver.health.sources()["s1"].rejected
    assert rejected == ({"date": 1} if counted == "rejected" else {})


@pytest.mark.parametrize(("body", "within"), [
    (b'["a\\"]", {"b": [1, "]]]]"]}]', True),  # brackets inside strings do not count
    (b"[" * 32 + b"]" * 32, True),  # 32 levels: the limit
    (b"[" * 33 + b"]" * 33, False),
    (b'{"token": "abc', False),  # a string never closed
    (b'"\\' * 300_000, False),  # quotes and escapes: one linear pass, not one per quote
])
def test_json_depth_prescan(body: bytes, within: bool) -> None:
    started = time.monotonic()
    assert json_depth_within(body, 32) is within
    assert time.monotonic() - started < 5  # the quadratic scan took minutes on the last case


def test_aircall_body_over_its_own_cap_is_401_before_decoding(receiver: WebhookReceiver) -> None:
    # The token is inside the body, so the body is decoded before the sender is known:
    # at most 256 KiB of it (a call.ended event is a few KiB).
    receiver.max_body_bytes = 1_048_576
    event = json.loads(fixture_text("aircall", "webhook_call_ended.json"))
    big = json.dumps({**event, "padding": "x" * 300_000}).encode()
    assert aircall_post(receiver, big)[0] == 401
    assert webhook_counts(receiver)[("aircall-eu", "unauthorized")] == 1


def test_generic_timestamp_of_thousands_of_digits_is_401_not_an_error(
    receiver: WebhookReceiver,
) -> None:
    # int() raises ValueError past 4300 digits: signed or not, such a stamp is refused.
    body = json.dumps(EVENT).encode()
    stamp = "9" * 5000
    headers = {"X-Contact-Cost-Timestamp": stamp,
               "X-Contact-Cost-Signature": generic_signature(SECRET, stamp, body)}
    assert receiver.handle("POST", "/webhooks/generic/crm", headers, body, "http://x/")[0] == 401
    assert webhook_counts(receiver) == {("crm", "unauthorized"): 1}

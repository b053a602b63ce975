"""Standard Webhooks signing, checked by the `standardwebhooks` package's own verifier."""

from __future__ import annotations

import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from leadpulse.streams.delivery.signing import SecretError, new_secret, secret_key, sign_headers

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER = new_secret()
BODY = b'{"type":"lead.handoff","timestamp":"2026-12-01T10:00:00Z","data":{"lead_id":"l-1"}}'


def test_a_signature_verifies_with_standardwebhooks() -> None:
    now = int(time.time())
    headers = sign_headers([secret_key(SECRET)], "h-1", now, BODY)
    assert headers["webhook-id"] == "h-1"
    assert headers["webhook-timestamp"] == str(now)
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(BODY, headers) == {
        "type": "lead.handoff",
        "timestamp": "2026-12-01T10:00:00Z",
        "data": {"lead_id": "l-1"},
    }


def test_every_secret_of_a_rotation_verifies() -> None:
    now = int(time.time())
    headers = sign_headers([secret_key(OTHER), secret_key(SECRET)], "h-2", now, BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(SECRET).verify(BODY, headers)
    Webhook(OTHER).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-id": "h-other"},
        {"webhook-timestamp": str(int(time.time()) - 1)},
    ],
)
def test_a_changed_id_or_timestamp_does_not_verify(change: dict[str, str]) -> None:
    headers = sign_headers([secret_key(SECRET)], "h-3", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, {**headers, **change})


def test_a_changed_body_does_not_verify() -> None:
    headers = sign_headers([secret_key(SECRET)], "h-4", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY.replace(b"l-1", b"l-2"), headers)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with 'whsec_'"),
        ("whsec_not base64!", "base64"),
        ("whsec_c2hvcnQ=", "at least 16 bytes"),
    ],
)
def test_malformed_secrets_are_refused_without_showing_them(secret: str, problem: str) -> None:
    with pytest.raises(SecretError, match=problem) as info:
        secret_key(secret)
    assert secret.removeprefix("whsec_") not in str(info.value)

"""Notifier settings fail at start, naming what is wrong, rather than on every message."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.notifier.settings import NotifierSettings


def load(**env: str) -> NotifierSettings:
    return NotifierSettings(**env)  # type: ignore[arg-type]


def test_defaults_log_texts_and_add_an_sms_for_fraud() -> None:
    settings = load()
    assert not settings.twilio_configured
    assert settings.channel_rules == {"fraud_report": ["sms"]}
    assert (settings.send_lease_seconds, settings.max_concurrent_sends) == (60, 40)
    assert (settings.prefetch, settings.db_pool_size) == (100, 15)
    assert settings.smtp_validate_certs and settings.smtp_ca_file is None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TWILIO_ACCOUNT_SID": "AC1"}, "TWILIO_AUTH_TOKEN"),
        ({"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t"}, "TWILIO_FROM_NUMBER"),
        ({"TWILIO_FROM_NUMBER": "4155550100"}, "international form"),
        ({"MAIL_FROM": "Support <support@company.com>\r\nBcc: x@y.com"}, "email address"),
        ({"SMTP_STARTTLS": "true", "SMTP_TLS": "true"}, "SMTP_TLS"),
        ({"SMTP_CA_FILE": "/nonexistent/ca.pem"}, "SMTP_CA_FILE"),
    ],
)
def test_incomplete_or_malformed_settings_refuse_to_load(env: dict[str, str], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        load(**env)


def test_twilio_numbers_are_kept_as_e164() -> None:
    settings = load(
        TWILIO_ACCOUNT_SID="AC1",
        TWILIO_AUTH_TOKEN="t",
        TWILIO_FROM_NUMBER="+1 415 555 0100",
    )
    assert settings.twilio_configured and settings.twilio_from_number == "+14155550100"

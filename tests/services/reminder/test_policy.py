"""Follow-up policy: the shortest applicable delay wins; all of it configurable."""

from __future__ import annotations

import pytest

from services.reminder.settings import ReminderSettings


def test_defaults_follow_up_urgent_cases_sooner() -> None:
    settings = ReminderSettings()
    assert settings.follow_up_delay("refund_request", "neutral") == 86_400
    assert settings.follow_up_delay("fraud_report", "neutral") == 4 * 3600
    assert settings.follow_up_delay("refund_request", "negative") == 4 * 3600
    assert settings.escalation_seconds == 48 * 3600


def test_delays_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMINDER_DELAY_SECONDS", "7200")
    monkeypatch.setenv("REMINDER_CATEGORY_DELAYS", '{"account_locked": 600}')
    monkeypatch.setenv("REMINDER_SENTIMENT_DELAYS", "{}")
    settings = ReminderSettings()
    assert settings.follow_up_delay("account_locked", "negative") == 600
    assert settings.follow_up_delay("fraud_report", "negative") == 7200
    # A global delay shorter than a category's wins too (how tests run in seconds).
    monkeypatch.setenv("REMINDER_DELAY_SECONDS", "5")
    assert ReminderSettings().follow_up_delay("account_locked", "neutral") == 5


def test_unknown_category_in_the_policy_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMINDER_CATEGORY_DELAYS", '{"fraud": 600}')
    with pytest.raises(ValueError, match="fraud"):
        ReminderSettings()

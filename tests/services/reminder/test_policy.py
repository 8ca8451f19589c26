"""Follow-up policy: the shortest applicable delay wins; all of it configurable."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.reminder.handlers import slot_of
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


def test_a_reminder_belongs_to_the_slot_ending_at_or_after_its_due_time() -> None:
    due = datetime(2026, 12, 4, 10, 0, 0, 100_000, tzinfo=UTC)
    assert slot_of(due, 0.25) == datetime(2026, 12, 4, 10, 0, 0, 250_000, tzinfo=UTC)
    on_the_edge = datetime(2026, 12, 4, 10, 0, 1, tzinfo=UTC)
    assert slot_of(on_the_edge, 0.25) == on_the_edge  # due exactly at a slot's end
    assert slot_of(due, 60) == datetime(2026, 12, 4, 10, 1, tzinfo=UTC)

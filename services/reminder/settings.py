"""Reminder settings (prefix REMINDER_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts.events import Category, Sentiment
from incidentflow.settings import CommonSettings

FOUR_HOURS = 4 * 3600


def _urgent_categories() -> dict[Category, int]:
    return {"fraud_report": FOUR_HOURS}


def _urgent_sentiments() -> dict[Sentiment, int]:
    # A mood sentiment could not read (another language) is followed up as an unhappy one.
    return {"negative": FOUR_HOURS, "unknown": FOUR_HOURS}


class ReminderSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="REMINDER_", extra="ignore")

    delay_seconds: int = Field(86_400, ge=1, lt=2**28)
    # Sooner follow-ups for urgent cases; the shortest applicable delay wins.
    category_delays: dict[Category, int] = Field(default_factory=_urgent_categories)
    sentiment_delays: dict[Sentiment, int] = Field(default_factory=_urgent_sentiments)
    # A customer's follow-up is skipped while another of theirs went out less than this long
    # ago: one "still on it" for several incidents at once (docs/adr/0057); 0 = off.
    customer_gap_seconds: int = Field(3600, ge=0, lt=2**28)
    # Tell the support team when an incident is still open this long after it came in; 0 = off.
    escalation_seconds: int = Field(48 * 3600, ge=0, lt=2**28)
    # Safety net: reminders past due by more than this were lost by the broker; fire them.
    sweep_grace_seconds: int = Field(60, ge=1)
    sweep_interval_seconds: float = Field(30.0, gt=0)
    # Reminders due within one slot of this many seconds share one delayed tick; a reminder
    # fires at most this much after its due time (plus the work of firing).
    tick_seconds: float = Field(0.25, ge=0.1, le=60)
    # A reminder an earlier version left claimed ('requesting') this long, its
    # request never confirmed, is requested again; the notifier's claim keeps the mail single.
    request_lease_seconds: float = Field(60.0, gt=0)
    # Reminders claimed and requested per round trip when many fall due at once. Each claim
    # reads the due index from its start, dead entries since the last vacuum included: fewer,
    # larger claims keep up over a million (docs/performance.md).
    fire_batch_size: int = Field(2000, ge=1, le=10_000)

    def follow_up_delay(self, category: Category, sentiment: Sentiment) -> int:
        """Seconds from receipt to the customer follow-up for this kind of incident."""
        return min(
            self.delay_seconds,
            self.category_delays.get(category, self.delay_seconds),
            self.sentiment_delays.get(sentiment, self.delay_seconds),
        )

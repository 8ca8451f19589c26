"""What the notifier asks of an outside system: send one message, say what became of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from typing import Literal, Protocol

TextChannel = Literal["sms", "whatsapp"]

# Called once the provider has the whole message, before its answer (see journal.py).
HandedOver = Callable[[], None]


class PermanentFailure(Exception):
    """The provider refused this message for good (bad number, rejected address): sending
    it again cannot help, so it is recorded as failed and not retried."""


@dataclass(frozen=True)
class Delivery:
    """A provider took the message (``sent``), or no provider is configured (``logged``)."""

    status: Literal["sent", "logged"]
    provider_message_id: str | None = None


class Mailer(Protocol):
    async def send(
        self,
        mail: Message,
        sender: str,
        recipient: str,
        *,
        handed_over: HandedOver | None = None,
    ) -> Delivery:
        """Send ``mail`` to exactly ``recipient``, whatever its headers say; call
        ``handed_over`` the instant the server has all of it, before its reply."""
        ...


class TextSender(Protocol):
    async def send(self, channel: TextChannel, to: str, body: str) -> Delivery:
        """Send ``body`` to the E.164 number ``to`` over ``channel``."""
        ...

"""What the notifier asks of an outside system: send one message, say what became of it."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from typing import Literal, Protocol

TextChannel = Literal["sms", "whatsapp"]


class Handover(Protocol):
    """What a provider adapter tells the send journal (journal.py) about one message."""

    def handed_over(self) -> None:
        """The provider has the whole message: its last byte is written, its answer not read."""

    def taken_back(self) -> None:
        """The provider's answer refuses the message (nothing, if it was never handed over)."""


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
        mail: Message | bytes,
        sender: str,
        recipient: str,
        *,
        handover: Handover | None = None,
    ) -> Delivery:
        """Send ``mail`` (a message, or its bytes on the wire) to exactly ``recipient``,
        whatever its headers say, telling ``handover`` the instant the server has all of it,
        and if its reply refuses it."""
        ...


class TextSender(Protocol):
    async def send(
        self, channel: TextChannel, to: str, body: str, *, handover: Handover | None = None
    ) -> Delivery:
        """Send ``body`` to the E.164 number ``to`` over ``channel``; ``handover`` as for
        :meth:`Mailer.send`."""
        ...

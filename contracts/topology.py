"""The RabbitMQ topology: exchanges, work queues, dead-letter queues and the delay levels.

Every service declares what it uses from here, so a queue's arguments are defined once;
redeclaring a queue with other arguments fails with PRECONDITION_FAILED, so change a queue's
arguments only together with a new queue name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from faststream.rabbit import ExchangeType, QueueType, RabbitExchange, RabbitQueue

if TYPE_CHECKING:
    from faststream.rabbit.schemas.queue import QuorumQueueArgs

from contracts.events import (
    Envelope,
    IncidentAcknowledged,
    IncidentClassified,
    IncidentMessageReceived,
    IncidentReceived,
    IncidentScored,
    IncidentTicketed,
    ReminderDue,
    ReminderRequested,
    ReminderTick,
)

EVENTS = RabbitExchange("incidentflow.events", type=ExchangeType.TOPIC, durable=True)
DEAD_LETTERS = RabbitExchange("incidentflow.dlx", type=ExchangeType.DIRECT, durable=True)

# A message that fails this many times goes to its dead-letter queue instead of looping.
DELIVERY_LIMIT = 10
# Bounded queues: when full, publishes are refused (publisher sees a nack), never dropped.
MAX_QUEUE_LENGTH = 1_000_000


def dead_letter_queue_name(queue_name: str) -> str:
    return f"{queue_name}.dlq"


@dataclass(frozen=True)
class Route:
    """One consuming service's queue for one event, bound to EVENTS or to the delay exit."""

    service: str
    event: type[Envelope]
    delayed: bool = False

    @property
    def source(self) -> RabbitExchange:
        return DelayLevels.DELIVERY if self.delayed else EVENTS

    @property
    def binding_key(self) -> str:
        # Delayed messages arrive with their delay digits in front of the routing key.
        return f"#.{self.routing_key}" if self.delayed else self.routing_key

    @property
    def queue_name(self) -> str:
        # Letters, digits, dots and dashes only: what a service's broker user may name
        # (incidentflow/provisioning.py) and the dead-letter policy's pattern matches.
        return f"{self.service}.{self.event.name.replace('.', '-').replace('_', '-')}"

    @property
    def routing_key(self) -> str:
        return self.event.routing_key()

    @property
    def queue(self) -> RabbitQueue:
        return work_queue(self.queue_name, self.binding_key)

    @property
    def retry_binding_key(self) -> str:
        """How this queue's own retries find it through the delay exchanges: a failed
        message goes back to this consumer alone, not to every queue bound for its event."""
        return f"#.{retry_routing_key(self.queue_name)}"

    @property
    def dead_letter_queue(self) -> RabbitQueue:
        return work_queue(dead_letter_queue_name(self.queue_name), self.queue_name, dlq=True)


def passive(exchange: RabbitExchange) -> RabbitExchange:
    """The same exchange, declared passively: it must exist already. What a service uses when
    the topology is the administrator's to declare (DECLARE_TOPOLOGY=false) and on every
    publish of a retry, a dead letter or a delayed event (its start declared those)."""
    return RabbitExchange(
        exchange.name, type=exchange.type, durable=exchange.durable, declare=False
    )


def retry_routing_key(queue_name: str) -> str:
    return f"retry.{queue_name}"


def work_queue(name: str, routing_key: str, *, dlq: bool = False) -> RabbitQueue:
    """A durable quorum queue; work queues dead-letter (at least once) into their own DLQ."""
    arguments: dict[str, object] = {"x-overflow": "reject-publish"}
    if not dlq:
        arguments |= {
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-max-length": MAX_QUEUE_LENGTH,
            "x-dead-letter-exchange": DEAD_LETTERS.name,
            "x-dead-letter-routing-key": name,
            "x-dead-letter-strategy": "at-least-once",
        }
    return RabbitQueue(
        name,
        queue_type=QueueType.QUORUM,
        durable=True,
        arguments=cast("QuorumQueueArgs", arguments),
        routing_key=routing_key,
    )


SENTIMENT_RECEIVED = Route("sentiment", IncidentReceived)
CLASSIFIER_SCORED = Route("classifier", IncidentScored)
TICKETING_CLASSIFIED = Route("ticketing", IncidentClassified)
NOTIFIER_TICKETED = Route("notifier", IncidentTicketed)
NOTIFIER_REMINDER = Route("notifier", ReminderRequested)
REMINDER_TICKETED = Route("reminder", IncidentTicketed)
REMINDER_DUE = Route("reminder", ReminderDue, delayed=True)
REMINDER_TICK = Route("reminder", ReminderTick, delayed=True)
# The customer's later messages (services/ingest/intake/).
SENTIMENT_MESSAGE = Route("sentiment", IncidentMessageReceived)
TICKETING_MESSAGE = Route("ticketing", IncidentMessageReceived)
REMINDER_MESSAGE = Route("reminder", IncidentMessageReceived)

WORK_ROUTES: tuple[Route, ...] = (
    SENTIMENT_RECEIVED,
    CLASSIFIER_SCORED,
    TICKETING_CLASSIFIED,
    NOTIFIER_TICKETED,
    NOTIFIER_REMINDER,
    REMINDER_TICKETED,
    REMINDER_DUE,
    REMINDER_TICK,
    SENTIMENT_MESSAGE,
    TICKETING_MESSAGE,
    REMINDER_MESSAGE,
)


def acknowledgement_queue(instance: str) -> RabbitQueue:
    """Ingest's per-process queue of acknowledgements, to answer callers that wait.

    Transient on purpose: losing it only turns a 201 into a 202, and the database is the
    source of truth for anyone who asks afterwards.
    """
    # Lower case, letters, digits, dots and dashes: a queue name ingest's broker user may
    # declare whatever the host is called (docs/security.md).
    safe = re.sub(r"[^a-z0-9.-]+", "-", instance.lower())
    return RabbitQueue(
        f"ingest.incident-acknowledged.{safe}",
        durable=False,
        exclusive=True,
        auto_delete=True,
        routing_key=IncidentAcknowledged.routing_key(),
    )


class DelayLevels:
    """Plugin-free delayed delivery: binary TTL levels, as Kombu and NServiceBus build it.

    Level N is a quorum queue whose per-queue TTL is 2^N seconds and that dead-letters into
    level N-1. A message's routing key is its delay as LEVELS binary digits, then the target
    routing key: each level's exchange sends it through its queue when its digit is 1 and
    straight on to the next level when it is 0. Level 0 ends at the delivery exchange, where
    target queues bind with ``#.<routing key>``.
    """

    LEVELS = 28  # 2^28 s is 8.5 years
    PREFIX = "incidentflow.delay"
    DELIVERY = RabbitExchange(f"{PREFIX}.delivery", type=ExchangeType.TOPIC, durable=True)

    @classmethod
    def exchange(cls, level: int) -> RabbitExchange:
        return RabbitExchange(f"{cls.PREFIX}.{level}", type=ExchangeType.TOPIC, durable=True)

    @classmethod
    def entry_exchange(cls, delay_seconds: int) -> RabbitExchange:
        """Where a delay enters: its highest 1 digit's level. The zero digits above it would
        only pass the message down exchange by exchange, which costs the broker CPU."""
        return cls.exchange(max(delay_seconds.bit_length() - 1, 0))

    @classmethod
    def next_exchange_name(cls, level: int) -> str:
        return cls.DELIVERY.name if level == 0 else cls.exchange(level - 1).name

    @classmethod
    def queue(cls, level: int) -> RabbitQueue:
        return RabbitQueue(
            f"{cls.PREFIX}.{level}",
            queue_type=QueueType.QUORUM,
            durable=True,
            arguments={
                "x-message-ttl": (2**level) * 1000,
                "x-dead-letter-exchange": cls.next_exchange_name(level),
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
            routing_key=cls.binding_pattern(level, "1"),
        )

    @classmethod
    def binding_pattern(cls, level: int, digit: str) -> str:
        return "*." * (cls.LEVELS - 1 - level) + digit + ".#"

    @classmethod
    def routing_key(cls, delay_seconds: int, target_routing_key: str) -> str:
        if not 0 <= delay_seconds < 2**cls.LEVELS:
            raise ValueError(f"delay must be within [0, 2^{cls.LEVELS}) seconds")
        digits = format(delay_seconds, f"0{cls.LEVELS}b")
        return ".".join(digits) + "." + target_routing_key

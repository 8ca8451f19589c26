"""AsyncAPI 3.0 documents: what a service consumes and publishes, and the whole system.

FastStream writes the document from a broker's subscriber and publisher objects. Subscribers
are the ones the services consume with; publishers are declared here from
``contracts/grants.py`` (the events each service may publish, the same table its broker
permissions come from), because the services publish through the confirming channel directly
for speed (``incidentflow.messaging.publish_parts``). Each service serves its own document at
``/asyncapi``; ``incidentflow asyncapi`` writes the system's, built from the contracts alone.
"""

from __future__ import annotations

import json
from typing import Any

from faststream.rabbit import RabbitBroker
from faststream.specification import AsyncAPI

from contracts.events import Envelope, IncidentAcknowledged
from contracts.grants import SERVICE_GRANTS, grants_of
from contracts.topology import EVENTS, WORK_ROUTES, DelayLevels, acknowledgement_queue
from incidentflow.batched_events import BATCH_CONTENT_TYPE, BATCH_HEADER

# How several events travel in one message (incidentflow/batched_events.py), for readers of
# the document: every channel below carries either framing.
FRAMING = f"""\
Every channel carries each event either alone (content type `application/json`, the event's
JSON as the payload schema shows) or batched with others of the same kind: content type
`{BATCH_CONTENT_TYPE}` and the header `{BATCH_HEADER}` (how many events), the body two lines
per event, first `{{"message_id": ..., "headers": {{...}}}}` (that event's own trace context),
then the event's JSON exactly as it would travel alone. Consumers handle, retry and
dead-letter each event of a batch on its own. Besides the channels below, every consumer
sends its failing events back to its own queue through the delay levels
(`{DelayLevels.PREFIX}.0..{DelayLevels.LEVELS - 1}`, routing key `<binary digits of the
delay>.retry.<queue>`) and dead-letters them to `<queue>.dlq` through `incidentflow.dlx`."""

DELAYED = (
    "Enters the delay level of the delay's highest binary digit "
    f"({DelayLevels.PREFIX}.0..{DelayLevels.LEVELS - 1}); routing key: the delay as "
    f"{DelayLevels.LEVELS} binary digits, then the event's routing key. It arrives on "
    f"{DelayLevels.DELIVERY.name}."
)


def publishers_of(service: str) -> RabbitBroker:
    """A broker (never connected) holding the service's outgoing channels, to document beside
    the broker it consumes with."""
    broker = RabbitBroker()
    declare_publishers(broker, service)
    return broker


def declare_publishers(broker: RabbitBroker, service: str) -> None:
    """The service's outgoing channels, as FastStream publisher objects on ``broker``."""
    grants = grants_of(service)
    for event in grants.publishes:
        broker.publisher(
            exchange=EVENTS,
            routing_key=event.routing_key(),
            schema=event,
            title=f"{service}:{event.routing_key()}:publish",
            description=event.__doc__,
        )
    for event in grants.delays:
        broker.publisher(
            exchange=DelayLevels.exchange(DelayLevels.LEVELS - 1),
            # The real key has the delay's binary digits in front (see the description).
            routing_key=event.routing_key(),
            schema=event,
            title=f"{service}:{event.routing_key()}:delayed",
            description=f"{event.__doc__} {DELAYED}",
        )


def document(*brokers: RabbitBroker, title: str) -> dict[str, Any]:
    """The brokers' channels as one AsyncAPI 3.0.0 document."""
    specification = AsyncAPI(
        *brokers, title=title, version="1", description=FRAMING, schema_version="3.0.0"
    ).to_specification()
    schema: dict[str, Any] = json.loads(specification.to_json())
    return schema


def _describe(event: type[Envelope]) -> str:
    return (event.__doc__ or event.name).strip()


def system_broker() -> RabbitBroker:
    """A broker (never connected) holding every service's subscribers and publishers."""
    broker = RabbitBroker()
    for route in WORK_ROUTES:
        _subscribe(broker, route.queue, route.source, route.event, f"{route.queue_name}:consume")
    _subscribe(
        broker,
        acknowledgement_queue("<instance>"),
        EVENTS,
        IncidentAcknowledged,
        "ingest.incident-acknowledged:consume",
    )
    for grants in SERVICE_GRANTS:
        declare_publishers(broker, grants.service)
    return broker


def _subscribe(
    broker: RabbitBroker, queue: Any, exchange: Any, event: type[Envelope], title: str
) -> None:
    async def handle(message: Any) -> None:
        """Documented only: this broker never runs."""

    broker.subscriber(queue, exchange, title=title, description=_describe(event))(handle)
    # The payload schema is the event's, as the real handlers declare it.
    handle.__annotations__["message"] = event


def system_document() -> dict[str, Any]:
    return document(system_broker(), title="incidentflow")


def service_document(service: str, consuming: RabbitBroker) -> dict[str, Any]:
    """One service's document: what ``consuming`` subscribes to, and what it publishes."""
    return document(consuming, publishers_of(service), title=f"incidentflow {service}")

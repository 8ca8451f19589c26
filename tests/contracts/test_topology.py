"""Topology: every work queue is a bounded quorum queue with its own dead-letter queue."""

from __future__ import annotations

import pytest

from contracts.topology import WORK_ROUTES, DelayLevels


@pytest.mark.parametrize("route", WORK_ROUTES, ids=lambda r: r.queue_name)
def test_work_queues_are_quorum_with_dead_letters_and_a_delivery_limit(route) -> None:  # type: ignore[no-untyped-def]
    args = route.queue.arguments
    assert args["x-queue-type"] == "quorum"
    assert args["x-dead-letter-exchange"] == "incidentflow.dlx"
    assert args["x-dead-letter-routing-key"] == route.queue_name
    assert args["x-dead-letter-strategy"] == "at-least-once"
    assert args["x-overflow"] == "reject-publish"
    assert args["x-delivery-limit"] > 0 and args["x-max-length"] > 0
    assert route.dead_letter_queue.name == route.queue_name + ".dlq"


def test_queue_names_are_unique() -> None:
    names = [route.queue_name for route in WORK_ROUTES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("delay", [0, 1, 5, 86_400, 2**28 - 1])
def test_delay_digits_add_up_to_the_delay(delay: int) -> None:
    key = DelayLevels.routing_key(delay, "reminder.due.v1")
    digits, target = key.split(".")[: DelayLevels.LEVELS], key.split(".", DelayLevels.LEVELS)[-1]
    assert target == "reminder.due.v1"
    total = sum(2 ** (DelayLevels.LEVELS - 1 - i) for i, d in enumerate(digits) if d == "1")
    assert total == delay


def test_delay_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        DelayLevels.routing_key(2**28, "x")
    with pytest.raises(ValueError):
        DelayLevels.routing_key(-1, "x")


def test_each_level_waits_twice_as_long_as_the_one_below() -> None:
    ttls = [DelayLevels.queue(level).arguments["x-message-ttl"] for level in range(3)]
    assert ttls == [1000, 2000, 4000]
    assert DelayLevels.queue(0).arguments["x-dead-letter-exchange"] == DelayLevels.DELIVERY.name
    assert DelayLevels.queue(5).arguments["x-dead-letter-exchange"] == "incidentflow.delay.4"

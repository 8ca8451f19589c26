"""SMS and WhatsApp through the Twilio adapter against a fake Messages API on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from incidentflow_tools.sandbox import free_port
from services.notifier.adapters.base import PermanentFailure
from services.notifier.adapters.twilio import TwilioTexts, TwilioUnavailable
from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, fake_twilio
from tests.fakes import Answer

FROM = "+14155550100"
TO = "+447700900123"


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with fake_twilio() as server:
        yield server


async def texts(
    url: str,
    token: str = AUTH_TOKEN,
    whatsapp_from: str | None = None,
    max_concurrent: int = 10,
) -> TwilioTexts:
    client = TwilioTexts(
        account_sid=ACCOUNT_SID,
        auth_token=token,
        from_number=FROM,
        whatsapp_from=whatsapp_from,
        base_url=url,
        timeout=2,
        max_concurrent=max_concurrent,
    )
    await client.open()
    return client


async def test_sms_is_posted_form_encoded_with_basic_auth(twilio: FakeTwilio) -> None:
    client = await texts(twilio.url)
    try:
        delivery = await client.send("sms", TO, "Ticket #T-1 created.")
    finally:
        await client.close()
    [sent] = twilio.texts
    assert (sent.to, sent.sender, sent.body) == (TO, FROM, "Ticket #T-1 created.")
    assert delivery.status == "sent" and delivery.provider_message_id == sent.sid
    assert sent.sid.startswith("SM")


async def test_whatsapp_prefixes_both_numbers(twilio: FakeTwilio) -> None:
    client = await texts(twilio.url, whatsapp_from="+14155550199")
    try:
        await client.send("whatsapp", TO, "hello")
    finally:
        await client.close()
    [sent] = twilio.texts
    assert (sent.to, sent.sender) == (f"whatsapp:{TO}", "whatsapp:+14155550199")


async def test_wrong_credentials_are_not_a_permanent_failure(twilio: FakeTwilio) -> None:
    client = await texts(twilio.url, token="wrong")
    try:
        with pytest.raises(RuntimeError, match="credentials"):
            await client.send("sms", TO, "hello")
    finally:
        await client.close()
    assert twilio.unauthorised == 1 and twilio.texts == []


async def test_5xx_is_retried_and_sent_once(twilio: FakeTwilio) -> None:
    twilio.fail_next(Answer(500, {"code": 20500}), Answer(503, {"code": 20503}))
    client = await texts(twilio.url)
    try:
        delivery = await client.send("sms", TO, "hello")
    finally:
        await client.close()
    assert twilio.requests == 3 and len(twilio.texts) == 1
    assert delivery.provider_message_id == twilio.texts[0].sid


async def test_429_waits_as_long_as_retry_after_says(twilio: FakeTwilio) -> None:
    twilio.fail_next(Answer(429, {"code": 20429}, headers={"Retry-After": "1"}))
    client = await texts(twilio.url)
    started = time.monotonic()
    try:
        await client.send("sms", TO, "hello")
    finally:
        await client.close()
    assert time.monotonic() - started >= 1.0
    assert twilio.requests == 2 and len(twilio.texts) == 1


async def test_a_long_retry_after_is_left_to_the_broker(twilio: FakeTwilio) -> None:
    twilio.fail_next(Answer(429, {"code": 20429}, headers={"Retry-After": "120"}))
    client = await texts(twilio.url)
    started = time.monotonic()
    try:
        with pytest.raises(TwilioUnavailable):
            await client.send("sms", TO, "hello")
    finally:
        await client.close()
    assert time.monotonic() - started < 5 and twilio.requests == 1


async def test_persistent_5xx_gives_up_after_a_few_attempts(twilio: FakeTwilio) -> None:
    twilio.fail_next(*[Answer(500, {"code": 20500})] * 5)
    client = await texts(twilio.url)
    try:
        with pytest.raises(TwilioUnavailable):
            await client.send("sms", TO, "hello")
    finally:
        await client.close()
    assert twilio.requests == 3 and twilio.texts == []


async def test_4xx_is_permanent_and_not_retried(twilio: FakeTwilio) -> None:
    twilio.fail_next(
        Answer(400, {"code": 21211, "message": "The 'To' number is not valid.", "status": 400})
    )
    client = await texts(twilio.url)
    try:
        with pytest.raises(PermanentFailure, match="21211"):
            await client.send("sms", TO, "hello")
    finally:
        await client.close()
    assert twilio.requests == 1


async def test_unreachable_twilio_is_retryable() -> None:
    client = await texts(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(TwilioUnavailable):
            await client.send("sms", TO, "hello")
    finally:
        await client.close()


async def test_calls_in_flight_are_bounded_per_process(twilio: FakeTwilio) -> None:
    twilio.delay = 0.3
    client = await texts(twilio.url, max_concurrent=2)
    try:
        await asyncio.gather(*(client.send("sms", TO, f"n{i}") for i in range(6)))
    finally:
        await client.close()
    assert len(twilio.texts) == 6 and twilio.max_in_flight == 2

"""SMS and WhatsApp in: ``POST /webhooks/twilio``, Twilio's incoming-message webhook.

Twilio posts the text form-encoded and signs the URL and parameters with the account's auth
token (``X-Twilio-Signature``); a request without a valid signature is refused (403) before
anything is read into the database. The answer is empty TwiML: our reply, the
acknowledgement, goes out through the notifier like any other.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError

from incidentflow.phone import to_e164
from services.ingest.intake.receive import Inbound, Intake, SenderLimited
from services.ingest.intake.twilio_signature import is_valid_signature
from services.ingest.settings import IngestSettings

PATH = "/webhooks/twilio"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
WHATSAPP_PREFIX = "whatsapp:"


def signed_url(request: Request, settings: IngestSettings) -> str:
    """The URL Twilio requested: INTAKE_TWILIO_URL behind a proxy that rewrites it, else the
    request's own. The query string is part of what Twilio signs."""
    if settings.intake_twilio_url is None:
        return str(request.url)
    query = request.url.query
    return settings.intake_twilio_url + (f"?{query}" if query else "")


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


def as_inbound(params: dict[str, str]) -> Inbound:
    """The customer's text as the intake takes it; 422 naming the field Twilio left out."""
    sender = params.get("From", "")
    channel: Any = "whatsapp" if sender.startswith(WHATSAPP_PREFIX) else "sms"
    try:
        number = to_e164(sender.removeprefix(WHATSAPP_PREFIX))
    except ValueError as exc:
        raise _invalid("From", f"not a phone number: {exc}") from None
    sid = params.get("MessageSid") or params.get("SmsSid")
    if not sid:
        raise _invalid("MessageSid", "missing")
    media = int(params["NumMedia"]) if params.get("NumMedia", "").isdigit() else 0
    return Inbound(
        channel=channel,
        external_id=sid,
        sender=number,
        text=params.get("Body", ""),
        # What was attached, not the media itself (it stays with Twilio).
        attachments=[
            {"filename": "", "content_type": params.get(f"MediaContentType{i}", ""), "size": 0}
            for i in range(min(media, 10))
        ],
    )


def add_twilio_webhook(app: FastAPI, intake: Intake, settings: IngestSettings) -> None:
    # Not in the API's OpenAPI document: Twilio calls it, authenticated by its signature and
    # not by the API's keys; docs/operations.md says how to point a number at it.
    @app.post(PATH, response_class=Response, include_in_schema=False)
    async def twilio_webhook(request: Request) -> Response:
        token = settings.twilio_auth_token
        if token is None:
            raise HTTPException(404, "no Twilio account is configured (TWILIO_AUTH_TOKEN)")
        body = (await request.body()).decode("utf-8", "replace")
        pairs = parse_qsl(body, keep_blank_values=True)
        signature = request.headers.get("X-Twilio-Signature")
        if not is_valid_signature(
            token.get_secret_value(), signed_url(request, settings), pairs, signature
        ):
            raise HTTPException(403, "X-Twilio-Signature does not match this request")
        inbound = as_inbound(dict(pairs))
        try:
            await intake.take_in(inbound)
        except SenderLimited as exc:
            raise HTTPException(
                429, str(exc), headers={"Retry-After": str(exc.retry_after)}
            ) from None
        return Response(EMPTY_TWIML, media_type="application/xml")

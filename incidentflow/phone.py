"""Phone numbers as E.164, the only form Twilio and our records accept."""

from __future__ import annotations

import phonenumbers


def to_e164(number: str) -> str:
    """``number`` as E.164 (``+14155550123``); ValueError naming the reason otherwise.

    Only international form is accepted: without a country prefix a number is ambiguous.
    """
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number in international form: {exc}") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid phone number for its country code")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

"""Masking of customer contact data (emails, phone numbers) and URL passwords in free text."""

from __future__ import annotations

import datetime
import enum
import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any

# RFC 5322 atext in the local part; domain labels of letters and digits in any script
# (internationalised domains, münchen.de) or punycode (xn--p1ai). A match starts only where a
# local part starts (the lookbehind): trying it from every character of a long run made
# masking quadratic (1.9 s for 20 KB inside the log filter).
EMAIL = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])[\w.!#$%&'*+/=?^`{|}~-]+@"
    r"(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_](?:[\w-]*[^\W_])?"
)
# A run of digits with the usual separators, not glued to a word, a hyphenated id (UUIDs,
# TKT-12345678) or a number: candidates only, _looks_like_phone decides.
PHONE = re.compile(r"(?<![\w+\-.])\+?\(?\d(?:[ .()\-]{0,2}\d){6,17}(?![\w\-]|\.\d)")
# scheme://user:password@host: the password of a broker or database URL.
# The scheme starts where no scheme character precedes it (not merely at a word boundary: in
# "a.a.a…" every letter is one, and trying each made masking quadratic).
URL_PASSWORD = re.compile(
    r"(?P<prefix>(?<![a-z0-9+.-])[a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?=@)", re.I
)
DECIMAL = re.compile(r"\d+\.\d+")
IP_ADDRESS = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
MIN_PHONE_DIGITS = 9  # without a leading +; 8-digit runs are dates (2024-05-01) more often
MIN_INTERNATIONAL_DIGITS = 7  # with a leading +: the shortest E.164 numbers
MAX_PHONE_DIGITS = 15  # E.164


def mask_email(address: str) -> str:
    """``customer@example.com`` → ``c***@example.com``: the domain stays for debugging."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_phone(number: str) -> str:
    """``+14155550123`` → ``+14***23``."""
    return f"{number[:3]}***{number[-2:]}"


def _looks_like_phone(candidate: str) -> bool:
    if DECIMAL.fullmatch(candidate) or IP_ADDRESS.fullmatch(candidate):
        return False
    digits = sum(c.isdigit() for c in candidate)
    least = MIN_INTERNATIONAL_DIGITS if candidate.startswith("+") else MIN_PHONE_DIGITS
    return least <= digits <= MAX_PHONE_DIGITS


def _mask_phone_match(match: re.Match[str]) -> str:
    candidate = match.group(0)
    return mask_phone(candidate) if _looks_like_phone(candidate) else candidate


# What each pattern above needs at least: an "@" (an address, a URL's password) or seven
# digits at most two separators apart (a phone number). Most values on a log line (ids,
# states, names) have neither, and skip the three substitutions (~25 µs a line).
_MAYBE_CONTACT = re.compile(r"@|\d(?:[ .()\-]{0,2}\d){6}")


def mask_text(text: str) -> str:
    """``text`` with every email address, phone-number-looking run and URL password masked."""
    if _MAYBE_CONTACT.search(text) is None:
        return text
    return _mask_contacts(text)


def _mask_contacts(text: str) -> str:
    text = URL_PASSWORD.sub(r"\g<prefix>***", text)
    text = EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    return PHONE.sub(_mask_phone_match, text)


# Values that cannot carry free text pass through unchanged, keeping their JSON form.
_OPAQUE = (bool, int, float, uuid.UUID, datetime.date, datetime.time, enum.Enum, type(None))


def mask_value(value: Any) -> Any:
    """``value`` with every string in it masked; other objects become their masked ``str``."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, _OPAQUE):
        return value
    if isinstance(value, Mapping):
        return {mask_value(k): mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [mask_value(v) for v in value]
    return mask_text(str(value))


# The attributes every LogRecord has; anything else on a record came in through ``extra``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}
_exception_formatter = logging.Formatter()


class MaskPersonalData(logging.Filter):
    """Masks emails and phone numbers in a record's message, arguments, extra fields,
    exception and stack text, whatever the caller passed: logs never carry contact data."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_text(record.getMessage())
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRIBUTES:
                setattr(record, key, mask_value(value))
        if record.exc_info:
            # Formatters prefer exc_info over exc_text: keep only the masked text.
            record.exc_text = _exception_formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True

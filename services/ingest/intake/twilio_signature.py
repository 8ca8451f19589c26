"""Validation of Twilio's ``X-Twilio-Signature`` webhook header.

Twilio signs each webhook request with HMAC-SHA1, keyed with the account's auth token, over the
full URL it requested (scheme, host, path, query string) followed by the form-encoded POST
parameters sorted by name, each name immediately followed by its value; the header carries the
base64 of that MAC. https://www.twilio.com/docs/usage/security#validating-requests

The details the documentation leaves open follow Twilio's own helper libraries
(``twilio.request_validator.RequestValidator`` in twilio-python 9.13.0, ``validateRequest`` in
twilio-node): a name given several times contributes each distinct value, sorted; and the
signature is accepted over the URL with its port removed or with the scheme's default port added,
because Twilio's back end signs some URLs one way and some the other.

JSON bodies are not handled: Twilio signs those over the URL alone and puts the body's SHA-256 in
a ``bodySHA256`` query parameter. ``is_valid_signature(token, url, [], header)`` checks the URL's
signature, but the caller would still have to compare the body's hash with that parameter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Twilio-Signature"
_DEFAULT_PORTS = {"https": 443, "http": 80}


def expected_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """The ``X-Twilio-Signature`` Twilio sends for a form POST of ``params`` to ``url``."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        # A set, as the official libraries use: a value repeated under one name counts once.
        values.setdefault(name, set()).add(value)
    # By code point, so case-sensitive ("Zoo" before "apple"), as the official libraries sort.
    data = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    mac = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def is_valid_signature(
    auth_token: str, url: str, params: Iterable[tuple[str, str]], signature: str | None
) -> bool:
    """Whether ``signature`` is Twilio's for this request, over the URL as given, without its
    port or with the default port. No signature, or no token to check it with, is never valid."""
    if not signature or not auth_token:
        return False
    pairs = list(params)  # read once per URL variant
    # Bytes, because compare_digest refuses str with non-ASCII characters (a forged header may
    # hold some); "replace" makes those "?", which no base64 signature contains.
    given = signature.encode("utf-8", "replace")
    return any(
        hmac.compare_digest(expected_signature(auth_token, variant, pairs).encode(), given)
        for variant in _url_variants(url)
    )


def _url_variants(url: str) -> list[str]:
    """The URL as given, and the same URL without its port (any port, as the official libraries
    do), or with the scheme's default port when it has none. Only the authority is rewritten:
    the rest stays byte for byte as Twilio requested it."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: nothing to add or remove
        return [url]
    start = url.find("//") + 2
    end = start + len(parts.netloc)
    if not parts.netloc or url[start:end] != parts.netloc:
        return [url]
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if port is not None:
        host = hostport[: hostport.rindex(":")]  # rindex: an IPv6 host has colons of its own
        return [url, url[:start] + userinfo + at + host + url[end:]]
    default = _DEFAULT_PORTS.get(parts.scheme)
    if default is None:
        return [url]
    return [url, f"{url[:end]}:{default}{url[end:]}"]

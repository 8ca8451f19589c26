"""X-Twilio-Signature validation, against Twilio's documented example and its official library.

The expected signatures are not computed here: they come from Twilio (its documentation and the
tests of twilio-python) or were produced by the official library, so a test passing means the
module signs exactly as Twilio does, not merely as it did yesterday.
"""

from __future__ import annotations

import pytest

from services.ingest.intake.twilio_signature import expected_signature, is_valid_signature

# Twilio's worked example: https://www.twilio.com/docs/usage/security#validating-requests, and
# the setUp of twilio/twilio-python tests/unit/test_request_validator.py (commit 30368b08ba58),
# values copied verbatim from there.
DOC_TOKEN = "12345"
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
    ("Caller", "+14158675309"),
]
DOC_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="

# Produced with twilio==9.13.0: RequestValidator(token).compute_signature(url, MultiDict(params)),
# each also accepted by RequestValidator.validate; the test must not depend on the twilio package.
OFFICIAL_CASES = [
    (
        "tok-A1b2C3d4",
        "https://ingest.example.com/twilio/sms",
        [
            ("Body", "hello"),
            ("From", "+447700900123"),
            ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
            ("To", "+15005550006"),
        ],
        "xnELNJ4yT18+Vtis8C+o3DetX14=",
    ),
    (  # repeated name with distinct values, a name differing only in case, the default port
        "tok-A1b2C3d4",
        "https://ingest.example.com:443/twilio/sms?tenant=acme",
        [("Digits", "5678"), ("Digits", "1234"), ("CallSid", "CA42"), ("digits", "9")],
        "5OdTzS8tPrgnRKniOTB3BqS/Nck=",
    ),
    (  # non-ASCII values, a percent-encoded query, lower-case names sorting after upper-case
        "0123456789abcdef0123456789abcdef",
        "https://ingest.example.com/twilio/sms?lang=de&x=%C3%BC",
        [
            ("Body", "Grüße aus Köln — ünïcödé ✓ 😀"),
            ("From", "+4915112345678"),
            ("ProfileName", "Zoë"),
            ("Zeta", "z"),
            ("alpha", "a"),
        ],
        "whpoLy/8IK/tDyhkS2Yvw6M8SPc=",
    ),
    (  # plain http on another port; a value that is itself a URL; an empty value given twice
        "0123456789abcdef0123456789abcdef",
        "http://localhost:8080/hooks/twilio",
        [
            ("MediaUrl0", "https://api.twilio.com/x?a=1&b=2"),
            ("NumMedia", "1"),
            ("Body", ""),
            ("Body", ""),
        ],
        "pLrRcr98CNpbgXFjeObibeBOu0E=",
    ),
    (  # the same value twice under one name counts once, as in the library
        "tok-A1b2C3d4",
        "http://ingest.example.com/twilio/voice",
        [("Tag", "b"), ("Tag", "a"), ("Tag", "b"), ("CallStatus", "completed")],
        "EHqwmMzpw0TrLWgbXT62upxhrKE=",
    ),
    (  # no parameters at all
        "tok-A1b2C3d4",
        "https://ingest.example.com/twilio/status?bodySHA256=abc",
        [],
        "pWREmmWuTIsJZNvGbAobkBAkZ0I=",
    ),
]


def test_documented_example() -> None:
    assert expected_signature(DOC_TOKEN, DOC_URL, DOC_PARAMS) == DOC_SIGNATURE
    assert is_valid_signature(DOC_TOKEN, DOC_URL, DOC_PARAMS, DOC_SIGNATURE)


def test_repeated_name_from_twilio_python_tests() -> None:
    # test_compute_signature_duplicate_multi_dict in the same twilio-python test file.
    params = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert expected_signature(DOC_TOKEN, DOC_URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


@pytest.mark.parametrize(
    ("url", "signature"),
    [
        # test_validation_adds_port_on_https: Twilio signed the URL with :443 added.
        (DOC_URL, "kvajT1Ptam85bY51eRf/AJRuM3w="),
        # test_validation_adds_port_on_http: signed with :80 added.
        (DOC_URL.replace("https", "http"), "0ZXoZLH/DfblKGATFgpif+LLRf4="),
        # test_validation_removes_port_on_https: signed without the port the request has.
        (DOC_URL.replace(".com", ".com:1234"), DOC_SIGNATURE),
        # test_validation_removes_port_on_http: signed over the URL as given, port 1234 and all.
        (
            DOC_URL.replace(".com", ".com:1234").replace("https", "http"),
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
        ),
        # The documented signature on the request with :443 spelt out.
        (DOC_URL.replace(".com", ".com:443"), DOC_SIGNATURE),
    ],
)
def test_port_variants_from_twilio_python_tests(url: str, signature: str) -> None:
    assert is_valid_signature(DOC_TOKEN, url, DOC_PARAMS, signature)


def test_json_request_url_signature() -> None:
    # test_validation_of_body_succeeds: a JSON request is signed over its URL with no parameters.
    # Only that half is checked here; the module does not compare the body with bodySHA256.
    body_hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    url = f"{DOC_URL}&bodySHA256={body_hash}"
    assert expected_signature(DOC_TOKEN, url, []) == "a9nBmqA0ju/hNViExpshrM61xv4="


@pytest.mark.parametrize(("token", "url", "params", "signature"), OFFICIAL_CASES)
def test_agrees_with_the_official_library(
    token: str, url: str, params: list[tuple[str, str]], signature: str
) -> None:
    assert expected_signature(token, url, params) == signature
    assert is_valid_signature(token, url, params, signature)
    # Parameter order on the wire does not matter, nor does how they are passed.
    assert is_valid_signature(token, url, iter(reversed(params)), signature)


def test_default_port_added_or_removed() -> None:
    # OFFICIAL_CASES[0] was signed without a port, [1] with :443.
    token, url, params, signature = OFFICIAL_CASES[0]
    assert is_valid_signature(token, url.replace(".com/", ".com:443/"), params, signature)
    token, url, params, signature = OFFICIAL_CASES[1]
    assert is_valid_signature(token, url.replace(":443", ""), params, signature)


@pytest.mark.parametrize("signature", [None, ""])
def test_missing_header(signature: str | None) -> None:
    assert not is_valid_signature(DOC_TOKEN, DOC_URL, DOC_PARAMS, signature)


def test_no_token() -> None:
    assert not is_valid_signature("", DOC_URL, DOC_PARAMS, expected_signature("", DOC_URL, []))


def test_wrong_token() -> None:
    assert not is_valid_signature("54321", DOC_URL, DOC_PARAMS, DOC_SIGNATURE)


@pytest.mark.parametrize(
    "params",
    [
        [(name, "+14155550000" if name == "From" else value) for name, value in DOC_PARAMS],
        [*DOC_PARAMS, ("Extra", "1")],
        DOC_PARAMS[1:],
        [("callsid" if name == "CallSid" else name, value) for name, value in DOC_PARAMS],
    ],
    ids=["value-changed", "param-added", "param-dropped", "name-case-changed"],
)
def test_changed_parameters(params: list[tuple[str, str]]) -> None:
    assert not is_valid_signature(DOC_TOKEN, DOC_URL, params, DOC_SIGNATURE)


@pytest.mark.parametrize(
    "url",
    [
        DOC_URL.replace("https", "http"),
        DOC_URL.replace("mycompany", "evil"),
        DOC_URL.replace("myapp", "other"),
        DOC_URL.replace("foo=1", "foo=2"),
    ],
)
def test_changed_url(url: str) -> None:
    assert not is_valid_signature(DOC_TOKEN, url, DOC_PARAMS, DOC_SIGNATURE)


def test_a_port_is_removed_never_guessed() -> None:
    # Like the library, any port in the request URL may be dropped (test_validation_removes_port
    # above), but only the scheme's default port is ever added.
    signed_with_8443 = expected_signature(
        DOC_TOKEN, DOC_URL.replace(".com", ".com:8443"), DOC_PARAMS
    )
    assert not is_valid_signature(DOC_TOKEN, DOC_URL, DOC_PARAMS, signed_with_8443)
    signed_with_80 = expected_signature(DOC_TOKEN, DOC_URL.replace(".com", ".com:80"), DOC_PARAMS)
    assert not is_valid_signature(DOC_TOKEN, DOC_URL, DOC_PARAMS, signed_with_80)


def test_garbled_header_is_invalid_not_an_error() -> None:
    # compare_digest raises on non-ASCII str; a forged header must be a plain False.
    assert not is_valid_signature(DOC_TOKEN, DOC_URL, DOC_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8é")
    assert not is_valid_signature(DOC_TOKEN, DOC_URL, DOC_PARAMS, DOC_SIGNATURE[:-1])

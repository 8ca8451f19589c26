"""Turns the raw bytes of one received email into what an incident intake needs (pure: no I/O)."""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message, MIMEPart
from email.parser import BytesParser
from email.utils import parseaddr
from typing import Any, TypeVar

# HTML to text: inscriptis (Apache-2.0, maintained) lays out blocks, lists and tables as a
# reader sees them and never renders <head>, <script> or <style>. html2text is GPL and writes
# Markdown; BeautifulSoup's get_text runs inline and block text together.
from inscriptis import get_text

# Quoted replies and signatures: mail-parser-reply (MIT, maintained) knows the "wrote:"
# headers of en, de, fr and it, and Outlook's "From: / Sent:" blocks; email-reply-parser
# (last release 2020) knows English only.
from mailparser_reply.parser import EmailMessage as ReplyText

T = TypeVar("T")

# The customers' languages that the library knows (the notifier speaks en, de, es, fr, it,
# pt). Not all of its languages: the Danish sign-off "Tak" would cut any line from "Take" on.
# Its Spanish "escribió:" pattern wants two spaces before the word, so a Spanish header line
# stays in the text (its quoted lines still go).
REPLY_LANGUAGES = ("en", "de", "es", "fr", "it")
# The cutter's header patterns backtrack superlinearly in a line's length: a body is cut at
# this many characters (the customer's new words come first) and longer lines are hidden
# from it, so that a crafted mail costs a fraction of a second, not minutes.
MAX_TEXT_CHARS = 20_000
MAX_CUT_LINE_CHARS = 1_000

AUTO_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
AUTO_SUPPRESS = {"all", "oof", "autoreply"}
BOUNCE_SENDERS = {"mailer-daemon", "postmaster"}
# Browsers read a latin-1 label as windows-1252 (WHATWG Encoding), and so do mailers in
# practice: its curly quotes and euro sign would otherwise come out as control characters.
# An ASCII label on 8-bit text is wrong, and UTF-8 is the likeliest truth.
WIDER_CODEC = {"iso8859-1": "cp1252", "ascii": "utf-8"}

_MESSAGE_ID = re.compile(r"<[^<>]+>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LONG_LINE = re.compile(rf"^[^\n]{{{MAX_CUT_LINE_CHARS},}}$", re.MULTILINE)
_HIDDEN_LINE = re.compile("\ue000[0-9]+\ue000")
# Signatures that are nothing else: the RFC 3676 delimiter and phones' taglines.
_SURE_SIGNATURE = re.compile(
    r"\s*(?:--\s*$|--\s*\n|(?:Sent from|Enviado desde|Envoyé de|Von meinem|Inviato da|"
    r"Get Outlook for)\b)",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class Attachment:
    filename: str  # "" when none given
    content_type: str
    size: int  # decoded bytes


@dataclass(frozen=True)
class InboundMail:
    sender: str = ""  # addr-spec of From, domain lower-cased; "" when none or unparseable
    sender_name: str = ""
    subject: str = ""
    message_id: str | None = None  # with its angle brackets
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)  # oldest first, as in the header
    text: str = ""  # the customer's new words: no quoted reply, no signature, never HTML
    attachments: list[Attachment] = field(default_factory=list)
    automatic: str | None = None  # why this mail must never be answered, else None


def parse_mail(raw: bytes, *, own_addresses: Collection[str] = ()) -> InboundMail:
    """What the intake needs from one received mail; any bytes give a result, never an error."""
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception:  # the parser records defects rather than raising, but not always
        return InboundMail()
    assert isinstance(message, EmailMessage)  # what policy.default builds
    # Each field is read on its own, so that a malformed header or part loses only itself.
    sender, sender_name = _guarded(lambda: _sender(message), ("", ""))
    body = _guarded(lambda: message.get_body(preferencelist=("plain", "html")), None)
    return InboundMail(
        sender=sender,
        sender_name=sender_name,
        subject=_header(message, "Subject"),
        message_id="".join(_header(message, "Message-ID").split()) or None,
        in_reply_to=_message_ids(_header(message, "In-Reply-To")),
        references=_message_ids(_header(message, "References")),
        text=_guarded(lambda: _new_words(body), ""),
        attachments=_guarded(lambda: _attachments(message, body), []),
        automatic=_guarded(lambda: _automatic(message, sender, own_addresses), None),
    )


def _guarded(read: Callable[[], T], default: T) -> T:
    try:
        return read()
    except Exception:  # a header parser bug, a recursion limit: that field is lost, not the mail
        return default


def _clean(text: str) -> str:
    # Undecodable header bytes arrive as lone surrogates, which no UTF-8 writer accepts; NUL
    # is refused by Postgres and lxml alike, and the other controls carry nothing to read.
    return _CONTROL.sub("", text.encode("utf-8", "replace").decode("utf-8"))


def _header(message: EmailMessage, name: str) -> str:
    """The header decoded (RFC 2047) on one line, "" when absent or unreadable."""
    value = _guarded(lambda: message.get(name), None)
    return _clean(" ".join(str(value).split())) if value is not None else ""


def _sender(message: EmailMessage) -> tuple[str, str]:
    addresses = message["From"].addresses if "From" in message else ()
    if not addresses:
        return "", ""
    first = addresses[0]
    if not first.username or not first.domain:
        return "", _clean(first.display_name)
    return _clean(f"{first.username}@{first.domain.lower()}"), _clean(first.display_name)


def _message_ids(value: str) -> list[str]:
    # Bracketed ids only: some clients add comments or a bare date after them. Duplicates go.
    ids = ("".join(found.split()) for found in _MESSAGE_ID.findall(value))
    return list(dict.fromkeys(ids))


def _decoded(part: MIMEPart) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        codec = codecs.lookup(part.get_content_charset() or "utf-8").name
        return payload.decode(WIDER_CODEC.get(codec, codec), errors="replace")
    except (LookupError, ValueError):  # unknown label, or a codec that is not for text
        return payload.decode("utf-8", errors="replace")


def _tidy(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _unquoted(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(">"))


def _new_words(body: MIMEPart | None) -> str:
    if body is None:
        return ""
    text = _clean(_decoded(body))
    if body.get_content_subtype() == "html":
        text = get_text(text)
    text = text[:MAX_TEXT_CHARS]
    # Long lines are swapped for placeholders while the cutter runs: no header is that long.
    long_lines: dict[str, str] = {}

    def hide(line: re.Match[str]) -> str:
        placeholder = f"\ue000{len(long_lines)}\ue000"
        long_lines[placeholder] = line.group()
        return placeholder

    hidden = _LONG_LINE.sub(hide, text)
    # keep_hyphen_lists: a customer's "- charged twice" list is not a "-John" signature.
    reply = ReplyText(text=hidden, languages=list(REPLY_LANGUAGES), keep_hyphen_lists=True)
    replies = reply.read().replies
    cut = _without_signature(replies[0]) if replies else ""
    cut = _HIDDEN_LINE.sub(lambda found: long_lines.get(found.group(), found.group()), cut)
    # The library splits at "wrote:" headers but leaves ">" lines that no header announced.
    return _tidy(_unquoted(cut)) or _tidy(_unquoted(text))


def _without_signature(reply: Any) -> str:
    """The reply's text without its signature when the signature is surely one (the "-- "
    delimiter, a phone's "Sent from my …"); else with it. The library also takes a line
    starting "Thanks," or "Best," for a sign-off, and would cut "Thanks, but I still have no
    refund" and everything after it: a customer's words are worth more than a clean mail."""
    if _SURE_SIGNATURE.match(reply.signatures or ""):
        return str(reply.body)
    return str(reply.content)


def _attachments(part: MIMEPart, body: MIMEPart | None) -> list[Attachment]:
    if part is body:
        return []
    if part.is_attachment() or (part.get_filename() and not part.is_multipart()):
        return [
            Attachment(
                filename=_clean(" ".join((part.get_filename() or "").split())),
                content_type=part.get_content_type(),
                size=_guarded(lambda: _size(part), 0),
            )
        ]
    # iter_parts descends multiparts only: a forwarded message/rfc822 is one attachment.
    return [found for sub in part.iter_parts() for found in _attachments(sub, body)]


def _size(part: MIMEPart) -> int:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return len(payload)
    # message/rfc822 (or a multipart sent as one attachment): the enclosed parts, serialised
    inner = part.get_payload()
    if not isinstance(inner, list):
        return 0
    return sum(len(sub.as_bytes()) for sub in inner if isinstance(sub, Message))


def _automatic(message: EmailMessage, sender: str, own_addresses: Collection[str]) -> str | None:
    """Why a reply to this mail would go to a robot or back to us (RFC 3834, DSNs), else None."""
    # "auto-replied; owner-email=..." and "auto-generated (failure)" name their kind first.
    submitted = re.split(r"[\s;(]", _header(message, "Auto-Submitted").lower())[0]
    if submitted and submitted != "no":
        return f"auto-submitted: {submitted}"
    precedence = _header(message, "Precedence").lower()
    if precedence in AUTO_PRECEDENCE:
        return f"precedence: {precedence}"
    for name in ("X-Autoreply", "X-Autorespond"):
        if name in message:
            return f"{name.lower()}: {_header(message, name) or 'present'}"
    suppress = _header(message, "X-Auto-Response-Suppress")
    if AUTO_SUPPRESS & {word.strip().lower() for word in suppress.split(",")}:
        return f"x-auto-response-suppress: {suppress}"
    if message.get_content_type() == "multipart/report":
        return "content-type: multipart/report"
    for name in ("From", "Return-Path"):
        if "".join(_header(message, name).split()) == "<>":
            return f"empty sender: {name.lower()} <>"
    if sender.partition("@")[0].lower() in BOUNCE_SENDERS:
        return f"bounce sender: {sender}"
    own = {parseaddr(address)[1].lower() for address in own_addresses}
    if sender and sender.lower() in own:
        return f"loop: from our own address {sender}"
    return None

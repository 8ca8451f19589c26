"""Customers' text made safe to put in front of people in other systems (tickets, terminals).

Control characters can carry terminal escape sequences (ANSI: ESC, then ``[31m``) or forge
lines in a log or ticket; Unicode's bidirectional controls reorder what a reader sees of the
characters around them ("Trojan Source"). Identifiers refuse every control, format and
separator character. Free text keeps its line breaks and tabs, has the other control
characters shown as U+FFFD and the bidirectional controls removed; other format characters
(zero-width spaces, joiners) stay, as they carry nothing a terminal acts on.
"""

from __future__ import annotations

import unicodedata

# Categories of characters that are not text: controls, format characters (the bidirectional
# controls, zero-width joiners and the like among them), line and paragraph separators.
_NOT_TEXT = frozenset({"Cc", "Cf", "Zl", "Zp"})
# Bidirectional embeddings, overrides, isolates and marks: removed from free text.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_KEPT_CONTROLS = frozenset("\n\t")
REPLACEMENT = "\ufffd"


def has_hidden_characters(text: str) -> bool:
    """Whether ``text`` holds a control, format or separator character (an identifier may
    not)."""
    return any(unicodedata.category(character) in _NOT_TEXT for character in text)


def neutralised(text: str) -> str:
    """``text`` with line breaks and tabs as they are, bidirectional controls removed, CR and
    every other control character shown as U+FFFD (an escape sequence is then inert text)."""
    if text.isprintable():  # the common case, in C
        return text
    kept: list[str] = []
    for character in text:
        if character in _BIDI_CONTROLS:
            continue
        if character in _KEPT_CONTROLS or unicodedata.category(character) != "Cc":
            kept.append(character)
        else:
            kept.append(REPLACEMENT)
    return "".join(kept)

"""Provisions NLTK's VADER lexicon offline, from the copy the vaderSentiment wheel ships.

nltk's downloader needs the internet; production clusters and CI here have none.
"""

from __future__ import annotations

import zipfile
from functools import cache
from pathlib import Path

import nltk
import vaderSentiment

VADER_RESOURCE = "sentiment/vader_lexicon.zip"
_SOURCE = Path(vaderSentiment.__file__).parent / "vader_lexicon.txt"
_EMOJI_SOURCE = Path(vaderSentiment.__file__).parent / "emoji_utf8_lexicon.txt"


def ensure_vader_lexicon(data_dir: Path) -> Path:
    """Make ``sentiment/vader_lexicon.zip`` available to nltk under ``data_dir``."""
    target = data_dir / VADER_RESOURCE
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.write(_SOURCE, "vader_lexicon/vader_lexicon.txt")
        partial.replace(target)  # atomic: a concurrent reader never sees half a zip
    if str(data_dir) not in nltk.data.path:
        nltk.data.path.insert(0, str(data_dir))
    return target


@cache
def emoji_descriptions() -> dict[str, str]:
    """vaderSentiment's emoji lexicon: emoji -> description ("😡" -> "pouting face")."""
    descriptions: dict[str, str] = {}
    for line in _EMOJI_SOURCE.read_text(encoding="utf-8").splitlines():
        emoji, _, description = line.strip().partition("\t")
        if emoji and description:
            descriptions[emoji] = description.split("\t")[0]
    return descriptions

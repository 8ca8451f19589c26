"""The customer's language in what we send: gettext catalogs and Jinja2's i18n extension.

Each language's strings live in ``locale/<language>.po``, the format translators' tools edit;
Babel compiles a catalog in memory the first time its language is needed. English is the
templates' own text. A language without a catalog gets English.
"""

from __future__ import annotations

import gettext
from datetime import datetime
from functools import cache
from io import BytesIO
from pathlib import Path

from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

ENGLISH = "en"
LOCALE_DIR = Path(__file__).parent / "locale"
TEMPLATE_DIR = Path(__file__).parent / "templates"
# What customers are answered in; any other language gets English.
LANGUAGES = (ENGLISH, *sorted(path.stem for path in LOCALE_DIR.glob("*.po")))


def N_(message: str) -> str:
    """Marks a string for the catalogs (``make translations`` extracts it); translate later."""
    return message


def supported(language: str | None) -> str:
    return language if language in LANGUAGES else ENGLISH


@cache
def translations(language: str) -> gettext.NullTranslations:
    if supported(language) == ENGLISH:
        return gettext.NullTranslations()
    with (LOCALE_DIR / f"{language}.po").open("rb") as source:
        catalog = read_po(source, locale=language)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


@cache
def templates(language: str) -> Environment:
    """The templates in ``language``. Each Environment caches its compiled templates: parsed
    once per process, not checked for changes on disk (a stat per mail) since they only
    change with a deploy."""
    environment = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(["html", "html.j2"]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,
        extensions=["jinja2.ext.i18n"],
    )
    environment.install_gettext_translations(  # type: ignore[attr-defined]
        translations(supported(language)), newstyle=True
    )
    return environment


def gettext_in(language: str, message: str) -> str:
    return translations(supported(language)).gettext(message)


def received_at(moment: datetime, language: str) -> str:
    """When the incident arrived, as a customer of that language writes a date (in UTC)."""
    if supported(language) == ENGLISH:
        return moment.strftime("%B %d, %Y at %I:%M %p UTC")
    return f"{format_date(moment, format='long', locale=language)}, {moment:%H:%M} UTC"

"""Languages of the wallet app: which one a request gets, and its translations.

The current locale lives in a context variable, so concurrent requests (tasks or threads, each
with its own context) never see each other's language. `Templates.render` sets it around a
render; Python code that builds user-facing text (`from seiwallet.web.i18n import gettext as _`)
reads the same variable, or sets it with `use_locale`.

Catalogs are the `.po` files under `locale/<code>/LC_MESSAGES/`; they are compiled in memory on
first use (`load_catalogs()` does it eagerly at start-up), so the repository holds no `.mo`
files and there is no build step. After changing a user-facing string:

    .venv/bin/pybabel extract -F babel.cfg -o src/seiwallet/web/locale/messages.pot \
        --project seiwallet --copyright-holder "seiwallet developers" --no-wrap --sort-by-file src
    .venv/bin/pybabel update -i src/seiwallet/web/locale/messages.pot \
        -d src/seiwallet/web/locale -D messages --no-wrap --no-fuzzy-matching --ignore-obsolete

then translate the new entries (the unit tests fail while any is missing).
"""

from __future__ import annotations

import functools
import gettext as _gettext
import io
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Final

from babel import Locale, negotiate_locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

DEFAULT_LOCALE: Final = "en"
LOCALE_DIR: Final = Path(__file__).parent / "locale"
DOMAIN: Final = "messages"

# Each language is named in itself: someone who cannot read the current one still finds theirs.
LOCALE_LABELS: Final[dict[str, str]] = {
    "en": "English",
    "zh_Hant": "繁體中文",
    "fr": "Français",
}
SUPPORTED_LOCALES: Final[tuple[str, ...]] = tuple(LOCALE_LABELS)

# Regions that write Traditional Chinese; a bare "zh" or zh-CN is Simplified, which we do not
# offer, so those fall through to the reader's next preference.
_TRADITIONAL_CHINESE: Final = frozenset({"zh_tw", "zh_hk", "zh_mo", "zh_hant"})
_BY_LOWER: Final = {code.lower(): code for code in SUPPORTED_LOCALES}
_MAX_ACCEPT_LANGUAGE_ENTRIES: Final = 20

_current_locale: ContextVar[str] = ContextVar("seiwallet_locale", default=DEFAULT_LOCALE)


def locale_choices() -> list[tuple[str, str]]:
    """The supported locales as (code, native label) pairs, for a language switcher."""
    return list(LOCALE_LABELS.items())


def canonical_locale(value: str | None) -> str | None:
    """The supported locale `value` names (any case, `-` or `_`), or None."""
    if not value:
        return None
    key = value.strip().replace("-", "_").lower()
    if key in _TRADITIONAL_CHINESE or key.startswith("zh_hant_"):
        return "zh_Hant"
    return _BY_LOWER.get(key)


def language_tag(locale: str) -> str:
    """The BCP 47 tag of a locale code, for `lang` attributes and Content-Language."""
    return locale.replace("_", "-")


def negotiate(accept_language: str | None, cookie: str | None) -> str:
    """The locale a request gets: the `lang` cookie if supported, else Accept-Language, else en."""
    chosen = canonical_locale(cookie)
    if chosen is not None:
        return chosen
    preferred = [_normalise_tag(tag) for tag in _parse_accept_language(accept_language)]
    match = negotiate_locale(preferred, list(SUPPORTED_LOCALES), sep="_")
    return canonical_locale(match) or DEFAULT_LOCALE


def _normalise_tag(tag: str) -> str:
    """An Accept-Language tag in Babel's `_` form, Traditional Chinese regions mapped to zh_Hant."""
    underscored = tag.replace("-", "_")
    lower = underscored.lower()
    if lower in _TRADITIONAL_CHINESE or lower.startswith("zh_hant_"):
        return "zh_Hant"
    return underscored


def _parse_accept_language(header: str | None) -> list[str]:
    """The language tags of an Accept-Language header, most preferred first (q=0 dropped)."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")[:_MAX_ACCEPT_LANGUAGE_ENTRIES]):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*":
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            weighted.append((-quality, position, tag))
    return [tag for _, _, tag in sorted(weighted)]


@functools.cache
def translations(locale: str) -> _gettext.NullTranslations:
    """The compiled catalog of a supported locale (English is the msgids themselves)."""
    if locale not in LOCALE_LABELS:
        raise ValueError(f"unsupported locale {locale!r}; supported: {SUPPORTED_LOCALES}")
    if locale == DEFAULT_LOCALE:
        return _gettext.NullTranslations()
    path = LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as po_file:
        catalog = read_po(po_file, locale=Locale.parse(locale), domain=DOMAIN)
    buffer = io.BytesIO()
    # Fuzzy entries are guesses awaiting review: they fall back to English rather than show.
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return _gettext.GNUTranslations(buffer)


def load_catalogs() -> None:
    """Compile every catalog now, so that a broken `.po` file stops start-up, not a request."""
    for locale in SUPPORTED_LOCALES:
        translations(locale)


def current_locale() -> str:
    """The locale of the code running now (the request being rendered)."""
    return _current_locale.get()


@contextmanager
def use_locale(locale: str) -> Iterator[str]:
    """Run a block in `locale` (checked), restoring the previous one afterwards."""
    translations(locale)
    token = _current_locale.set(locale)
    try:
        yield locale
    finally:
        _current_locale.reset(token)


def gettext(message: str) -> str:
    """`message` translated into the current locale."""
    return translations(_current_locale.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for `n`, per the current locale's plural rules."""
    return translations(_current_locale.get()).ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    """`message` translated in a disambiguating `context` ("Cancel" a dialog or a passkey)."""
    return translations(_current_locale.get()).pgettext(context, message)


def npgettext(context: str, singular: str, plural: str, n: int) -> str:
    """`ngettext` with a disambiguating context."""
    return translations(_current_locale.get()).npgettext(context, singular, plural, n)

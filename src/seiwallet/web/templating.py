"""Jinja2 for the wallet app: the environment, its filters and globals, and rendering to responses.

Every page extends `base.html`, which needs these variables in every context: `user` (None or
an object with `display_name`, `email`, `wallet_address`, `sei_address`), `csrf_token`,
`is_local` and `request_path`; `render` adds `locale` (its argument) and `locales` ((code,
label) pairs) unless given. Undefined variables raise (StrictUndefined), so a page never renders
half-empty. Pages and their own variables are listed in tests/unit/test_web_templates.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import jinja2
from babel import dates as babel_dates
from starlette.responses import HTMLResponse

from seiwallet.web import i18n

TEMPLATES_DIR: Final = Path(__file__).parent / "templates"
STATIC_DIR: Final = Path(__file__).parent / "static"
STATIC_PREFIX: Final = "/static/"
_VERSION_LENGTH: Final = 10


class StaticUrls:
    """`static_url(path)`: a static file's URL with a content hash, so it can be cached forever.

    Hashes are computed once per file and kept; in debug mode a changed file (new mtime) is
    hashed again, so edits show without a restart.
    """

    def __init__(self, static_dir: Path, *, debug: bool = False) -> None:
        self._root = static_dir.resolve()
        self._debug = debug
        self._versions: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()

    def __call__(self, path: str) -> str:
        relative = path.lstrip("/")
        return f"{STATIC_PREFIX}{relative}?v={self.version(relative)}"

    def version(self, relative: str) -> str:
        """The first hex digits of the SHA-256 of a file under the static directory."""
        cached = self._versions.get(relative)
        if cached is not None and not self._debug:
            return cached[1]
        file = (self._root / relative).resolve()
        if not file.is_relative_to(self._root) or not file.is_file():
            raise FileNotFoundError(f"no static file {relative!r} under {self._root}")
        mtime = file.stat().st_mtime_ns
        if cached is not None and cached[0] == mtime:
            return cached[1]
        digest = hashlib.sha256(file.read_bytes()).hexdigest()[:_VERSION_LENGTH]
        with self._lock:
            self._versions[relative] = (mtime, digest)
        return digest


def _as_aware(value: dt.datetime) -> dt.datetime:
    # SQLite hands datetimes back naive; everything we store is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _zone(tz: str | dt.tzinfo | None) -> dt.tzinfo:
    if tz is None:
        return dt.UTC
    if isinstance(tz, str):
        return ZoneInfo(tz)
    return tz


def format_datetime(
    value: dt.datetime, format: str = "medium", tz: str | dt.tzinfo | None = None
) -> str:
    """A date and time in the current locale, in UTC unless `tz` is given, with the zone shown.

    "short" and "medium" use Babel's date format of that name with a short time (seconds are
    noise to a person) and the zone's abbreviation; "long", "full" and patterns go to Babel as-is.
    """
    zone = _zone(tz)
    local = _as_aware(value).astimezone(zone)
    locale = i18n.current_locale()
    if format not in {"short", "medium"}:
        return babel_dates.format_datetime(local, format, tzinfo=zone, locale=locale)
    style: Literal["short", "medium"] = "short" if format == "short" else "medium"
    date = babel_dates.format_date(local.date(), style, locale=locale)
    time = babel_dates.format_time(local, "short", tzinfo=zone, locale=locale)
    # "UTC" reads the same in every language; other zones as a localised offset ("GMT+08:00").
    offset = local.utcoffset()
    zone_name = (
        "UTC"
        if offset is not None and not offset
        else babel_dates.get_timezone_gmt(local, width="long", locale=locale)
    )
    combined = str(babel_dates.get_datetime_format(style, locale=locale)).replace("'", "")
    return f"{combined.format(time, date)} {zone_name}"


def format_date(value: dt.datetime | dt.date, format: str = "medium") -> str:
    """A date alone in the current locale (datetimes taken in UTC)."""
    if isinstance(value, dt.datetime):
        value = _as_aware(value).astimezone(dt.UTC).date()
    return babel_dates.format_date(value, format, locale=i18n.current_locale())


def format_timedelta(value: dt.timedelta, threshold: float = 0.85) -> str:
    """A duration in words in the current locale ("3 hours", "3 heures")."""
    return babel_dates.format_timedelta(value, threshold=threshold, locale=i18n.current_locale())


def format_relative(value: dt.datetime, now: dt.datetime | None = None) -> str:
    """How far `value` is from now, in words ("in 3 hours", "il y a 2 jours")."""
    reference = _as_aware(now) if now is not None else dt.datetime.now(dt.UTC)
    return babel_dates.format_timedelta(
        _as_aware(value) - reference, add_direction=True, locale=i18n.current_locale()
    )


def iso_datetime(value: dt.datetime) -> str:
    """A machine-readable UTC timestamp, for `<time datetime>`."""
    return _as_aware(value).astimezone(dt.UTC).isoformat(timespec="seconds")


def short_address(value: str) -> str:
    """An address shortened for lists: `0x1234…abcd`, `sei1abc…wxyz` (full ones elsewhere)."""
    head = 7 if value.startswith("sei1") else 6
    if len(value) <= head + 4 + 1:
        return value
    return f"{value[:head]}…{value[-4:]}"


class Templates:
    """The wallet app's templates: a configured Jinja2 environment and a renderer."""

    def __init__(self, env: jinja2.Environment) -> None:
        self.env = env

    def render(
        self,
        name: str,
        context: Mapping[str, Any],
        *,
        locale: str,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        """Render template `name` in `locale` into an HTML response."""
        html = self.render_to_string(name, context, locale=locale)
        response_headers = {"Content-Language": i18n.language_tag(locale)}
        response_headers.update(headers or {})
        return HTMLResponse(html, status_code=status_code, headers=response_headers)

    def render_to_string(self, name: str, context: Mapping[str, Any], *, locale: str) -> str:
        """Render template `name` in `locale`; the current locale is set only for this call."""
        # `locale` is this call's (the one translations use); `locales` may be left out.
        values = {"locales": i18n.locale_choices(), **context, "locale": locale}
        with i18n.use_locale(locale):
            return self.env.get_template(name).render(values)


def create_templates(*, static_dir: Path = STATIC_DIR, debug: bool = False) -> Templates:
    """The wallet app's templates; catalogs are compiled now so a broken one fails start-up."""
    i18n.load_catalogs()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=debug,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    # The same whitespace rule as extraction (`trimmed` in babel.cfg), or msgids would differ.
    env.policies["ext.i18n.trimmed"] = True
    # Newstyle: `_("Sent to %(name)s", name=x)` escapes `x` and fails loudly on a bad placeholder.
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=i18n.gettext,
        ngettext=i18n.ngettext,
        newstyle=True,
        pgettext=i18n.pgettext,
        npgettext=i18n.npgettext,
    )
    env.globals["static_url"] = StaticUrls(static_dir, debug=debug)
    env.globals["language_tag"] = i18n.language_tag
    env.filters["datetime"] = format_datetime
    env.filters["date"] = format_date
    env.filters["timedelta"] = format_timedelta
    env.filters["relative"] = format_relative
    env.filters["iso"] = iso_datetime
    env.filters["short_address"] = short_address
    return Templates(env)

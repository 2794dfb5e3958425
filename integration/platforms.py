"""Everything that differs between the Zapier, Make and plain-API entry points.

Routes take the platform from the URL segment (`/v1/<platform>/...`); nothing else
in the code base branches on the platform name: it asks the `Platform` instead.
"""
from __future__ import annotations

import enum

from werkzeug.routing import BaseConverter


class Platform(enum.Enum):
    ZAPIER = "zapier"
    MAKE = "make"
    API = "api"

    @property
    def request_source(self) -> str:
        """The upstream `requestSource` this entry point reports."""
        return _REQUEST_SOURCE[self]

    @property
    def trigger_includes_baseline(self) -> bool:
        """Zapier seeds its dedupe store from the first poll and shows samples in the
        Zap editor, so its trigger lists the baseline accounts after the journal.
        Make and the API keep their own position (`since`) and only want real events."""
        return self is Platform.ZAPIER


_REQUEST_SOURCE = {
    Platform.ZAPIER: "ZAPIER",
    Platform.MAKE: "MAKE_DOT_COM",
    Platform.API: "API",
}


class PlatformConverter(BaseConverter):
    """URL converter: any other segment does not match, so Flask answers 404."""

    regex = "(?:zapier|make|api)"

    def to_python(self, value: str) -> Platform:
        return Platform(value)

    def to_url(self, value) -> str:
        return value.value if isinstance(value, Platform) else str(value)

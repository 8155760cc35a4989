"""Where an endpoint config (a judge's, an oracle's, a generator's) points, and how messages and
outputs name it: never with credentials, a query or a fragment. Standard library only, so the CLI
names a judge's endpoint without loading the HTTP client."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from ..config import EndpointConfig

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def display_url(url: str) -> str:
    """The endpoint as shown in messages: no user info, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def base_url_of(config: EndpointConfig) -> str:
    """The endpoint a config asks: its ``base_url``, else ``$OPENAI_BASE_URL``, else OpenAI's."""
    return (config.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def endpoint_of(config: EndpointConfig) -> str:
    """The endpoint a config asks, as messages and run output show it (:func:`display_url`)."""
    return display_url(base_url_of(config))

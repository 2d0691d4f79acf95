"""The page's files, shipped in the package (``consim/ui/static/``, package data): no CDN."""

from __future__ import annotations

from functools import cache
from importlib import resources

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@cache
def _names() -> frozenset[str]:
    return frozenset(p.name for p in resources.files("consim.ui").joinpath("static").iterdir())


def asset(name: str) -> bytes:
    """One file of ``static/`` by its plain name (no paths: nothing outside it is served)."""
    if name not in _names():
        raise FileNotFoundError(name)
    return resources.files("consim.ui").joinpath("static", name).read_bytes()


def content_type(name: str) -> str:
    for suffix, kind in _TYPES.items():
        if name.endswith(suffix):
            return kind
    return "application/octet-stream"

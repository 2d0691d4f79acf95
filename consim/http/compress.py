"""Response compression as Consul's HTTP server does it (NYTimes/gziphandler around every API
endpoint, agent/http.go ``handleFuncMetrics``).

Every answer of a registered endpoint carries ``Vary: Accept-Encoding``; a body of at least
``MIN_SIZE`` bytes is gzipped when the request's Accept-Encoding gives gzip a qvalue above 0.
The index page and the 404 for unknown paths are not wrapped (no Vary, never compressed).
"""

from __future__ import annotations

import gzip

# gziphandler.DefaultMinSize: Consul keeps it for every endpoint but the two streaming ones.
MIN_SIZE = 1400
# compress/gzip's DefaultCompression is flate level 6.
_LEVEL = 6


def parse_encodings(value: str) -> dict[str, float]:
    """gziphandler's parseEncodings: content-coding -> qvalue; malformed codings are dropped.

    As gziphandler's parseCoding, every ``;`` part resets the qvalue to 1 before reading it, so
    only a ``q=`` in the last part counts (``gzip;q=0;x`` is accepted)."""
    out: dict[str, float] = {}
    for item in value.split(","):
        coding = ""
        qvalue = 1.0
        bad = False
        for n, part in enumerate(item.split(";")):
            part = part.strip()
            qvalue = 1.0
            if n == 0:
                coding = part.lower()
            elif part.startswith("q="):
                try:
                    qvalue = float(part[2:].replace("_", "!"))  # Go refuses 1_0 here
                except ValueError:
                    qvalue, bad = 0.0, True  # the error sticks, as parseCoding's err does
                if qvalue in (float("inf"), float("-inf")):
                    bad = True  # strconv.ErrRange
                qvalue = min(max(qvalue, 0.0), 1.0)
        if coding and not bad:  # an empty coding is an error too
            out[coding] = qvalue
    return out


def accepts_gzip(accept_encoding: str | None) -> bool:
    """gziphandler's acceptsGzip."""
    return parse_encodings(accept_encoding or "").get("gzip", 0.0) > 0.0


def maybe_gzip(
    body: bytes, headers: dict[str, str], accept_encoding: str | None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers as gziphandler sends them: ``Vary`` always, gzip when asked and the
    body is large enough and not already encoded."""
    headers = dict(headers)
    vary = headers.get("Vary")
    headers["Vary"] = f"{vary}, Accept-Encoding" if vary else "Accept-Encoding"
    if (
        len(body) >= MIN_SIZE
        and "Content-Encoding" not in headers
        and accepts_gzip(accept_encoding)
    ):
        body = gzip.compress(body, compresslevel=_LEVEL, mtime=0)
        headers["Content-Encoding"] = "gzip"
    return body, headers

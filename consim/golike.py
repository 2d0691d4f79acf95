"""Go standard-library behaviour the HTTP API must reproduce byte for byte.

Consul is written in Go; its error texts embed Go's ``strconv``/``time``/``encoding/json``
messages and its JSON is Go's. These helpers return exactly those strings.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator
from typing import Any

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_COMPONENT = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]*)")
_MAX_INT64 = (1 << 63) - 1


class GoError(ValueError):
    """A Go error; ``str(exc)`` is Go's ``err.Error()`` text."""


def parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration``; returns seconds. Raises :class:`GoError` with Go's text."""
    orig = text
    quoted = json.dumps(orig)
    s = text
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise GoError(f"time: invalid duration {quoted}")
    total = 0
    while s:
        m = _COMPONENT.match(s)  # always matches (both groups may be empty)
        assert m is not None
        num, unit = m.group(1), m.group(2)
        if num in ("", "."):
            raise GoError(f"time: invalid duration {quoted}")
        if not unit:
            raise GoError(f"time: missing unit in duration {quoted}")
        if unit not in _UNITS:
            raise GoError(f"time: unknown unit {json.dumps(unit)} in duration {quoted}")
        whole, _, frac = num.partition(".")
        whole = whole.lstrip("0")
        if len(whole) > 19:  # Go's leadingInt overflows: more than any int64
            raise GoError(f"time: invalid duration {quoted}")
        value = int(whole or "0") * _UNITS[unit]
        if frac:
            # Go's leadingFraction drops digits past what an int64 holds; so do we (25 is more
            # than enough for nanoseconds of an hour).
            frac = frac[:25]
            value += int(frac) * _UNITS[unit] // (10 ** len(frac))
        total += value
        if total > _MAX_INT64:
            raise GoError(f"time: invalid duration {quoted}")
        s = s[m.end() :]
    return (-total if neg else total) / 1e9


def format_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` for a duration given in seconds."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    neg = ns < 0
    ns = abs(ns)
    if ns < 1_000_000_000:
        # Sub-second: one unit (ns, µs or ms) with a fraction.
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                out = _frac(ns, size) + unit
                break
    else:
        h, rem = divmod(ns, 3600 * 1_000_000_000)
        m, rem = divmod(rem, 60 * 1_000_000_000)
        out = _frac(rem, 1_000_000_000) + "s"
        if h:
            out = f"{h}h{m}m{out}"
        elif m:
            out = f"{m}m{out}"
    return "-" + out if neg else out


def _frac(value: int, size: int) -> str:
    whole, frac = divmod(value, size)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(size)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def _syntax(fn: str, text: str) -> GoError:
    return GoError(f"strconv.{fn}: parsing {json.dumps(text)}: invalid syntax")


def _range(fn: str, text: str) -> GoError:
    return GoError(f"strconv.{fn}: parsing {json.dumps(text)}: value out of range")


def atoi(text: str) -> int:
    """Go's ``strconv.Atoi`` (64-bit int)."""
    s = text[1:] if text[:1] in "+-" else text
    if not s or not s.isascii() or not s.isdigit():
        raise _syntax("Atoi", text)
    digits = s.lstrip("0") or "0"
    if len(digits) > 19:
        raise _range("Atoi", text)
    value = -int(digits) if text[0] == "-" else int(digits)
    if not -(1 << 63) <= value <= _MAX_INT64:
        raise _range("Atoi", text)
    return value


def parse_uint(text: str) -> int:
    """Go's ``strconv.ParseUint(text, 10, 64)``."""
    if not text or not text.isascii() or not text.isdigit():
        raise _syntax("ParseUint", text)
    digits = text.lstrip("0") or "0"
    if len(digits) > 20:
        raise _range("ParseUint", text)
    value = int(digits)
    if value >= 1 << 64:
        raise _range("ParseUint", text)
    return value


def parse_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise _syntax("ParseBool", text)


# json.dumps builds a new JSONEncoder per call whenever it is given options: build ours once.
_JSON_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_JSON_PRETTY = json.JSONEncoder(indent=4, ensure_ascii=False, allow_nan=False).encode


def marshal_json(obj: Any, pretty: bool) -> bytes:
    """Go's ``json.Marshal`` (or ``MarshalIndent`` with 4 spaces plus a newline for ?pretty).

    Go escapes ``<``, ``>``, ``&``, U+2028 and U+2029 and writes other non-ASCII as UTF-8.
    Map key order is the caller's: build dicts in Go's order (struct fields in declaration
    order, map keys sorted).
    """
    if pretty:
        text = _JSON_PRETTY(obj) + "\n"
    else:
        text = _JSON_COMPACT(obj)
    for ch, esc in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(ch, esc)
    return text.encode("utf-8")


def multierror(errors: list[str]) -> str:
    """hashicorp/go-multierror's default ListFormatFunc."""
    if len(errors) == 1:
        return f"1 error occurred:\n\t* {errors[0]}\n\n"
    points = "\n\t".join(f"* {e}" for e in errors)
    return f"{len(errors)} errors occurred:\n\t{points}\n\n"


def go_float(value: float) -> int | float:
    """Go marshals integral float64s without a fraction; keep ints as ints."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


_CONTEXT = {
    "Expecting value": "looking for beginning of value",
    "Expecting property name enclosed in double quotes": "looking for beginning of object key string",
    "Expecting ':' delimiter": "after object key",
}


class JSONBigNumber(float):
    """A JSON number too large for any Go numeric type (``float64`` included).

    Its value is ±inf; ``text`` (and ``str()``) is the number as written, which Go's
    ``cannot unmarshal number <text> ...`` errors show.
    """

    text: str

    def __new__(cls, text: str) -> JSONBigNumber:
        obj = super().__new__(cls, "-inf" if text.startswith("-") else "inf")
        obj.text = text
        return obj

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return self.text


# Go's encoding/json: maxNestingDepth.
JSON_MAX_DEPTH = 10000
# Python parses ints of at most 4300 digits (and in quadratic time); no Go integer has more than 20.
_MAX_INT_DIGITS = 400


def _json_int(text: str) -> int | float:
    if len(text) > _MAX_INT_DIGITS:
        return JSONBigNumber(text)
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    return JSONBigNumber(text) if math.isinf(value) else value


_DECODER = json.JSONDecoder(parse_int=_json_int, parse_float=_json_float)


def _brackets(text: str) -> Iterator[tuple[int, str]]:
    """Each ``[{]}`` of ``text`` outside JSON strings, with its position."""
    in_str = esc = False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{]}":
            yield i, ch


def _json_depth(text: str) -> tuple[int, int]:
    """The deepest nesting in ``text`` and where it first exceeds Go's limit (-1 if it does not)."""
    depth = deepest = 0
    for i, ch in _brackets(text):
        if ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if depth > JSON_MAX_DEPTH:
                    return deepest, i
        else:
            depth -= 1
            if depth < 0:
                break  # a syntax error the decoder reports
    return deepest, -1


def _replace_surrogates(value: Any) -> Any:
    """Go decodes an unpaired ``\\uD800``-style escape as U+FFFD; Python keeps the surrogate."""
    if isinstance(value, str):
        if any("\ud800" <= c <= "\udfff" for c in value):
            return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)
        return value
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


def decode_json_value(data: bytes) -> Any:
    """Go's ``json.NewDecoder(r).Decode(&v)``: the first JSON value; trailing data is ignored.

    Raises :class:`GoError` with the decoder's text (``EOF``, ``unexpected EOF``,
    ``invalid character 'x' looking for beginning of value``, ``invalid character '['
    exceeded max depth``...). Numbers too large for Go come back as :class:`JSONBigNumber`.
    """
    text = data.decode("utf-8", errors="replace")
    start = len(text) - len(text.lstrip(" \t\r\n"))
    if start == len(text):
        raise GoError("EOF")
    deepest, where = _json_depth(text)
    if where >= 0:
        raise GoError(f"invalid character '{text[where]}' exceeded max depth")
    limit = sys.getrecursionlimit()
    try:
        if deepest + 100 > limit:
            # The C decoder recurses once per level; Go allows 10000 levels.
            sys.setrecursionlimit(deepest + 200)
        value, _ = _DECODER.raw_decode(text, start)
        if deepest + 100 > limit:
            value = _replace_surrogates_deep(value)
        else:
            value = _replace_surrogates(value)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text) or exc.msg.startswith("Unterminated string"):
            raise GoError("unexpected EOF") from None
        ch = text[exc.pos]
        if exc.msg == "Expecting ',' delimiter":
            opener = _innermost_open(text[: exc.pos])
            where = "after array element" if opener == "[" else "after object key:value pair"
        else:
            where = _CONTEXT.get(exc.msg, "looking for beginning of value")
        shown = "'\\''" if ch == "'" else f"'{ch}'"
        raise GoError(f"invalid character {shown} {where}") from None
    finally:
        sys.setrecursionlimit(limit)
    return value


def _replace_surrogates_deep(value: Any) -> Any:
    # A value nested deeper than Python's recursion limit: the same walk, with an explicit stack.
    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        item = container[key]
        if isinstance(item, str):
            container[key] = _replace_surrogates(item)
        elif isinstance(item, list):
            stack.extend((item, i) for i in range(len(item)))
        elif isinstance(item, dict):
            fixed = {_replace_surrogates(k): v for k, v in item.items()}
            if list(fixed) != list(item):
                item.clear()
                item.update(fixed)
            stack.extend((item, k) for k in item)
    return root[0]


def _innermost_open(prefix: str) -> str:
    depth: list[str] = []
    for _, ch in _brackets(prefix):
        if ch in "[{":
            depth.append(ch)
        elif depth:
            depth.pop()
    return depth[-1] if depth else ""


def go_json_kind(value: Any) -> str:
    """The JSON kind Go's encoding/json names in ``cannot unmarshal <kind> into ...`` errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"

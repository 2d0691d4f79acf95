"""The ``?filter`` expression language of Consul's list endpoints (hashicorp/go-bexpr), over the
JSON-shaped records an endpoint answers with.

``compile_filter(text)`` returns a predicate on one record (a dict with Go field names), or raises
:class:`FilterError` with the text Consul's answer carries (``Failed to create boolean expression
evaluator: ...``). Supported, as go-bexpr: ``==``, ``!=``, ``is [not] empty``, ``[not] in``,
``[not] contains``, ``[not] matches`` (a regular expression), ``and``, ``or``, ``not``,
parentheses; values as ``"double"`` or `` `raw` `` strings, numbers, ``true``/``false`` or bare
words; selectors are dotted field paths (``Service.Tags``, ``NodeMeta.rack``), and a path through
a list matches when any element does. What consim does not do: go-bexpr checks a selector against
the Go type when the filter is created; consim treats an unknown selector as matching nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Record = dict[str, Any]
Predicate = Callable[[Record], bool]

PREFIX = "Failed to create boolean expression evaluator: "
_KEYWORDS = {"and", "or", "not", "in", "contains", "matches", "is", "empty"}
_TOKEN = re.compile(
    r'\s*(?:(?P<op>==|!=|\(|\))|"(?P<dq>(?:[^"\\]|\\.)*)"|`(?P<raw>[^`]*)`|(?P<word>[^\s()"`=!]+))'
)
_MISSING = object()


class FilterError(ValueError):
    """A filter that does not parse; ``str()`` is Consul's text."""


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, value, column) for each token: op, str (quoted), word."""
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterError(f"{PREFIX}1:{pos + 1} ({pos}): no match found")
        column = m.start() + len(m.group(0)) - len(m.group(0).lstrip()) + 1
        if m.group("op"):
            out.append(("op", m.group("op"), column))
        elif m.group("dq") is not None:
            out.append(("str", _unescape(m.group("dq")), column))
        elif m.group("raw") is not None:
            out.append(("str", m.group("raw"), column))
        else:
            out.append(("word", m.group("word"), column))
        pos = m.end()
    return out


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0

    def fail(self, why: str = "no match found") -> FilterError:
        col = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text) + 1
        return FilterError(f"{PREFIX}1:{col} ({col - 1}): {why}")

    def peek(self, offset: int = 0) -> tuple[str, str, int] | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def keyword(self, word: str, offset: int = 0) -> bool:
        t = self.peek(offset)
        return t is not None and t[0] == "word" and t[1] == word

    def take(self) -> tuple[str, str, int]:
        t = self.peek()
        if t is None:
            raise self.fail()
        self.i += 1
        return t

    def parse(self) -> Predicate:
        if not self.tokens:
            raise self.fail()
        pred = self.or_expr()
        if self.peek() is not None:
            raise self.fail()
        return pred

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.keyword("or"):
            self.i += 1
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda r: any(p(r) for p in parts))

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while self.keyword("and"):
            self.i += 1
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else (lambda r: all(p(r) for p in parts))

    def not_expr(self) -> Predicate:
        if self.keyword("not"):
            self.i += 1
            inner = self.not_expr()
            return lambda r: not inner(r)
        t = self.peek()
        if t is not None and t == ("op", "(", t[2]):
            self.i += 1
            inner = self.or_expr()
            close = self.take()
            if close[:2] != ("op", ")"):
                self.i -= 1
                raise self.fail()
            return inner
        return self.match()

    def value(self) -> str:
        t = self.take()
        if t[0] == "op" or (t[0] == "word" and t[1] in _KEYWORDS):
            self.i -= 1
            raise self.fail()
        return t[1]

    def selector(self) -> list[str]:
        t = self.take()
        if t[0] != "word" or t[1] in _KEYWORDS or not re.match(r"^[A-Za-z_][\w.\-]*$", t[1]):
            self.i -= 1
            raise self.fail()
        return t[1].split(".")

    def match(self) -> Predicate:
        # "value" [not] in Selector
        first = self.peek()
        if first is not None and (
            first[0] == "str"
            or self.keyword("in", 1)
            or (self.keyword("not", 1) and self.keyword("in", 2))
        ):
            value = self.value()
            negate = self.keyword("not")
            if negate:
                self.i += 1
            if not self.keyword("in"):
                raise self.fail()
            self.i += 1
            path = self.selector()
            return _negated(negate, lambda r: any(_contains(v, value) for v in _resolve(r, path)))
        path = self.selector()
        t = self.peek()
        if t is None:
            raise self.fail()
        if t[:2] in (("op", "=="), ("op", "!=")):
            self.i += 1
            value = self.value()
            equal = lambda r: any(_equal(v, value) for v in _resolve(r, path))  # noqa: E731
            return _negated(t[1] == "!=", equal)
        if self.keyword("is"):
            self.i += 1
            negate = self.keyword("not")
            if negate:
                self.i += 1
            if not self.keyword("empty"):
                raise self.fail()
            self.i += 1
            return _negated(negate, lambda r: all(_empty(v) for v in _resolve(r, path)))
        negate = self.keyword("not")
        if negate:
            self.i += 1
        if self.keyword("contains"):
            self.i += 1
            value = self.value()
            return _negated(negate, lambda r: any(_contains(v, value) for v in _resolve(r, path)))
        if self.keyword("matches"):
            self.i += 1
            pattern = self.value()
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                raise FilterError(f"{PREFIX}error parsing regexp: {exc}") from None
            return _negated(
                negate,
                lambda r: any(isinstance(v, str) and regex.search(v) for v in _resolve(r, path)),
            )
        raise self.fail()


def _negated(negate: bool, pred: Predicate) -> Predicate:
    return (lambda r: not pred(r)) if negate else pred


def _resolve(record: Any, path: list[str]) -> list[Any]:
    """Every value at ``path`` (a list on the way fans out); [] when the path leads nowhere."""
    values = [record]
    for part in path:
        nxt: list[Any] = []
        for v in values:
            for item in v if isinstance(v, list) else [v]:
                if isinstance(item, dict):
                    found = item.get(part, _MISSING)
                    if found is _MISSING:
                        lower = {str(k).lower(): k for k in item}
                        key = lower.get(part.lower())
                        found = item[key] if key is not None else _MISSING
                    if found is not _MISSING:
                        nxt.append(found)
        values = nxt
    return values or [None]


def _equal(actual: Any, literal: str) -> bool:
    if isinstance(actual, bool):
        return literal.lower() in ("true", "false") and actual == (literal.lower() == "true")
    if isinstance(actual, int | float):
        try:
            return float(literal) == float(actual)
        except ValueError:
            return False
    if isinstance(actual, str):
        return actual == literal
    return False


def _contains(container: Any, value: str) -> bool:
    if isinstance(container, list):
        return any(_equal(item, value) for item in container)
    if isinstance(container, dict):
        return value in container
    if isinstance(container, str):
        return value in container
    return False


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def compile_filter(text: str) -> Predicate:
    """The predicate of a ``?filter`` expression (raises :class:`FilterError`)."""
    return _Parser(text).parse()

"""Kubernetes label selectors (``labels.Parse``): the lexer, the parser, matching and canonical strings.

Shared by the drivers that select objects by label: the metrics API (a request's ``labelSelector``)
and the service (an informer's reads by a Scale's ``status.selector``). It sits below both, beside
:mod:`autoscaler.errors`, because the two must not import each other (``autoscaler.metrics_api.selector``
re-exports it).

A port of apimachinery ``pkg/labels/selector.go`` so that a bad ``labelSelector`` gets the same
``400 BadRequest`` message the Go API server would send, e.g. ``unable to parse requirement: found
'', expected: in, notin, =, ==, !=, gt, lt``. Operators: ``=``, ``==``, ``!=``, ``in``, ``notin``,
exists ``k``, does-not-exist ``!k``, ``>`` and ``<`` (integer values, as in current apimachinery).

Caveat: the Go code joins several validation errors of one requirement as an aggregate
(``[e1, e2]``); so do we, but only the key, value and operator-arity checks that reach it from the
parser are ported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

__all__ = ["Requirement", "Selector", "SelectorError", "parse_selector"]


class SelectorError(ValueError):
    """A selector that ``labels.Parse`` rejects; the text is the Go error message."""


class _Tok(Enum):
    ERROR = 0
    END = 1
    CLOSE = 2
    COMMA = 3
    NOT = 4
    DOUBLE_EQ = 5
    EQ = 6
    GT = 7
    IDENT = 8
    IN = 9
    LT = 10
    NOT_EQ = 11
    NOT_IN = 12
    OPEN = 13


_STRING_TO_TOKEN = {
    ")": _Tok.CLOSE,
    ",": _Tok.COMMA,
    "!": _Tok.NOT,
    "==": _Tok.DOUBLE_EQ,
    "=": _Tok.EQ,
    ">": _Tok.GT,
    "in": _Tok.IN,
    "<": _Tok.LT,
    "!=": _Tok.NOT_EQ,
    "notin": _Tok.NOT_IN,
    "(": _Tok.OPEN,
}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")
_BINARY_OPERATORS = "in, notin, =, ==, !=, gt, lt"

# apimachinery pkg/util/validation
_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)
_QNAME = re.compile(f"^{_QNAME_FMT}$")
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = f"{_DNS1123_LABEL_FMT}(\\.{_DNS1123_LABEL_FMT})*"
_DNS1123_SUBDOMAIN = re.compile(f"^{_DNS1123_SUBDOMAIN_FMT}$")
_DNS1123_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_FMT = f"({_QNAME_FMT})?"
_LABEL_VALUE = re.compile(f"^{_LABEL_VALUE_FMT}$")
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    # validation.RegexError, double spaces included.
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    out = msg + " (e.g. "
    for i, example in enumerate(examples):
        if i > 0:
            out += " or "
        out += f"'{example}', "
    return out + f"regex used for validation is '{fmt}')"


def _qualified_name_errors(value: str) -> list[str]:
    errors: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errors.append("prefix part must be no more than 253 characters")
            if not _DNS1123_SUBDOMAIN.match(prefix):
                errors.append("prefix part " + _regex_error(_DNS1123_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    else:
        return [
            "a qualified name "
            + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    if not _QNAME.match(name):
        errors.append("name part " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errors


def _label_value_errors(value: str) -> list[str]:
    errors: list[str] = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _LABEL_VALUE.match(value):
        errors.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errors


def _go_quote(value: str) -> str:
    """``%q`` for the ASCII strings selectors carry."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _go_string_slice(values: list[str]) -> str:
    return "[]string{" + ", ".join(_go_quote(v) for v in values) + "}"


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``key op values`` term; ``op`` is one of = == != in notin exists ! gt lt."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        if self.op in ("=", "==", "in"):
            return has and labels[self.key] in self.values
        if self.op in ("!=", "notin"):
            return not has or labels[self.key] not in self.values
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if not has:  # gt, lt
            return False
        try:
            mine, theirs = int(labels[self.key]), int(self.values[0])
        except ValueError:
            return False
        return mine > theirs if self.op == "gt" else mine < theirs

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return f"!{self.key}"
        symbol = {"=": "=", "==": "==", "!=": "!=", "gt": ">", "lt": "<"}.get(self.op)
        if symbol is not None:
            return f"{self.key}{symbol}{self.values[0]}"
        return f"{self.key} {self.op} ({','.join(self.values)})"


@dataclass(frozen=True, slots=True)
class Selector:
    """A conjunction of requirements, sorted by key as ``labels.Parse`` returns them. Empty matches all."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _lex(text: str) -> list[tuple[_Tok, str]]:
    items: list[tuple[_Tok, str]] = []
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= n:
            items.append((_Tok.END, ""))
            return items
        if text[pos] in _SPECIAL:
            buffer, last = "", None
            while pos < n:
                ch = text[pos]
                pos += 1
                if ch not in _SPECIAL:
                    pos -= 1
                    break
                buffer += ch
                token = _STRING_TO_TOKEN.get(buffer)
                if token is not None:
                    last = (token, buffer)
                elif last is not None:
                    pos -= 1
                    break
            items.append(last if last is not None else (_Tok.ERROR, f"error expected: keyword found '{buffer}'"))
            continue
        start = pos
        while pos < n and text[pos] not in _SPECIAL and text[pos] not in _WHITESPACE:
            pos += 1
        word = text[start:pos]
        items.append((_STRING_TO_TOKEN.get(word, _Tok.IDENT), word))


class _Parser:
    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.position = 0

    def _get(self, index: int, values: bool) -> tuple[_Tok, str]:
        tok, lit = self.items[min(index, len(self.items) - 1)]
        if values and tok in (_Tok.IN, _Tok.NOT_IN):
            tok = _Tok.IDENT
        return tok, lit

    def lookahead(self, values: bool = True) -> tuple[_Tok, str]:
        return self._get(self.position, values)

    def consume(self, values: bool = True) -> tuple[_Tok, str]:
        self.position += 1
        return self._get(self.position - 1, values)

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok in (_Tok.IDENT, _Tok.NOT):
                try:
                    requirements.append(self.requirement())
                except SelectorError as exc:
                    raise SelectorError(f"unable to parse requirement: {exc}") from None
                t, lit = self.consume()
                if t is _Tok.END:
                    return requirements
                if t is _Tok.COMMA:
                    t2, l2 = self.lookahead()
                    if t2 not in (_Tok.IDENT, _Tok.NOT):
                        raise SelectorError(f"found '{l2}', expected: identifier after ','")
                    continue
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            if tok is _Tok.END:
                return requirements
            raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        tok, key = self.consume()
        op: str | None = None
        if tok is _Tok.NOT:
            op = "!"
            tok, key = self.consume()
        if tok is not _Tok.IDENT:
            raise SelectorError(f"found '{key}', expected: identifier")
        errors = _qualified_name_errors(key)
        if errors:
            raise SelectorError(f"<nil>: Invalid value: {_go_quote(key)}: {'; '.join(errors)}")
        if op == "!" or self.lookahead()[0] in (_Tok.END, _Tok.COMMA):
            return _new_requirement(key, op or "exists", [])
        tok, lit = self.consume(values=False)
        operator = {
            _Tok.IN: "in",
            _Tok.EQ: "=",
            _Tok.DOUBLE_EQ: "==",
            _Tok.GT: "gt",
            _Tok.LT: "lt",
            _Tok.NOT_IN: "notin",
            _Tok.NOT_EQ: "!=",
        }.get(tok)
        if operator is None:
            raise SelectorError(f"found '{lit}', expected: {_BINARY_OPERATORS}")
        values = self.set_values() if operator in ("in", "notin") else self.exact_value()
        return _new_requirement(key, operator, values)

    def set_values(self) -> list[str]:
        tok, lit = self.consume()
        if tok is not _Tok.OPEN:
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok in (_Tok.IDENT, _Tok.COMMA):
            values = self.identifiers()
            if self.consume()[0] is not _Tok.CLOSE:
                raise SelectorError(f"found '{lit}', expected: ')'")
            return values
        if tok is _Tok.CLOSE:
            self.consume()
            return [""]
        raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")

    def identifiers(self) -> list[str]:
        found: set[str] = set()
        while True:
            tok, lit = self.consume()
            if tok is _Tok.IDENT:
                found.add(lit)
                tok2, lit2 = self.lookahead()
                if tok2 is _Tok.COMMA:
                    continue
                if tok2 is _Tok.CLOSE:
                    return sorted(found)
                raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if tok is _Tok.COMMA:
                if not found:
                    found.add("")
                tok2, _ = self.lookahead()
                if tok2 is _Tok.CLOSE:
                    found.add("")
                    return sorted(found)
                if tok2 is _Tok.COMMA:
                    self.consume()
                    found.add("")
                continue
            raise SelectorError(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self) -> list[str]:
        tok, _ = self.lookahead()
        if tok in (_Tok.END, _Tok.COMMA):
            return [""]
        tok, lit = self.consume()
        if tok is _Tok.IDENT:
            return [lit]
        raise SelectorError(f"found '{lit}', expected: identifier")


def _new_requirement(key: str, op: str, values: list[str]) -> Requirement:
    """``NewRequirement``'s validation, with its field paths (``values[0]``) and aggregate format."""
    errors: list[str] = []
    if op in ("in", "notin") and not values:
        errors.append(
            f"values: Invalid value: {_go_string_slice(values)}: for 'in', 'notin' operators, values set can't be empty"
        )
    if op in ("gt", "lt"):
        for i, value in enumerate(values):
            try:
                int(value, 10)
            except ValueError:
                errors.append(
                    f"values[{i}]: Invalid value: {_go_quote(value)}: "
                    "for 'Gt', 'Lt' operators, the value must be an integer"
                )
    for i, value in enumerate(values):
        problems = _label_value_errors(value)
        if problems:
            errors.append(f"values[{i}][{key}]: Invalid value: {_go_quote(value)}: {'; '.join(problems)}")
    if len(errors) == 1:
        raise SelectorError(errors[0])
    if errors:
        raise SelectorError("[" + ", ".join(errors) + "]")
    return Requirement(key, op, tuple(values))


def parse_selector(text: str) -> Selector:
    """``labels.Parse``: an empty string selects everything. Raises :class:`SelectorError`."""
    requirements = _Parser(text).parse()
    return Selector(tuple(sorted(requirements, key=lambda r: r.key)))

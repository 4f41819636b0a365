"""One declarative description of the policy file format, used twice: to validate documents (every
error carries a field path, the bad value and, for unknown keys, a "did you mean" hint) and to emit
the JSON Schema that editors use (``inference-autoscaler schema``).

Cross-field rules (``maxReplicas >= minReplicas``, a target type's value field, unique metric names)
live in the loader, which builds the typed model.
"""

from __future__ import annotations

import decimal
import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from autoscaler.core.quantity import QuantityError, parse_quantity

__all__ = [
    "INT32_MAX",
    "MAX_TEXT_CHARS",
    "NO_VALUE",
    "Boolean",
    "Enum",
    "Field",
    "Integer",
    "Issue",
    "ListOf",
    "Number",
    "Obj",
    "Quantity",
    "StringMap",
    "Text",
    "check",
    "json_schema",
    "parse_bounded_quantity",
]

Path = tuple[str | int, ...]

INT32_MAX = 2**31 - 1
"""Kubernetes' bound on every replica count (``int32`` in the scale subresource and the HPA)."""
MAX_TEXT_CHARS = 16384
"""No string field needs more (a PromQL template is the longest); DNS names are checked tighter."""
_MAX_QUANTITY_CHARS = 64


class _NoValue:
    """The value of a field that is absent (required, duplicate): printed without ``= value``."""

    def __repr__(self) -> str:
        return "<absent>"


NO_VALUE: Any = _NoValue()


@dataclass(frozen=True, slots=True)
class Issue:
    """One validation problem: where (a field path), what value, and what is wrong."""

    path: Path
    value: Any
    message: str


class Field:
    description: str = ""

    def check(self, value: Any, path: Path, out: list[Issue]) -> None:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def _describe(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self.description:
            schema["description"] = self.description
        return schema


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


@dataclass
class Text(Field):
    description: str = ""
    pattern_check: Callable[[str], str | None] | None = None
    pattern: str | None = None
    max_length: int = MAX_TEXT_CHARS

    def check(self, value: Any, path: Path, out: list[Issue]) -> None:
        if not isinstance(value, str):
            out.append(Issue(path, value, f"must be a string, not a {_type_name(value)}"))
            return
        if not value:
            out.append(Issue(path, value, "must not be empty"))
        elif len(value) > self.max_length:
            out.append(Issue(path, value, f"must be at most {self.max_length} characters (has {len(value)})"))
        elif self.pattern_check is not None and (problem := self.pattern_check(value)):
            out.append(Issue(path, value, problem))

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": self.max_length}
        if self.pattern:
            schema["pattern"] = self.pattern
        return self._describe(schema)


@dataclass
class Boolean(Field):
    description: str = ""

    def check(self, value: Any, path: Path, out: list[Issue]) -> None:
        if not isinstance(value, bool):
            out.append(Issue(path, value, f"must be true or false, not a {_type_name(value)}"))

    def schema(self) -> dict[str, Any]:
        return self._describe({"type": "boolean"})


@dataclass
class Enum(Field):
    choices: Sequence[str] = ()
    description: str = ""
    # For long lists: name the thing instead of listing every choice in the message.
    what: str = ""
    where_listed: str = ""

    def check(self, value: Any, path: Path, out: list[Issue]) -> None:
        if not isinstance(value, str) or value not in self.choices:
            hint = _did_you_mean(value, self.choices) if isinstance(value, str) else ""
            if self.what:
                listed = f"; {self.where_listed}" if self.where_listed else ""
                out.append(Issue(path, value, f"unknown {self.what}{hint}{listed}"))
            else:
                out.append(Issue(path, value, f"must be one of {', '.join(self.choices)}{hint}"))

    def schema(self) -> dict[str, Any]:
        return self._describe({"enum": list(self.choices)})


@dataclass
class Integer(Field):
    """An integer; every one has a bound (``int32`` unless a tighter one is given), as in Kubernetes."""

    minimum: int | None = None
    maximum: int | None = INT32_MAX
    description: str = ""

    def check(self, value: Any, path: Path, out: list[Issue]) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            out.append(Issue(path, value, f"must be an integer, not a {_type_name(value)}"))
            return
        if self.minimum is not None and value < self.minimum:
            out.append(Issue(path, value, f"must be >= {self.minimum}"))
        if self.maximum is not None and value > self.maximum:
            out.append(Issue(path, value, f"must be <= {self.maximum}"))

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer"}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return self._describe(schema)


@dataclass
class Number(Field):
    exclusive_minimum: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""

    def check(self, value: Any, path: Path, out: list[Issue]) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            out.append(Issue(path, value, "must be a finite number"))
            return
        if isinstance(value, float) and not math.isfinite(value):
            out.append(Issue(path, value, "must be a finite number"))
            return
        # Compared as written: a huge integer is never turned into a float (which would overflow).
        if self.exclusive_minimum is not None and value <= self.exclusive_minimum:
            out.append(Issue(path, value, f"must be > {self.exclusive_minimum:g}"))
        if self.minimum is not None and value < self.minimum:
            out.append(Issue(path, value, f"must be >= {self.minimum:g}"))
        if self.maximum is not None and value > self.maximum:
            out.append(Issue(path, value, f"must be <= {self.maximum:g}"))

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "number"}
        if self.exclusive_minimum is not None:
            schema["exclusiveMinimum"] = self.exclusive_minimum
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return self._describe(schema)


@dataclass
class Quantity(Field):
    """A Kubernetes quantity: a number, or a string such as ``"500m"``, ``"2k"``, ``"0.05"``.

    ``maximum`` bounds it (inclusive; by default 1e15, far above any per-replica rate, count or byte
    size a target is stated in); ``positive`` requires > 0, else >= 0."""

    positive: bool = True
    maximum: Decimal | None = Decimal("1e15")
    description: str = ""

    def check(self, value: Any, path: Path, out: list[Issue]) -> None:
        amount = parse_bounded_quantity(value)
        if amount is None:
            out.append(Issue(path, value, "must be a number or a quantity string such as 500m, 2k, 0.05"))
            return
        if self.positive and amount <= 0:
            out.append(Issue(path, value, "must be > 0"))
        elif amount < 0:
            out.append(Issue(path, value, "must be >= 0"))
        elif self.maximum is not None and amount > self.maximum:
            out.append(Issue(path, value, f"must be <= {_plain_number(self.maximum)}"))
        elif not amount.is_finite():
            out.append(Issue(path, value, "must be finite"))

    def schema(self) -> dict[str, Any]:
        number: dict[str, Any] = {"type": "number"}
        if self.maximum is not None:
            number["maximum"] = float(self.maximum)
        return self._describe(
            {
                "anyOf": [
                    number,
                    {
                        "type": "string",
                        "maxLength": _MAX_QUANTITY_CHARS,
                        "pattern": r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$",
                    },
                ]
            }
        )


def _plain_number(value: Decimal) -> str:
    return f"{value:f}" if value == value.to_integral_value() and abs(value) < 10**16 else f"{value:g}"


def parse_bounded_quantity(value: Any) -> Decimal | None:
    """The quantity ``value`` is, exactly, or None when it is not one. Never raises, whatever the input
    (an empty field, a mapping, a 5000-digit exponent). A result can be huge (``"1e999999"`` is
    1E+999999, and ``"1e1000000"``, beyond Decimal's range, is Infinity): callers compare it with their
    bounds before anything turns it into a float or an int."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, str) and len(value) > _MAX_QUANTITY_CHARS:
        return None
    try:
        return parse_quantity(value)
    except decimal.Overflow:
        negative = isinstance(value, str) and value.strip().startswith("-")
        return Decimal("-Infinity") if negative else Decimal("Infinity")
    except (QuantityError, TypeError, ValueError, ArithmeticError):
        return None


@dataclass
class StringMap(Field):
    description: str = ""
    max_entries: int = 128

    def check(self, value: Any, path: Path, out: list[Issue]) -> None:
        if not isinstance(value, dict):
            out.append(Issue(path, value, f"must be a mapping of strings, not a {_type_name(value)}"))
            return
        if len(value) > self.max_entries:
            out.append(Issue(path, NO_VALUE, f"must have at most {self.max_entries} entries (has {len(value)})"))
            return
        for key, item in value.items():
            if not isinstance(item, str):
                out.append(Issue((*path, str(key)), item, f"must be a string, not a {_type_name(item)} (quote it)"))
            elif len(item) > MAX_TEXT_CHARS:
                out.append(Issue((*path, str(key)), item, f"must be at most {MAX_TEXT_CHARS} characters"))

    def schema(self) -> dict[str, Any]:
        return self._describe(
            {
                "type": "object",
                "maxProperties": self.max_entries,
                "additionalProperties": {"type": "string", "maxLength": MAX_TEXT_CHARS},
            }
        )


@dataclass
class ListOf(Field):
    item: Field = field(default_factory=Field)
    min_items: int = 0
    max_items: int = 64
    description: str = ""

    def check(self, value: Any, path: Path, out: list[Issue]) -> None:
        if not isinstance(value, list):
            out.append(Issue(path, value, f"must be a list, not a {_type_name(value)}"))
            return
        if len(value) < self.min_items:
            out.append(Issue(path, value, f"must have at least {self.min_items} item(s)"))
        if len(value) > self.max_items:
            out.append(Issue(path, NO_VALUE, f"must have at most {self.max_items} item(s) (has {len(value)})"))
            return
        for index, item in enumerate(value):
            self.item.check(item, (*path, index), out)

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "array", "items": self.item.schema(), "maxItems": self.max_items}
        if self.min_items:
            schema["minItems"] = self.min_items
        return self._describe(schema)


@dataclass
class Obj(Field):
    fields: Mapping[str, Field] = field(default_factory=dict)
    required: Sequence[str] = ()
    description: str = ""
    # Extra advice for a specific unknown key, e.g. why ``target.namespace`` does not exist.
    forbidden: Mapping[str, str] = field(default_factory=dict)
    enforce_required: bool = True

    def check(self, value: Any, path: Path, out: list[Issue]) -> None:
        if not isinstance(value, dict):
            out.append(Issue(path, value, f"must be a mapping, not a {_type_name(value)}"))
            return
        for key, item in value.items():
            if key in self.fields:
                self.fields[key].check(item, (*path, key), out)
            elif key in self.forbidden:
                out.append(Issue((*path, str(key)), item, self.forbidden[key]))
            else:
                hint = _did_you_mean(str(key), list(self.fields))
                out.append(Issue((*path, str(key)), item, f"unknown field{hint}"))
        if self.enforce_required:
            for key in self.required:
                if key not in value:
                    out.append(Issue((*path, key), NO_VALUE, "is required"))

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {key: sub.schema() for key, sub in self.fields.items()},
            "additionalProperties": False,
        }
        if self.required and self.enforce_required:
            schema["required"] = list(self.required)
        return self._describe(schema)

    def optional(self) -> Obj:
        """The same object with nothing required (for PolicyDefaults, which may set any subset)."""
        return Obj(
            fields={k: (v.optional() if isinstance(v, Obj) else v) for k, v in self.fields.items()},
            required=self.required,
            description=self.description,
            forbidden=self.forbidden,
            enforce_required=False,
        )


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    return f" (did you mean {close[0]!r}?)" if close else ""


def check(spec: Field, value: Any, path: Path = ()) -> list[Issue]:
    out: list[Issue] = []
    spec.check(value, path, out)
    return out


def json_schema(spec: Field) -> dict[str, Any]:
    return spec.schema()


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    return _did_you_mean(word, choices)

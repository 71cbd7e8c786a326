"""AWS's own input validation, from botocore's service model, in AWS's words: required members, types,
enums, patterns, lengths and ranges, e.g. `1 validation error detected: Value 'a_b' at 'endpointName'
failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`.

A few shapes shoal checks itself because it accepts more than AWS does (SHOAL_CHECKED).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from botocore.model import Shape

from shoal.control.sagemaker.protocol import AwsError, Body, validation

# Local paths as model data, `local` and shoal's catalog as instance types, shoal's routing strategies.
SHOAL_CHECKED = frozenset({"Url", "S3ModelUri", "ProductionVariantInstanceType", "RoutingStrategy"})
_TYPE_NAMES = {"integer": "an Integer", "long": "a Long", "float": "a Float", "double": "a Double",
               "string": "a String", "boolean": "a Boolean", "timestamp": "a Date", "structure": "a Structure",
               "map": "a Map", "list": "a List"}


@lru_cache(maxsize=4)
def service_model(service: str):  # type: ignore[no-untyped-def]
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def check(service: str, operation: str, body: Body) -> None:
    """AwsError (ValidationException, or SerializationException for a value of the wrong type) unless
    `body` is a valid input of `operation`."""
    shape = service_model(service).operation_model(operation).input_shape
    problems = list(_problems(shape, body, ""))
    if problems:
        count = len(problems)
        raise validation(f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(problems))


def _at(path: str, member: str) -> str:
    name = member[:1].lower() + member[1:]
    return f"{path}.{name}" if path else name


def _problems(shape: Shape, value: Any, path: str) -> Iterator[str]:
    kind = shape.type_name
    _expect_type(kind, value)
    if kind == "structure":
        for name in shape.required_members:
            if value.get(name) is None:
                yield f"Value null at '{_at(path, name)}' failed to satisfy constraint: Member must not be null"
        for name, member in shape.members.items():
            if value.get(name) is not None:
                yield from _problems(member, value[name], _at(path, name))
    elif kind == "list":
        yield from _bounds(shape, value, path, len(value), "length")
        for i, item in enumerate(value):
            if item is not None:
                yield from _problems(shape.member, item, f"{path}.{i + 1}.member")
    elif kind == "map":
        for item in value.values():  # values may be secrets: their type is checked, never quoted
            if item is not None:
                _expect_type(shape.value.type_name, item)
    elif kind == "string" and shape.name not in SHOAL_CHECKED:
        yield from _string(shape, value, path)
    elif kind in ("integer", "long", "float", "double"):
        yield from _bounds(shape, value, path, value, "value")


def _string(shape: Shape, value: str, path: str) -> Iterator[str]:
    fail = f"Value '{value}' at '{path}' failed to satisfy constraint: Member must"
    if shape.enum and value not in shape.enum:
        yield f"{fail} satisfy enum value set: [{', '.join(shape.enum)}]"
    pattern = shape.metadata.get("pattern")
    if pattern and (compiled := _compiled(pattern)) and not compiled.fullmatch(value):
        yield f"{fail} satisfy regular expression pattern: {pattern if pattern.startswith('^') else '^' + pattern}"
    yield from _bounds(shape, value, path, len(value), "length")


def _bounds(shape: Shape, value: Any, path: str, measure: float, what: str) -> Iterator[str]:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    shown = f"'{value}'" if isinstance(value, str) else ("null" if isinstance(value, list) else value)
    fail = f"Value {shown} at '{path}' failed to satisfy constraint: Member must have {what}"
    if high is not None and measure > high:
        yield f"{fail} less than or equal to {high}"
    if low is not None and measure < low:
        yield f"{fail} greater than or equal to {low}"


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:  # Java-only syntax (\p{L}): AWS checks it, shoal does not
        return None


def _expect_type(kind: str, value: Any) -> None:
    """SerializationException, as AWS's deserializer says it, for a JSON value of the wrong type."""
    ok = {"structure": isinstance(value, dict), "map": isinstance(value, dict), "list": isinstance(value, list),
          "string": isinstance(value, str), "boolean": isinstance(value, bool),
          "integer": isinstance(value, int) and not isinstance(value, bool),
          "long": isinstance(value, int) and not isinstance(value, bool),
          "timestamp": isinstance(value, (int, float, str)) and not isinstance(value, bool)}.get(
        kind, isinstance(value, (int, float)) and not isinstance(value, bool))
    if ok:
        return
    if isinstance(value, dict):
        raise AwsError("SerializationException", "Start of structure or map found where not expected.")
    if isinstance(value, list):
        raise AwsError("SerializationException", "Start of list found where not expected")
    token = {str: "STRING_VALUE", bool: "TRUE_VALUE" if value else "FALSE_VALUE"}.get(type(value), "NUMBER_VALUE")
    raise AwsError("SerializationException", f"{token} can not be converted to {_TYPE_NAMES.get(kind, kind)}")

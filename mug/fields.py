"""One set of rules for every setting mug reads: the model, training, loader and launch configs and the data
gate's thresholds. Values arrive untyped (YAML, JSON, `--set`, pipeline parameters, whose numbers are all
doubles) and are checked against the dataclass field's type hint here, with one error format that names the
field: "`path` must be `what the hint wants`, got `value`".

The rules: an integer field takes an integer or a whole number written as a float (4.0, what a pipeline's
Struct delivers), never a bool; a float field takes any finite number; a bool takes true or false; a string
takes a string; lists and tuples take lists of such values; `X | None` also takes null; a nested dataclass
takes a mapping of its fields, unknown keys named."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from mug.errors import ConfigError

_WORDS = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string", type(None): "null"}


def describe(hint: Any) -> str:
    """What a value of type `hint` is, in the words of an error message."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(describe(arg) for arg in args)
    if origin is list:
        return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is tuple and args[-1:] == (Ellipsis,):
        return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is tuple:
        return f"{len(args)} numbers" if all(arg in (int, float) for arg in args) else f"a list of {len(args)} values"
    if origin is dict or dataclasses.is_dataclass(hint):
        return "a mapping"
    return _WORDS.get(hint, getattr(hint, "__name__", str(hint)))


def typed(path: str, value: Any, hint: Any) -> Any:
    """`value` as the type `hint` asks for, by the rules above; ConfigError naming `path` if it is not one."""
    converted = _convert(value, hint)
    if converted is _INVALID:
        raise ConfigError(f"{path} must be {describe(hint)}, got {value!r}")
    return converted


_INVALID = object()


def _convert(value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (types.UnionType, typing.Union):
        for arm in args:
            converted = _convert(value, arm)
            if converted is not _INVALID:
                return converted
        return _INVALID
    if hint is type(None):
        return None if value is None else _INVALID
    if hint is bool:
        return value if isinstance(value, bool) else _INVALID
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _INVALID
        return int(value) if isinstance(value, int) or (math.isfinite(value) and value.is_integer()) else _INVALID
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return _INVALID
        return float(value)
    if hint is str:
        return value if isinstance(value, str) else _INVALID
    if origin in (list, tuple):
        variadic = origin is list or args[-1:] == (Ellipsis,)  # list[X], tuple[X, ...]
        if not isinstance(value, list | tuple) or (not variadic and len(value) != len(args)):
            return _INVALID
        arms = args[:1] * len(value) if variadic else args
        items = [_convert(item, arm) for item, arm in zip(value, arms, strict=True)]
        return _INVALID if any(item is _INVALID for item in items) else origin(items)
    if origin is dict:
        if not isinstance(value, dict):
            return _INVALID
        items = {key: _convert(item, args[1]) for key, item in value.items()}
        return _INVALID if any(item is _INVALID for item in items.values()) else items
    if origin is not None:  # another generic (a Sequence of ...): its kind only
        return value if isinstance(value, origin) else _INVALID
    return value if isinstance(value, hint) else _INVALID


def merge(instance: Any, data: Any, prefix: str = "") -> Any:
    """Set the fields of dataclass `instance` (nested ones included) from the mapping `data`: unknown keys and
    values of the wrong kind are named by their path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {type(data).__name__}")
    hints, fields = typing.get_type_hints(type(instance)), {f.name for f in dataclasses.fields(instance)}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{prefix}{key} is not a config field; known: {', '.join(sorted(fields))}")
        current = getattr(instance, key)
        if dataclasses.is_dataclass(current):
            merge(current, value, f"{prefix}{key}.")
        else:
            setattr(instance, key, typed(prefix + key, value, hints[key]))
    return instance


def check(instance: Any, prefix: str = "") -> Any:
    """Check (and normalise: 4.0 -> 4, a list -> a tuple) every field of dataclass `instance` in place, for a
    config built by code or from keyword arguments rather than through `merge`."""
    hints = typing.get_type_hints(type(instance))
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            check(value, f"{prefix}{f.name}.")
        else:
            setattr(instance, f.name, typed(prefix + f.name, value, hints[f.name]))
    return instance

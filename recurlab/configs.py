"""Typed configs: dataclass fields checked against their annotations, and ``key=value`` overrides.

Every configuration in recurlab is a dataclass; this module makes its annotations binding:

    check_fields(self)                       # in __post_init__: every field's type and range, errors name the key
    cfg = from_dict(MQARBenchConfig, data)   # JSON in: unknown keys are listed, "64" is not an int
    cfg = override(cfg, ["max_steps=500", "mixers=gla,attention", "model.d_model=128"])   # the CLI's --set

Types understood: int, float (ints accepted), bool, str, None in unions, tuple/list of those
(``a,b,c`` or JSON on the command line), dict (JSON), Any and nested dataclasses (dotted keys).
Field metadata (``dataclasses.field(metadata={...})``) says what a type cannot:

    ge, gt, le, lt   bounds, checked on a number or on every element of a sequence
    choices          allowed values (a sequence, or a function returning one, e.g. a registry's names)
    schema           for a dict field: the dataclass whose fields are its keys (LMSetup.model is a
                     ModelConfig as a dict); dotted keys and checks go through it
    axis             (benchmarks) the field lists the points of a sweep; see recurlab.bench.harness
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

_NONE_WORDS = ("none", "null")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class ConfigError(ValueError):
    """A bad configuration value: ``key`` (dotted) and what was wrong with it."""

    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"{key} {problem}" if key else problem)

    def within(self, prefix: str) -> "ConfigError":
        return ConfigError(f"{prefix}.{self.key}" if self.key else prefix, self.problem)


def param(default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None, **meta) -> Any:
    """A dataclass field with checks in its metadata: ``steps: int = param(1000, ge=1)``;
    ``factory`` makes mutable defaults (``param(factory=list)``)."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of every field of dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _members(tp) -> tuple:
    return typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else ()


def type_name(tp) -> str:
    """How a type reads in an error message: 'int', 'int or None', 'list of str', 'tuple of 2 float'."""
    if tp is Any:
        return "any JSON value"
    if _members(tp):
        return " or ".join("None" if m is type(None) else type_name(m) for m in _members(tp))
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"tuple of {len(args)} {type_name(args[0])}"
        return f"{origin.__name__} of {type_name(args[0]) if args else 'values'}"
    if origin is dict or tp is dict:
        return "dict (JSON)"
    if dataclasses.is_dataclass(tp):
        return f"{tp.__name__} (dict)"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp, key: str = "") -> Any:
    """``value`` checked against type ``tp`` and normalised (ints to float fields, lists to tuples,
    dicts to nested dataclasses); a ConfigError names ``key`` otherwise. Strings are not parsed."""
    if tp is Any:
        return value
    members = _members(tp)
    if members:
        if value is None and type(None) in members:
            return None
        for member in members:
            if member is not type(None):
                try:
                    return coerce(value, member, key)
                except ConfigError:
                    continue
        raise ConfigError(key, f"must be {type_name(tp)}, got {value!r}")
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin in (tuple, list):
        if isinstance(value, (list, tuple)):
            if origin is tuple and args and args[-1] is not Ellipsis:
                if len(value) != len(args):
                    raise ConfigError(key, f"must be {type_name(tp)}, got {len(value)} values: {value!r}")
                items = [coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
            else:
                items = [coerce(v, args[0], f"{key}[{i}]") if args else v for i, v in enumerate(value)]
            return origin(items)
    elif origin is dict or tp is dict:
        if isinstance(value, dict):
            if not args:
                return dict(value)
            return {coerce(k, args[0], key): coerce(v, args[1], _join(key, str(k))) for k, v in value.items()}
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return from_dict(tp, value, key)
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(key, f"must be {type_name(tp)}, got {value!r}")


def parse(text: str, tp, key: str = "") -> Any:
    """A command-line string read as type ``tp``: '3' for int, 'gla,attention' or '["gla"]' for a
    list, 'none' for None, JSON for dicts and nested dataclasses; checked by :func:`coerce`."""
    if tp is Any:
        return _json_or_text(text)
    members = _members(tp)
    if members:
        if type(None) in members and text.strip().lower() in _NONE_WORDS:
            return None
        listish = "," in text or text.lstrip().startswith(("[", "{"))
        containers = [m for m in members if typing.get_origin(m) is not None]
        scalars = [m for m in members if typing.get_origin(m) is None and m not in (str, type(None))]
        text_ = [str] if str in members else []
        # 'a,b' is a list when the type allows one, 'a' a single name
        ranked = containers + scalars + text_ if listish else scalars + text_ + containers
        for member in ranked:
            try:
                return parse(text, member, key)
            except ConfigError:
                continue
        raise ConfigError(key, f"must be {type_name(tp)}, got {text!r}")
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    try:
        if tp is bool:
            word = text.strip().lower()
            if word in _TRUE + _FALSE:
                return word in _TRUE
        elif tp is int:
            return int(text.strip())
        elif tp is float:
            return float(text.strip())
        elif tp is str:
            return text
        elif origin in (tuple, list):
            if text.lstrip().startswith("["):
                return coerce(json.loads(text), tp, key)
            parts = [p.strip() for p in text.split(",")] if text.strip() else []
            element = args[0] if args else str
            items = [parse(p, element, f"{key}[{i}]") for i, p in enumerate(parts)]
            return coerce(items, tp, key)
        elif origin is dict or tp is dict or dataclasses.is_dataclass(tp):
            return coerce(json.loads(text), tp, key)
    except (ValueError, json.JSONDecodeError) as error:
        if isinstance(error, ConfigError):
            raise
    raise ConfigError(key, f"must be {type_name(tp)}, got {text!r}")


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _choices(meta: Mapping) -> list | None:
    choices = meta.get("choices")
    return list(choices() if callable(choices) else choices) if choices is not None else None


def check_value(value: Any, meta: Mapping, key: str) -> None:
    """The bounds and choices of a field's metadata, on a value or on every element of a sequence."""
    values = value if isinstance(value, (list, tuple)) else [value]
    choices = _choices(meta)
    for v in values:
        if v is None:
            continue
        if choices is not None and v not in choices:
            raise ConfigError(key, f"must be one of {', '.join(map(str, choices))}; got {v!r}")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            for bound, ok, word in (("ge", v.__ge__, ">="), ("gt", v.__gt__, ">"), ("le", v.__le__, "<="),
                                    ("lt", v.__lt__, "<")):
                if bound in meta and not ok(meta[bound]):
                    raise ConfigError(key, f"must be {word} {meta[bound]}, got {v!r}")


def check_fields(obj: Any, prefix: str = "") -> None:
    """Check every field of dataclass instance ``obj`` against its type and metadata, normalising
    values in place (call it first in ``__post_init__``). Dict fields with a ``schema`` are checked
    key by key against that dataclass's fields."""
    cls, types_ = type(obj), field_types(type(obj))
    for name, f in _fields(cls).items():
        key = _join(prefix, name)
        value = coerce(getattr(obj, name), types_[name], key)
        schema = f.metadata.get("schema")
        if schema is not None and isinstance(value, dict):
            value = check_schema_dict(value, schema, key)
        check_value(value, f.metadata, key)
        object.__setattr__(obj, name, value)


def check_schema_dict(value: dict, schema: type, key: str) -> dict:
    """A dict whose keys are fields of dataclass ``schema``: unknown keys and bad values are named."""
    types_, fields = field_types(schema), _fields(schema)
    unknown = [k for k in value if k not in types_]
    if unknown:
        raise ConfigError(_join(key, unknown[0]), f"is not a key of {key or schema.__name__}; valid keys: "
                                                  f"{', '.join(types_)}")
    out = {}
    for name, v in value.items():
        out[name] = coerce(v, types_[name], _join(key, name))
        check_value(out[name], fields[name].metadata, _join(key, name))
    return out


def from_dict(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """An instance of dataclass ``cls`` from JSON-like ``data`` (missing keys take their defaults)."""
    if not isinstance(data, Mapping):
        raise ConfigError(prefix, f"must be a dict of {cls.__name__}'s keys, got {data!r}")
    types_ = field_types(cls)
    unknown = [k for k in data if k not in types_]
    if unknown:
        raise ConfigError(_join(prefix, unknown[0]), f"is not a key of {prefix or cls.__name__}; valid keys: "
                                                     f"{', '.join(types_)}")
    values = {k: coerce(v, types_[k], _join(prefix, k)) for k, v in data.items()}
    return _construct(cls, values, prefix)


def merge(cfg: Any, data: Mapping[str, Any], prefix: str = "") -> Any:
    """``cfg`` with the (possibly partial, possibly nested) values of ``data`` replaced."""
    if not isinstance(data, Mapping):
        raise ConfigError(prefix, f"must be a dict of {type(cfg).__name__}'s keys, got {data!r}")
    types_, fields = field_types(type(cfg)), _fields(type(cfg))
    changes = {}
    for k, v in data.items():
        if k not in types_:
            raise ConfigError(_join(prefix, k), f"is not a key of {prefix or type(cfg).__name__}; valid keys: "
                                                f"{', '.join(types_)}")
        current = getattr(cfg, k)
        if dataclasses.is_dataclass(current) and isinstance(v, Mapping):
            changes[k] = merge(current, v, _join(prefix, k))
        elif fields[k].metadata.get("schema") and isinstance(current, dict) and isinstance(v, Mapping):
            changes[k] = {**current, **v}
        else:
            changes[k] = coerce(v, types_[k], _join(prefix, k))
    return _construct(type(cfg), {**{n: getattr(cfg, n) for n in fields if fields[n].init}, **changes}, prefix)


def _construct(cls: type, values: dict, prefix: str) -> Any:
    try:
        return cls(**values)
    except ConfigError as error:
        raise error.within(prefix) if prefix else error
    except (ValueError, TypeError) as error:
        raise ConfigError(prefix, f"is invalid: {error}" if prefix else str(error)) from None


def checked_as(key: str, build: Callable[[], Any]) -> Any:
    """``build()`` (a nested config's constructor), with its errors named under ``key``."""
    try:
        return build()
    except ConfigError as error:
        raise error.within(key) from None
    except ValueError as error:
        raise ConfigError(key, f"is invalid: {error}") from None


def override(cfg: Any, assignments: Iterable[str]) -> Any:
    """``cfg`` with ``key=value`` assignments applied in order (dotted keys reach nested configs)."""
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError("", f"--set takes key=value, got {assignment!r}")
        cfg = _assign(cfg, key.strip().split("."), text, "")
    return cfg


def _assign(cfg: Any, path: list[str], text: str, prefix: str) -> Any:
    types_, fields = field_types(type(cfg)), _fields(type(cfg))
    name, key = path[0], _join(prefix, path[0])
    if name not in types_:
        raise ConfigError(key, f"is not a key of {prefix or type(cfg).__name__}; valid keys: {', '.join(types_)}")
    current, schema = getattr(cfg, name), fields[name].metadata.get("schema")
    if len(path) == 1:
        value = parse(text, types_[name], key)
    elif dataclasses.is_dataclass(current):
        value = _assign(current, path[1:], text, key)
    elif schema is not None and isinstance(current, dict):
        value = _assign_schema_dict(current, schema, path[1:], text, key)
    elif isinstance(current, dict):
        value = _assign_dict(current, types_[name], path[1:], text, key)
    else:
        raise ConfigError(key, f"is {type_name(types_[name])}, which has no keys: {'.'.join(path[1:])!r}")
    return _construct(type(cfg), {**{n: getattr(cfg, n) for n in fields if fields[n].init}, name: value}, prefix)


def _assign_schema_dict(current: dict, schema: type, path: list[str], text: str, prefix: str) -> dict:
    types_ = field_types(schema)
    name, key = path[0], _join(prefix, path[0])
    if name not in types_:
        raise ConfigError(key, f"is not a key of {prefix}; valid keys: {', '.join(types_)}")
    if len(path) == 1:
        return {**current, name: parse(text, types_[name], key)}
    inner = current.get(name)
    if inner is None:
        inner = {}
    return {**current, name: _assign_dict(inner, types_[name], path[1:], text, key)}


def _assign_dict(current: dict, tp, path: list[str], text: str, prefix: str) -> dict:
    """Dotted keys into a plain dict field (e.g. mixer_kwargs.swa.window=32)."""
    args = typing.get_args(tp) or typing.get_args(next((m for m in _members(tp) if typing.get_origin(m) is dict), dict))
    value_type = args[1] if len(args) == 2 else Any
    name, key = path[0], _join(prefix, path[0])
    if len(path) == 1:
        return {**current, name: parse(text, value_type, key)}
    inner = current.get(name) or {}
    if not isinstance(inner, dict):
        raise ConfigError(key, f"is {inner!r}, which has no keys")
    return {**current, name: _assign_dict(inner, value_type, path[1:], text, key)}


def describe(cls: type, prefix: str = "", defaults: Any = None) -> list[str]:
    """One line per key of dataclass ``cls`` (dotted for nested configs): name, type and default."""
    defaults = defaults if defaults is not None else _default_instance(cls)
    lines = []
    for name, f in _fields(cls).items():
        tp, value = field_types(cls)[name], getattr(defaults, name, None) if defaults is not None else None
        key = _join(prefix, name)
        if dataclasses.is_dataclass(tp):
            lines += describe(tp, key, value)
            continue
        schema = f.metadata.get("schema")
        extra = f"; keys: {', '.join(field_types(schema))}" if schema else ""
        choices = _choices(f.metadata)
        extra += f"; one of {', '.join(map(str, choices))}" if choices is not None else ""
        bounds = ", ".join(f"{w} {f.metadata[b]}" for b, w in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
                           if b in f.metadata)
        extra += f"; {bounds}" if bounds else ""
        lines.append(f"  {key} ({type_name(tp)}{extra}) = {_show(value)}")
    return lines


def _default_instance(cls: type) -> Any:
    try:
        return cls()
    except TypeError:
        return None


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, str)) for v in value):
        return ",".join(map(str, value))
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)

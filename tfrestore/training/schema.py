"""Declarative, strict schema for training configs.

A schema is a tree of :class:`Section` (mapping with fixed keys),
:class:`ListOf` (list of sections), :class:`Field` (typed leaf) and
:class:`Args` (free keyword arguments of a class or builder, checked later
against its signature). :func:`validate` fills in defaults and rejects unknown
keys, naming the full dotted key and suggesting the closest valid one.

>>> s = Section("demo", crop_size=Field(64, int, "crop size"), name=Field(None, str, "run name"),
...             renamed={"crop": "crop_size"})
>>> validate(s, {"crop_size": 32})
{'crop_size': 32, 'name': None}
>>> validate(s, {"crop_sise": 32}, "data")
Traceback (most recent call last):
...
tfrestore.training.schema.ConfigError: unknown config key 'data.crop_sise'
(did you mean 'data.crop_size'?); valid keys in 'data': crop_size, name
>>> validate(s, {"crop": 32}, "data")
Traceback (most recent call last):
...
tfrestore.training.schema.ConfigError: config key 'data.crop' was renamed 'data.crop_size':
write that instead
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Callable

__all__ = [
    "ConfigError",
    "REQUIRED",
    "Field",
    "Section",
    "ListOf",
    "Args",
    "validate",
    "upgrade_renamed",
    "describe",
    "did_you_mean",
]


def did_you_mean(word, choices, show=str):
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to ``word`` (``show(x)`` shown),
    else ``""``."""
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean '{show(close[0])}'?)" if close else ""


class ConfigError(ValueError):
    """An invalid training config; the message names the offending key."""


class _Required:
    def __repr__(self):
        return "<required>"


REQUIRED = _Required()

_TYPE_NAMES = {
    int: "an integer",
    float: "a number",
    bool: "true/false",
    str: "a string",
    list: "a list",
    dict: "a mapping",
    Callable: "a callable (a config given as a Python dict)",
}


def _join(path, key):
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


class Field:
    """A typed leaf value.

    Args:
        default: any. Default value, or ``REQUIRED``.
        types: type or tuple of types. Accepted Python type(s); ``float`` also
            accepts ints and numeric strings such as ``"1e-3"`` (YAML 1.1 reads
            ``1e-3`` as a string).
        doc: str. One-line description (shown by ``--help-config``).
        choices: sequence or None. Allowed values (checked after type conversion).
        nullable: bool. ``None`` is allowed (implied by ``default=None``).
        check: callable or None. ``fn(value) -> error message or None``.
    """

    def __init__(self, default, types, doc, choices=None, nullable=False, check=None):
        self.default = default
        self.types = types if isinstance(types, tuple) else (types,)
        self.doc = doc
        self.choices = choices
        self.nullable = nullable or default is None
        self.check = check

    def validate(self, value, path):
        if value is None:
            if self.nullable:
                return None
            raise ConfigError(f"config key '{path}' must not be null ({self.doc}).")
        for t in self.types:
            ok, converted = _convert(value, t)
            if ok:
                value = converted
                break
        else:
            expected = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in self.types)
            raise ConfigError(
                f"config key '{path}' must be {expected}, got {value!r} ({type(value).__name__})."
            )
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"config key '{path}' must be one of {', '.join(map(repr, self.choices))}; got "
                f"{value!r}."
            )
        if self.check is not None:
            msg = self.check(value)
            if msg:
                raise ConfigError(f"config key '{path}' {msg}; got {value!r}.")
        return value


def _convert(value, t):
    if t is bool:
        return (isinstance(value, bool), value)
    if t is int:
        return (isinstance(value, numbers.Integral) and not isinstance(value, bool), value)
    if t is float:
        if isinstance(value, bool):
            return False, value
        if isinstance(value, numbers.Real):
            return True, float(value)
        if isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, value
        return False, value
    if t is str:
        return (isinstance(value, str), value)
    if t is list:
        return (
            isinstance(value, (list, tuple)),
            list(value) if isinstance(value, (list, tuple)) else value,
        )
    if t is dict:
        return (isinstance(value, dict), value)
    return (isinstance(value, t), value)


class Args:
    """Free keyword arguments (a mapping with string keys), checked later
    against the signature of the class/builder they are passed to."""

    def __init__(self, doc):
        self.doc = doc
        self.default = {}

    def validate(self, value, path):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(
                f"config key '{path}' must be a mapping of keyword arguments, got {value!r}."
            )
        for k in value:
            if not isinstance(k, str):
                raise ConfigError(f"config key '{_join(path, k)}': argument names must be strings.")
        return dict(value)


class Section:
    """A mapping with a fixed set of keys."""

    def __init__(self, doc, renamed=None, removed=None, **fields):
        self.doc = doc
        self.fields = fields
        # Old key -> new key: an old spelling stops with an error naming the new one.
        self.renamed = dict(renamed or {})
        # Key -> why it went: a key that no longer does anything is refused, not ignored.
        self.removed = dict(removed or {})

    @property
    def default(self):
        if any(getattr(f, "default", None) is REQUIRED for f in self.fields.values()):
            return REQUIRED
        return {}

    def validate(self, value, path):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            where = f"'{path}'" if path else "the config"
            raise ConfigError(f"config key {where} must be a mapping, got {value!r}.")
        out = {}
        for key in value:
            if key in self.removed and key not in self.fields:
                raise ConfigError(
                    f"config key '{_join(path, key)}' was removed: {self.removed[key]}; delete it"
                )
            if key in self.renamed and key not in self.fields:
                raise ConfigError(
                    f"config key '{_join(path, key)}' was renamed "
                    f"'{_join(path, self.renamed[key])}': write that instead"
                )
            if key not in self.fields:
                full = _join(path, key)
                hint = did_you_mean(key, self.fields, lambda k: _join(path, k))
                where = f"'{path}'" if path else "the top level"
                raise ConfigError(
                    f"unknown config key '{full}'{hint}; valid keys in {where}: "
                    f"{', '.join(self.fields)}"
                )
        for key, node in self.fields.items():
            sub = _join(path, key)
            if key in value:
                out[key] = node.validate(value[key], sub)
            else:
                default = node.default
                if default is REQUIRED:
                    raise ConfigError(f"missing required config key '{sub}' ({node.doc}).")
                out[key] = (
                    node.validate(_copy(default), sub)
                    if isinstance(node, (Section, ListOf))
                    else _copy(default)
                )
        return out


class ListOf:
    """A list whose items follow ``item`` (a Section or Field)."""

    def __init__(self, item, doc, default=(), min_len=0):
        self.item = item
        self.doc = doc
        self.default = REQUIRED if default is REQUIRED else list(default)
        self.min_len = min_len

    def validate(self, value, path):
        if value is None:
            value = []
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{path}' must be a list, got {value!r}.")
        if len(value) < self.min_len:
            raise ConfigError(
                f"config key '{path}' needs at least {self.min_len} "
                f"entr{'y' if self.min_len == 1 else 'ies'}."
            )
        return [self.item.validate(v, _join(path, i)) for i, v in enumerate(value)]


def _copy(value):
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def validate(schema, value, path=""):
    """Validate ``value`` against ``schema``; return it with defaults filled in."""
    return schema.validate(value, path)


def upgrade_renamed(schema, value):
    """``value`` with every renamed key of ``schema`` written in its new spelling and every
    removed key dropped (for files an earlier version wrote, e.g. a run directory's
    ``config.yaml``); a new key wins over an old.

    >>> s = Section("demo", crop_size=Field(64, int, "crop size"), renamed={"crop": "crop_size"})
    >>> upgrade_renamed(s, {"crop": 32})
    {'crop_size': 32}
    """
    if isinstance(schema, ListOf) and isinstance(value, list):
        return [upgrade_renamed(schema.item, v) for v in value]
    if not (isinstance(schema, Section) and isinstance(value, dict)):
        return value
    out = {}
    for key, v in value.items():
        if key in schema.removed and key not in schema.fields:
            continue
        new = schema.renamed.get(key, key) if key not in schema.fields else key
        if new in out and new != key:
            continue
        out[new] = upgrade_renamed(schema.fields[new], v) if new in schema.fields else v
    return out


def describe(schema, path="", indent=0):
    """Human-readable listing of every key, its default and its description."""
    lines = []
    pad = "  " * indent
    if isinstance(schema, Section):
        for key, node in schema.fields.items():
            if isinstance(node, Section):
                lines.append(f"{pad}{key}:  # {node.doc}")
                lines.extend(describe(node, _join(path, key), indent + 1))
            elif isinstance(node, ListOf):
                lines.append(f"{pad}{key}:  # {node.doc} (list of:)")
                if isinstance(node.item, Section):
                    lines.append(f"{pad}  - # item")
                    lines.extend(describe(node.item, _join(path, key), indent + 2))
            elif isinstance(node, Args):
                lines.append(f"{pad}{key}: {{}}  # {node.doc}")
            else:
                default = "<required>" if node.default is REQUIRED else repr(node.default)
                choices = f" [one of {', '.join(map(repr, node.choices))}]" if node.choices else ""
                lines.append(f"{pad}{key}: {default}  # {node.doc}{choices}")
    return lines

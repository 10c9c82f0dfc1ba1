"""Typed protocol options: one frozen dataclass per protocol and role.

Why typed: options reach a protocol from Python callers (the simulator, the
benchmarks, tests), from the server's ``BLINDMATCH_<PROTOCOL>_*`` environment
variables and from the CLI. Each used to parse a loose ``dict`` its own way, so
a misspelt key was silently ignored in one protocol and fatal in another. Now
every protocol declares an ``Options`` subclass per role; ``from_options``
rejects unknown keys (``OptionError``) and wrong types (``OptionTypeError``),
``from_env`` reads the same fields from environment-style strings, and a
subclass's ``check`` states its ranges once. Field documentation lives in each
field's ``metadata["doc"]`` (see ``option``) so servers and docs can list it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from .errors import OptionError, OptionTypeError

__all__ = ["NoOptions", "OptionInfo", "Options", "OptionsIn", "option", "pin_bytes"]

_O = TypeVar("_O", bound="Options")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def pin_bytes(protocol: str, name: str, value: str | None) -> bytes | None:
    """A pinned 32-byte value (key or digest) given as hex, or None; ``OptionError`` if malformed."""
    if value is None:
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise OptionError(f"{protocol} option {name} must be 32 bytes of hex")
    return raw


def option(default: Any, doc: str) -> Any:
    """A documented option field: ``threshold: int = option(30, "matches before ...")``."""
    return dataclasses.field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class OptionInfo:
    """One option as a server or a document lists it."""

    name: str
    type: str
    default: Any
    doc: str


@dataclass(frozen=True)
class Options:
    """Base of every protocol's option dataclasses (frozen; subclasses add fields).

    Subclasses override ``check`` to validate ranges; it runs on construction,
    so an ``Options`` object that exists is a valid one.
    """

    protocol: ClassVar[str] = ""  # used in error messages only

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ``OptionError`` when a value is out of range; the default accepts all."""

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_options(cls: type[_O], options: Mapping[str, Any] | Options | None = None) -> _O:
        """Validate a mapping (or pass through an instance of this class)."""
        if isinstance(options, cls):
            return options
        if isinstance(options, Options):
            raise OptionTypeError(f"{cls.__name__} expected, got {type(options).__name__}")
        opts = dict(options or {})
        hints = _hints(cls)
        unknown = sorted(set(opts) - set(hints))
        if unknown:
            raise OptionError(
                f"unknown {cls._label()} option(s) {unknown}; known: {sorted(hints)}"
            )
        for name, value in opts.items():
            opts[name] = _coerce(cls, name, hints[name], value)
        return cls(**opts)

    @classmethod
    def from_env(cls: type[_O], environ: Mapping[str, str], prefix: str) -> _O:
        """Read each field from ``<prefix><FIELD NAME IN CAPITALS>``; unknown names are errors.

        Strings are parsed by the field's type: integers, floats, booleans
        (1/true/yes/on, 0/false/no/off), ``none`` or empty for optional fields.
        """
        hints = _hints(cls)
        wanted = {prefix + n.upper(): n for n in hints}
        unknown = sorted(k for k in environ if k.startswith(prefix) and k not in wanted)
        if unknown:
            raise OptionError(
                f"unknown environment variable(s) {unknown} for {cls._label()}; "
                f"known: {sorted(wanted)}"
            )
        values = {
            name: _parse(cls, name, hints[name], environ[var])
            for var, name in wanted.items()
            if var in environ
        }
        return cls.from_options(values)

    # -- reading ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self: _O, **changes: Any) -> _O:
        """A copy with ``changes`` applied, validated like ``from_options``."""
        return type(self).from_options({**self.to_dict(), **changes})

    @classmethod
    def names(cls) -> frozenset[str]:
        """The option names this class accepts."""
        return frozenset(f.name for f in dataclasses.fields(cls))

    @classmethod
    def describe(cls) -> list[OptionInfo]:
        """Every field: name, type, default and documentation."""
        hints = _hints(cls)
        return [
            OptionInfo(f.name, _type_name(hints[f.name]), f.default, f.metadata.get("doc", ""))
            for f in dataclasses.fields(cls)
        ]

    @classmethod
    def _label(cls) -> str:
        return f"{cls.protocol} {cls.__name__}".strip()


@dataclass(frozen=True)
class NoOptions(Options):
    """For a role that takes no options: any key is an error."""


# ------------------------------------------------------------------------- typing helpers


def _hints(cls: type[Options]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in typing.get_type_hints(cls).items() if k in names}


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _alternatives(tp: Any) -> tuple[Any, ...]:
    if get_origin(tp) in (Union, types.UnionType):
        return get_args(tp)
    return (tp,)


def _fits(tp: Any, value: Any) -> Any:
    """``value`` as type ``tp`` if it fits without loss, else a sentinel."""
    if tp is type(None):
        return value if value is None else _NO
    if get_origin(tp) is Literal:
        return value if value in get_args(tp) and not isinstance(value, bool) else _NO
    if tp is bool:
        return value if isinstance(value, bool) else _NO
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok else _NO
    if tp is str:
        return value if isinstance(value, str) else _NO
    if tp is Any:
        return value
    return value if isinstance(value, tp) else _NO


_NO = object()


def _coerce(cls: type[Options], name: str, tp: Any, value: Any) -> Any:
    for alt in _alternatives(tp):
        got = _fits(alt, value)
        if got is not _NO:
            return got
    raise OptionTypeError(
        f"{cls._label()} option {name!r} must be {_type_name(tp)}, not {type(value).__name__}"
    )


def _parse(cls: type[Options], name: str, tp: Any, text: str) -> Any:
    """An environment string as the field's type (the first alternative that parses)."""
    s = text.strip()
    for alt in _alternatives(tp):
        if alt is type(None) and s.lower() in ("", "none"):
            return None
        if alt is bool and s.lower() in _TRUE | _FALSE:
            return s.lower() in _TRUE
        if alt in (int, float):
            try:
                return alt(s)
            except ValueError:
                continue
        if alt is str or (get_origin(alt) is Literal and s in get_args(alt)):
            return s
    raise OptionTypeError(f"{cls._label()} option {name!r} must be {_type_name(tp)}, not {text!r}")


# what a protocol accepts wherever it takes options: a mapping, the typed object, or None
OptionsIn = Mapping[str, Any] | Options | None

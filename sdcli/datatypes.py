"""How sdcli makes its dataclasses: `@frozen` (values) and `@mutable` (state that changes).

On Python 3.11 `@dataclass(frozen=True)` writes `__init__`, `__repr__`, `__eq__`, `__hash__`,
`__setattr__` and `__delattr__` as source text and compiles each with `exec` when the class is
created: ~3.5 M instructions a class, most of what importing sdcli cost a warm `generate`
(bench/RESULTS.md, "Issue 18: cheaper types"). Here `dataclasses` still makes the class (so
`fields`, `replace`, `asdict`, `is_dataclass`, pickling and copying work as before) but
compiles nothing: the methods below, written once, read the class's fields from a layout kept
on it and behave as the generated ones do. mypy reads the fields through `dataclass_transform`.

Supported: fields with or without a default or a default_factory, `field(repr=, compare=,
hash=)`, a class's own `__repr__`, `__eq__` or `__hash__`. Not supported: `__post_init__`,
`kw_only`, `field(init=False)` (a TypeError when the class is made), `InitVar` (its argument is
refused). `__dataclass_params__` records what dataclasses itself was asked for: no methods.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from dataclasses import MISSING, FrozenInstanceError
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    import inspect

    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_: object) -> object:
        """Only mypy reads it (typing has it from Python 3.11, sdcli runs on 3.10)."""
        return lambda fn: fn


_C = TypeVar("_C", bound=type)


class _Layout:
    """What the shared methods need to know of a class, worked out once when it is made."""

    __slots__ = ("compared", "hashed", "init", "shown")

    def __init__(self, fields: tuple[dataclasses.Field[Any], ...]) -> None:
        self.init = tuple((f.name, f.default, f.default_factory) for f in fields)
        self.shown = tuple(f.name for f in fields if f.repr)
        self.compared = tuple(f.name for f in fields if f.compare)
        self.hashed = tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash))


class _Factory:
    def __repr__(self) -> str:
        return "<factory>"  # how dataclasses shows a default_factory in a signature


class _Signature:
    """`inspect.signature(cls)` (help(), an editor): the fields as `__init__`'s parameters, as
    dataclasses shows them; worked out when asked, not when the class is made."""

    def __get__(self, obj: object, cls: type) -> inspect.Signature:
        import inspect

        def default(f: dataclasses.Field[Any]) -> Any:
            if f.default_factory is not MISSING:
                return _Factory()
            return inspect.Parameter.empty if f.default is MISSING else f.default

        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        return inspect.Signature(
            [
                inspect.Parameter(f.name, kind, annotation=f.type, default=default(f))
                for f in dataclasses.fields(cls)
            ],
            return_annotation=None,
        )


_SIGNATURE = _Signature()


def _layout(obj: Any) -> _Layout:
    layout: _Layout = type(obj)._datatype_layout
    return layout


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    fields = _layout(self).init
    if len(args) > len(fields):
        name = type(self).__name__
        raise TypeError(f"{name}() takes {len(fields)} arguments but {len(args)} were given")
    for (name, _, _), value in zip(fields[: len(args)], args, strict=True):
        object.__setattr__(self, name, value)
    for name, default, factory in fields[len(args) :]:
        if name in kwargs:
            value = kwargs.pop(name)
        elif default is not MISSING:
            value = default
        elif factory is not MISSING:
            value = factory()
        else:
            raise TypeError(f"{type(self).__name__}() missing argument {name!r}")
        object.__setattr__(self, name, value)
    if kwargs:  # not a field, or given both by position and by name
        raise TypeError(
            f"{type(self).__name__}() got an unexpected argument {next(iter(kwargs))!r}"
        )


@reprlib.recursive_repr()
def _repr(self: Any) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in _layout(self).shown)
    return f"{type(self).__qualname__}({shown})"


def _values(obj: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(getattr(obj, name) for name in names)


def _eq(self: Any, other: object) -> object:
    if other.__class__ is not self.__class__:
        return NotImplemented
    names = _layout(self).compared
    return _values(self, names) == _values(other, names)


def _hash(self: Any) -> int:
    return hash(_values(self, _layout(self).hashed))


def _setattr(self: Any, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def frozen(cls: _C) -> _C:
    """`@dataclass(frozen=True)`: assigning or deleting a field raises FrozenInstanceError;
    equal instances hash alike."""
    return _make(cls, frozen=True, eq=True)


@overload
def mutable(cls: _C, /) -> _C: ...
@overload
def mutable(*, eq: bool = True) -> Callable[[_C], _C]: ...
@dataclass_transform(field_specifiers=(dataclasses.field,))
def mutable(cls: _C | None = None, /, *, eq: bool = True) -> _C | Callable[[_C], _C]:
    """`@dataclass`: fields can be assigned; compared by value, so not hashable.
    `@mutable(eq=False)` is `@dataclass(eq=False)`: compared and hashed by identity."""
    if cls is None:
        return lambda cls: _make(cls, frozen=False, eq=eq)
    return _make(cls, frozen=False, eq=eq)


def _make(cls: _C, *, frozen: bool, eq: bool) -> _C:
    body = vars(cls)
    if any(name in body for name in ("__init__", "__post_init__", "__setattr__", "__delattr__")):
        raise TypeError(f"{cls.__name__}: sdcli.datatypes writes __init__ (no __post_init__)")
    explicit_hash = "__hash__" in body and not (body["__hash__"] is None and "__eq__" in body)
    if not cls.__doc__:  # dataclasses would write one with inspect.signature: ~9 M instructions
        cls.__doc__ = f"{cls.__name__}({', '.join(body.get('__annotations__', ()))})"
    dataclasses.dataclass(cls, init=False, repr=False, eq=False)
    fields = dataclasses.fields(cls)
    if not all(f.init and not f.kw_only for f in fields):
        raise TypeError(f"{cls.__name__}: sdcli.datatypes has no kw_only nor init=False fields")
    methods: dict[str, object] = {
        "_datatype_layout": _Layout(fields),
        "__init__": _init,
        "__signature__": _SIGNATURE,
        "__repr__": body.get("__repr__", _repr),
    }
    if eq:
        methods["__eq__"] = body.get("__eq__", _eq)
        if not explicit_hash:
            methods["__hash__"] = _hash if frozen else None
    if frozen:
        methods.update(__setattr__=_setattr, __delattr__=_delattr)
    for name, value in methods.items():
        setattr(cls, name, value)
    return cls

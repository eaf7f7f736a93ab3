"""The value flags `generate` and `presets new` share, built from the preset schema: a new
setting is one `KeySpec` with a `flag`, and both commands get it, named and typed alike."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from sdcli.cli.completion import complete_model, complete_sampler
from sdcli.errors import UsageError
from sdcli.preset_schema import PRESET_KEYS, KeySpec

FromImage = Annotated[
    Path | None,
    typer.Option(
        "--from-image", help="Start from the parameters stored in this image (PNG, JPEG, WebP)."
    ),
]


_COMPLETERS: dict[str, Callable[..., Any]] = {"model": complete_model, "sampler": complete_sampler}

# --size sets two keys at once, so it is no key of its own; it comes right after --height.
SIZE_AFTER = "height"
Size = Annotated[str | None, typer.Option("--size", help="WIDTHxHEIGHT, e.g. 512x768.")]


def flag_help(spec: KeySpec) -> str:
    """The schema's help as a flag's: `Sampling steps (1 to 150).`"""
    text = spec.help[:1].upper() + spec.help[1:]
    limits = []
    if spec.choices:
        limits.append(" | ".join(spec.choices))
    if spec.minimum is not None and spec.maximum is not None:
        limits.append(f"{_num(spec.minimum)} to {_num(spec.maximum)}")
    if spec.multiple_of:
        limits.append(f"a multiple of {spec.multiple_of}")
    return text + (f" ({', '.join(limits)})" if limits else "") + "."


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _value_names(img2img: bool = True) -> list[str]:
    """The parameters the value flags add: one per flagged preset key, plus `size`; without
    `img2img`, not the keys only img2img uses."""
    names = []
    for key, spec in PRESET_KEYS.items():
        if spec.flag and (img2img or not spec.img2img_only):
            names += [key, "size"] if key == SIZE_AFTER else [key]
    return names


def _value_parameter(name: str) -> inspect.Parameter:
    if name == "size":
        return inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Size
        )
    spec = PRESET_KEYS[name]
    if spec.type is bool:  # --tiling / --no-tiling: unset unless one is given
        flag = spec.flag or ""
        switch = typer.Option(f"{flag}/--no-{flag[2:]}", help=flag_help(spec))
        return inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[bool | None, switch],
        )
    if spec.type is list:  # --style A --style B
        many = typer.Option(spec.flag or "", help=flag_help(spec))
        return inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[list[str] | None, many],
        )
    option = typer.Option(
        *(spec.flag, spec.short) if spec.short else (spec.flag,),
        help=flag_help(spec),
        autocompletion=_COMPLETERS[spec.complete] if spec.complete else None,
    )
    annotation = Annotated[spec.type | None, option]  # type: ignore[name-defined]
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
    )


def with_value_flags(command: Callable[..., None]) -> Callable[..., None]:
    """Put the value flags where `command` has its keyword-only `flags` parameter.

    typer reads a command's options from `inspect.signature`, so the wrapper shows the flags
    there; it calls `command` with `flags`: the values given, under preset key names.
    """
    return _with_value_flags(command, img2img=True)


def with_txt2img_flags(command: Callable[..., None]) -> Callable[..., None]:
    """`with_value_flags` without the flags only img2img uses (masks, resize mode)."""
    return _with_value_flags(command, img2img=False)


def _with_value_flags(command: Callable[..., None], *, img2img: bool) -> Callable[..., None]:
    own = inspect.signature(command).parameters  # names only: the annotations stay unread
    if "flags" not in own or own["flags"].kind is not inspect.Parameter.KEYWORD_ONLY:
        raise TypeError(f"{command.__name__} needs a keyword-only `flags` parameter")
    clash = sorted(set(_value_names(img2img)) & set(own))
    if clash:
        raise TypeError(f"{command.__name__}: a value flag's parameter is taken: {clash}")
    return _WithValueFlags(command, img2img)


class _WithValueFlags:
    """A command with the value flags in its signature, built when typer first asks for it:
    typer builds only the command being run, so the others never pay for theirs."""

    def __init__(self, command: Callable[..., None], img2img: bool = True) -> None:
        functools.update_wrapper(self, command)
        self._command = command
        self._names = _value_names(img2img)

    @functools.cached_property
    def __signature__(self) -> inspect.Signature:
        signature = inspect.signature(self._command, eval_str=True)
        params: list[inspect.Parameter] = []
        for param in signature.parameters.values():
            if param.name == "flags":
                params += [_value_parameter(name) for name in self._names]
            else:
                params.append(param)
        return signature.replace(parameters=params)

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        given = {name: kwargs.pop(name, None) for name in self._names}
        self._command(*args, **kwargs, flags=value_flags(given))


def parse_size(size: str) -> tuple[int, int]:
    w, sep, h = size.lower().partition("x")
    if not sep or not w.strip().isdigit() or not h.strip().isdigit():
        raise UsageError(f"--size {size!r} must look like WIDTHxHEIGHT, e.g. 512x768")
    return int(w), int(h)


def value_flags(given: dict[str, Any]) -> dict[str, Any]:
    """The flags a user gave, under preset key names (None: not given); --size split."""
    size = given.pop("size", None)
    flags = {key: value for key, value in given.items() if value is not None and value != []}
    if size is not None:
        flags["width"], flags["height"] = parse_size(size)
    return flags

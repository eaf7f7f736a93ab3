"""The value flags `generate` and `presets new` share, built from the preset schema: a new
setting is one `KeySpec` with a `flag`, and both commands get it, named and typed alike."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from sdcli.cli.completion import complete_model, complete_preset, complete_sampler
from sdcli.errors import UsageError
from sdcli.preset_schema import PRESET_KEYS, KeySpec

FromImage = Annotated[
    Path | None,
    typer.Option(
        "--from-image", help="Start from the parameters stored in this image (PNG, JPEG, WebP)."
    ),
]
# Options several commands take, declared once.
Preset = Annotated[
    list[str] | None,
    typer.Option(
        "--preset",
        "-p",
        help="Preset name or .toml path; repeatable.",
        autocompletion=complete_preset,
    ),
]
Sets = Annotated[
    list[str] | None,
    typer.Option("--set", help="Any request field: KEY=VALUE (VALUE as JSON, else text)."),
]
OutputDir = Annotated[
    Path | None,
    typer.Option(
        "--output-dir",
        "-o",
        help="Where to save (env SDCLI_OUTPUT_DIR) \\[default: .].",
        readable=False,  # saving needs write and search permission, never read (mode 733)
    ),
]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace existing files of the same name.")
]
JsonLines = Annotated[
    bool, typer.Option("--json", help="One JSON object per saved image on stdout.")
]
Images = Annotated[
    list[Path],
    typer.Argument(help="Image files or directories of images.", metavar="IMAGE..."),
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
    """Put the value flags where `command` has its keyword-only `flags` parameter; `command` is
    called with `flags`: the values given, under preset key names."""
    return _with_value_flags(command, img2img=True)


def with_txt2img_flags(command: Callable[..., None]) -> Callable[..., None]:
    """`with_value_flags` without the flags only img2img uses (masks, resize mode)."""
    return _with_value_flags(command, img2img=False)


def _with_value_flags(command: Callable[..., None], *, img2img: bool) -> Callable[..., None]:
    names = _value_names(img2img)
    return _Expanded(
        command, "flags", names, lambda: [_value_parameter(n) for n in names], value_flags
    )


def with_options(group: type[Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Put the options of `group`, a dataclass whose fields are typer annotations with their
    defaults, where the command has its keyword-only `options` parameter; the command is called
    with `options`: a `group` of the values given. Commands that share options share a group."""

    def parameters() -> list[inspect.Parameter]:
        hints = typing.get_type_hints(group, include_extras=True)
        return [
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name]
            )
            for f in dataclasses.fields(group)
        ]

    names = [f.name for f in dataclasses.fields(group)]
    return lambda command: _Expanded(
        command, "options", names, parameters, lambda given: group(**given)
    )


def _parameter_kinds(command: Callable[..., None]) -> dict[str, Any]:
    if isinstance(command, _Expanded):
        return command.kinds()
    return {name: p.kind for name, p in inspect.signature(command).parameters.items()}


class _Expanded:
    """A command whose keyword-only parameter `slot` stands for several options.

    typer reads a command's options from `inspect.signature`, so the wrapper shows them there,
    built when typer first asks (typer builds only the command being run, so the others never
    pay for theirs); it calls the command with `slot` set to `collect` of the values given.
    """

    def __init__(
        self,
        command: Callable[..., None],
        slot: str,
        names: list[str],
        parameters: Callable[[], list[inspect.Parameter]],
        collect: Callable[[dict[str, Any]], Any],
    ) -> None:
        own = _parameter_kinds(command)
        if own.get(slot) is not inspect.Parameter.KEYWORD_ONLY:
            raise TypeError(f"{command.__name__} needs a keyword-only `{slot}` parameter")
        clash = sorted(set(names) & set(own))
        if clash:
            raise TypeError(f"{command.__name__}: an option's parameter is taken: {clash}")
        functools.update_wrapper(self, command)
        self._command = command
        self._slot = slot
        self._names = names
        self._parameters = parameters
        self._collect = collect

    @functools.cached_property
    def __signature__(self) -> inspect.Signature:
        signature = inspect.signature(self._command, eval_str=True)
        params: list[inspect.Parameter] = []
        for param in signature.parameters.values():
            if param.name == self._slot:
                params += self._parameters()
            else:
                params.append(param)
        return signature.replace(parameters=params)

    def kinds(self) -> dict[str, Any]:
        """The parameters typer will see, by kind, without reading a single annotation."""
        kinds = {}
        for name, kind in _parameter_kinds(self._command).items():
            if name == self._slot:
                kinds.update(dict.fromkeys(self._names, inspect.Parameter.KEYWORD_ONLY))
            else:
                kinds[name] = kind
        return kinds

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        given = {name: kwargs.pop(name) for name in self._names if name in kwargs}
        self._command(*args, **kwargs, **{self._slot: self._collect(given)})


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

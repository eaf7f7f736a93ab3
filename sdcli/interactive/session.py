"""What interactive mode will send next: presets, flags, --set items, seed; changed by `/` commands.

Plain data plus the checks the CLI makes (presets loaded, values validated, --set parsed) done by
the same functions, at the moment a command is typed, so a mistake is said at once and the
session stays as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdcli.datatypes import frozen, mutable
from sdcli.errors import UsageError

if TYPE_CHECKING:
    from sdcli.save import SavedImage

RANDOM_SEED = -1

# what each command sets, as the flag of `generate` that sets the same key (errors name it)
COMMAND_LABELS = {
    "negative_prompt": "/neg",
    "seed": "/seed",
    "width": "/size",
    "height": "/size",
    "steps": "/steps",
    "model": "--model",
}


@frozen
class RunOptions:
    """What stays the same for every prompt of a session (generate's non-value flags)."""

    output_dir: Path | None = None
    name_template: str | None = None
    overwrite: bool = False
    retries: int = 0
    from_image: Path | None = None


@mutable
class Session:
    """The settings the next prompt runs with, and what this session made so far."""

    presets: list[str] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)  # preset keys, as generate's flags
    sets: dict[str, str] = field(default_factory=dict)  # KEY -> "KEY=VALUE", as typed
    options: RunOptions = field(default_factory=RunOptions)
    last_prompt: str | None = None
    last_seed: int | None = None  # the first seed the server used for the last prompt
    images: list[SavedImage] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        presets: Sequence[str],
        flags: Mapping[str, Any],
        sets: Sequence[str],
        options: RunOptions,
        *,
        labels: Mapping[str, str],
    ) -> Session:
        """A session from the command line, checked as `generate` checks it."""
        session = cls(options=options)
        for name in presets:
            session.add_preset(name)
        session.set_flags(flags, labels=labels)
        for item in sets:
            session.set_item(item)
        return session

    # --- the commands --------------------------------------------------------------------

    def add_preset(self, name: str) -> str:
        """`/preset NAME`: load it now (an unknown or broken preset is refused); later wins."""
        from sdcli.presets import load_preset

        preset = load_preset(name)
        if name in self.presets:
            self.presets.remove(name)  # moved to the end: it wins again
        self.presets.append(name)
        return preset.name

    def remove_preset(self, name: str) -> None:
        """`/preset -NAME`."""
        if name not in self.presets:
            shown = ", ".join(self.presets) or "none"
            raise UsageError(f"preset {name!r} is not in use (in use: {shown})")
        self.presets.remove(name)

    def set_flags(self, flags: Mapping[str, Any], *, labels: Mapping[str, str]) -> None:
        """Flag values (preset keys), validated like generate's; None removes a key."""
        from sdcli.presets import validate_values

        given = {k: v for k, v in flags.items() if v is not None}
        checked = validate_values(given, where="command line", labels=labels)
        for key, value in flags.items():
            if value is None:
                self.flags.pop(key, None)
        self.flags.update(checked)

    def set_item(self, item: str) -> None:
        """`/set KEY=VALUE` (parsed as --set parses it); `KEY=` removes the key again."""
        from sdcli.payload import parse_set

        key, sep, value = item.partition("=")
        key = key.strip()
        if sep and key and not value.strip():
            if key not in self.sets:
                raise UsageError(f"/set {key}= removes a key set before; {key!r} was not")
            del self.sets[key]
            return
        parse_set([item])  # the same errors as --set
        self.sets[key] = item

    def set_seed(self, text: str) -> None:
        """`/seed N` or `/seed random`."""
        word = text.strip().lower()
        if word in ("random", "-1", "r"):
            self.flags.pop("seed", None)
            return
        try:
            seed = int(word)
        except ValueError:
            raise UsageError(f"/seed takes a number or 'random', not {text!r}") from None
        self.set_flags({"seed": seed}, labels=COMMAND_LABELS)

    def set_size(self, text: str) -> None:
        """`/size WxH`, read as generate's --size."""
        from sdcli.cli.options import parse_size

        try:
            width, height = parse_size(text)
        except UsageError:
            raise UsageError(f"/size {text!r} must look like WIDTHxHEIGHT, e.g. 512x768") from None
        self.set_flags({"width": width, "height": height}, labels=COMMAND_LABELS)

    def set_steps(self, text: str) -> None:
        """`/steps N`."""
        try:
            steps = int(text)
        except ValueError:
            raise UsageError(f"/steps takes a number, not {text!r}") from None
        self.set_flags({"steps": steps}, labels=COMMAND_LABELS)

    def set_negative(self, text: str) -> None:
        """`/neg TEXT`; `/neg` alone goes back to what the presets say."""
        self.set_flags({"negative_prompt": text or None}, labels=COMMAND_LABELS)

    # --- what a prompt sends -------------------------------------------------------------

    @property
    def seed_mode(self) -> str:
        seed = self.flags.get("seed")
        return "random" if seed is None or seed == RANDOM_SEED else str(seed)

    def request(self, prompt: str, *, seed: int | None = None) -> Any:
        """The JobRequest for one prompt (`seed` given: this seed, whatever the session says)."""
        from sdcli.plan import JobRequest

        flags = dict(self.flags)
        if seed is not None:
            flags["seed"] = seed
        return JobRequest(
            words=[prompt],
            presets=list(self.presets),
            flags=flags,
            sets=list(self.sets.values()),
            from_image=self.options.from_image,
            output_dir=self.options.output_dir,
            name_template=self.options.name_template,
            overwrite=self.options.overwrite,
            retries=self.options.retries,
            flag_labels=COMMAND_LABELS,
        )

    def preset_values(self) -> dict[str, Any]:
        """The current settings as one preset (`/save-preset`): presets, flags, then --set items
        as its [params]."""
        from sdcli.payload import merge_values, parse_set
        from sdcli.presets import load_preset

        layers = [load_preset(name).values for name in self.presets]
        values = merge_values([*layers, self.flags])
        sets = parse_set(list(self.sets.values()))
        if sets:
            values = merge_values([values, {"params": sets}])
        return values

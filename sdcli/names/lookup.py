"""Name lookup against the server's own lists: checkpoints, samplers, schedulers, upscalers,
and "did you mean" suggestions for every name sdcli checks.

The web UI silently replaces names it does not know (webui-api.md §6, §7.3), so sdcli resolves
every name itself before generating, and never picks a "closest" match on its own.

Every comparison goes through `fold`: case and separators never matter ("sdxl", "SD-XL" and
"sd_xl" are the same name), so a person can type a name the way they remember it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any, TypeVar

from sdcli.apitypes import Sampler, Scheduler, SdModel
from sdcli.errors import NotFoundError

T = TypeVar("T")

# A name picked by part of it needs this many letters or digits: `set-model a` switches no server.
MIN_PARTIAL = 3
# Patterns are kept as text: `re` compiles (and caches) each at first use, not at start-up.
_SEPARATORS = r"[^\w+]+|_+"


def fold(name: str) -> str:
    """A name as matching sees it: lower case, separators gone ("SD XL-1.0" -> "sdxl10").

    Only letters, digits and "+" are kept: "+" is part of a name, not a separator ("DPM++ 2M"
    is not "DPM 2M", nor "R-ESRGAN 4x+" "R-ESRGAN 4x").
    """
    text = unicodedata.normalize("NFKC", name).casefold()
    return "".join(ch for ch in text if ch.isalnum() or ch == "+")


def same_name(a: str, b: str) -> bool:
    """Whether two names are the same to a person (as typed, when folding leaves nothing)."""
    fa, fb = fold(a), fold(b)
    return fa == fb if fa or fb else a.strip() == b.strip()


def did_you_mean(
    name: str, choices: Iterable[str], *, n: int = 3, cutoff: float = 0.5, holding: bool = True
) -> list[str]:
    """The choices closest to `name`: those holding it whole first, then similar spellings.

    `holding=False` leaves out the first kind, for short words such as preset keys ("size" is
    part of "batch_size" but does not mean it).

    A choice is close when it is similar folded whole ("sdxl" ~ "sd_xl_base") or word by word;
    the word by word reading ranks them ("Euler b" is nearer "Euler a" than "Euler").
    """
    import difflib  # only on a miss: lookups sit on every generation's path

    by_fold: dict[str, str] = {}
    for choice in choices:
        by_fold.setdefault(fold(choice) or choice, choice)
    key = fold(name) or name
    wholes = [c for f, c in by_fold.items() if holding and len(key) >= MIN_PARTIAL and key in f]
    words = _words(name)
    scored = []
    for folded, choice in by_fold.items():
        by_words = difflib.SequenceMatcher(None, words, _words(choice)).ratio()
        whole = difflib.SequenceMatcher(None, key, folded).ratio()
        if max(by_words, whole) >= cutoff:
            scored.append((-by_words, -whole, choice))
    close = [choice for *_, choice in sorted(scored)]
    return list(dict.fromkeys([*wholes, *close]))[:n]


def _words(name: str) -> str:
    return " ".join(f for f in (fold(w) for w in re.split(_SEPARATORS, name)) if f)


def _suggest(name: str, choices: Iterable[str]) -> str | None:
    close = did_you_mean(name, choices)
    return "did you mean " + " or ".join(repr(c) for c in close) + "?" if close else None


def _pick(
    wanted: str, items: Sequence[T], names: Callable[[T], Iterable[str]], what: str
) -> T | None:
    """The one item named `wanted` exactly, else ignoring case, else ignoring separators too.

    Several items at the first level that has any: exit 2 with them, never a guess.
    """
    key = fold(wanted)
    tests: list[Callable[[str], bool]] = [
        lambda a: a == wanted,
        lambda a: a.casefold() == wanted.casefold(),
        lambda a: bool(key) and fold(a) == key,
    ]
    for test in tests:
        hits = [item for item in items if any(test(a) for a in names(item))]
        hits = list({id(h): h for h in hits}.values())
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise _ambiguous(wanted, [_first(names(h)) for h in hits], what)
    return None


def _first(names: Iterable[str]) -> str:
    return next(iter(names), "")


def _ambiguous(name: str, shown_names: Sequence[str], what: str) -> NotFoundError:
    shown = ", ".join(shown_names[:6])
    if len(shown_names) > 6:
        shown += f", … ({len(shown_names)} in all)"
    return NotFoundError(
        f"{name!r} matches several {what}: {shown}",
        candidates=list(shown_names),
        hint="type more of the name",
    )


def model_aliases(model: SdModel) -> list[str]:
    """The strings a person may type for a checkpoint (the web UI's exact aliases, and more)."""
    name = model.name
    stem = PurePosixPath(name.replace("\\", "/")).stem
    path_no_ext = str(PurePosixPath(name.replace("\\", "/")).with_suffix(""))
    aliases = [model.title, model.model_name, name, stem, path_no_ext]
    if model.hash:
        aliases += [model.hash, f"{name} [{model.hash}]", f"{stem} [{model.hash}]"]
    if model.sha256:
        aliases.append(model.sha256)
    if model.filename:
        aliases.append(PurePosixPath(model.filename.replace("\\", "/")).name)
    return [a for a in dict.fromkeys(aliases) if a]


def resolve_model(name: str, models: Sequence[SdModel]) -> SdModel:
    """A whole alias (exact, then any case, then any separators), then a unique prefix or part.

    A prefix or part needs MIN_PARTIAL letters or digits: a shared server is never switched to
    whatever happens to start with "a".
    """
    wanted = name.strip()
    if not models:
        raise NotFoundError(
            f"the server lists no checkpoints, so model {wanted!r} cannot be used",
            hint="put a model in models/Stable-diffusion, then `sdcli set-model --refresh`",
        )
    found = _pick(wanted, models, model_aliases, "checkpoints")
    if found is not None:
        return found
    key = fold(wanted)

    def partial(test: Callable[[str], bool]) -> list[SdModel]:
        hits = [m for m in models if any(test(fold(a)) for a in (m.title, m.model_name, m.name))]
        return list({m.title: m for m in hits}.values()) if key else []

    prefix = partial(lambda a: a.startswith(key))
    inside = partial(lambda a: key in a)
    if len(key) < MIN_PARTIAL and (prefix or inside):
        titles = [m.title for m in prefix or inside]
        shown = ", ".join(titles[:6]) + (f", … ({len(titles)} in all)" if len(titles) > 6 else "")
        raise NotFoundError(
            f"{wanted!r} is too short to pick a checkpoint by part of its name "
            f"(at least {MIN_PARTIAL} letters or digits); it {'starts' if prefix else 'is in'}: "
            f"{shown}",
            candidates=titles,
            hint="type more of the name",
        )
    for hits in (prefix, inside):
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise _ambiguous(wanted, [m.title for m in hits], "checkpoints")
    choices = [a for m in models for a in (m.model_name, m.title)]
    raise NotFoundError(
        f"no checkpoint matches {wanted!r}",
        candidates=[m.title for m in models],
        hint=_suggest(wanted, choices) or "run `sdcli models` to list them",
    )


def _scheduler_names(s: Scheduler) -> list[str]:
    return [s.label, s.name, *s.aliases]


def _sampler_names(s: Sampler) -> list[str]:
    return [s.name, *s.aliases]


def resolve_scheduler(name: str, schedulers: Sequence[Scheduler]) -> Scheduler:
    """A scheduler by label, name or alias, any case or separators ("karras", "sgm-uniform")."""
    found = _pick(name.strip(), schedulers, _scheduler_names, "schedulers")
    if found is not None:
        return found
    choices = [s.label for s in schedulers]
    raise NotFoundError(
        f"the server has no scheduler {name!r}",
        candidates=choices,
        hint=_suggest(name, choices) or "run `sdcli samplers` to list them",
    )


def _find_sampler(name: str, samplers: Sequence[Sampler]) -> Sampler | None:
    return _pick(name.strip(), samplers, _sampler_names, "samplers")


def _split_combined(
    name: str, samplers: Sequence[Sampler], schedulers: Sequence[Scheduler]
) -> tuple[Sampler, Scheduler] | None:
    """ "DPM++ 2M Karras" (an old combined name): a sampler followed by a scheduler."""
    key = fold(name)
    pairs: dict[tuple[str, str], tuple[Sampler, Scheduler]] = {}
    for sched in schedulers:
        for tail in {fold(a) for a in _scheduler_names(sched)}:
            if not tail or not key.endswith(tail) or key == tail:
                continue
            head = key[: -len(tail)]
            for sampler in samplers:
                if any(fold(a) == head for a in _sampler_names(sampler)):
                    pairs[(sampler.name, sched.name)] = (sampler, sched)
    if len(pairs) > 1:
        shown = [f"{a.name} + {b.label}" for a, b in pairs.values()]
        raise _ambiguous(name, shown, "sampler and scheduler pairs")
    return next(iter(pairs.values()), None)


def resolve_sampler(
    sampler: str | None,
    scheduler: str | None,
    samplers: Sequence[Sampler],
    schedulers: Sequence[Scheduler] | None,
) -> tuple[str | None, str | None]:
    """Return the exact (sampler_name, scheduler) to send to this server.

    Servers with /schedulers (1.9.1+) get the sampler and the scheduler label separately, and an
    old combined name such as "DPM++ 2M Karras" is split. Older servers get combined names whole.
    """
    if sampler is None and scheduler is None:
        return None, None
    new_style = schedulers is None and not has_combined_names(samplers)
    if new_style and sampler and not scheduler and _find_sampler(sampler, samplers) is None:
        # No list to split "DPM++ 2M Karras" by, and no sampler of that name: SD.Next answers
        # 404 to the whole name; web UI 1.9.0 would drop it for its first sampler.
        parts = split_combined(sampler, samplers)
        if parts is not None:
            return parts
    if schedulers is None and (has_combined_names(samplers) or not scheduler):
        return _resolve_old_style(sampler, scheduler, samplers), None
    if schedulers is None:
        # No /schedulers and no "X Karras" names: web UI 1.9.0 (it has the `scheduler` field but
        # not the list) or SD.Next (no per-request schedule). The caller decides what to send.
        name = _resolve_old_style(sampler, None, samplers) if sampler else None
        wanted = (scheduler or "").strip()
        return name, wanted if not same_name(wanted, "automatic") and wanted else None
    sched = resolve_scheduler(scheduler, schedulers) if scheduler else None
    if sampler is None:
        return None, sched.label if sched else None
    found = _find_sampler(sampler, samplers)
    if found is not None:
        return found.name, sched.label if sched else None
    split = _split_combined(sampler, samplers, schedulers)
    if split is None:
        raise _no_sampler(sampler, samplers)
    base, suffix = split
    if sched is not None and sched.name != suffix.name:
        raise NotFoundError(
            f"sampler {sampler!r} names the {suffix.label} schedule, "
            f"but the scheduler is set to {sched.label!r}",
            hint="drop one of them",
        )
    return base.name, suffix.label


# A1111 1.10's schedule labels, for splitting an old combined name when no list says them.
KNOWN_SCHEDULES = (
    "Uniform",
    "Karras",
    "Exponential",
    "Polyexponential",
    "SGM Uniform",
    "KL Optimal",
    "Align Your Steps",
    "Simple",
    "Normal",
    "DDIM",
    "Beta",
)


def split_combined(name: str, samplers: Sequence[Sampler] | None = None) -> tuple[str, str] | None:
    """ "DPM++ 2M Karras" -> ("DPM++ 2M", "Karras") when the head is a sampler (of `samplers`,
    if given) and the tail a known schedule label; None otherwise."""
    words = name.strip().split()
    for cut in range(len(words) - 1, 0, -1):
        head, tail = " ".join(words[:cut]), " ".join(words[cut:])
        label = next((k for k in KNOWN_SCHEDULES if k.lower() == tail.lower()), None)
        if label is None:
            continue
        if samplers is None:
            return head, label
        found = _find_sampler(head, samplers)
        if found is not None:
            return found.name, label
    return None


# Schedules that web UI versions before 1.9 appended to sampler names ("DPM++ 2M Karras").
_OLD_SCHEDULE_SUFFIXES = (" Karras", " Exponential")


def has_combined_names(samplers: Sequence[Sampler]) -> bool:
    """Whether this server names samplers with their schedule, as web UI versions before 1.9."""
    return any(s.name.endswith(_OLD_SCHEDULE_SUFFIXES) for s in samplers)


def resolve_upscaler(name: str, upscalers: Sequence[str]) -> str:
    """A hires upscaler by name, any case or separators; the server wants its exact spelling.

    An unknown name fails on the server only after the queue wait (500 "could not find
    upscaler named …"), so it is checked before anything is sent.
    """
    wanted = name.strip()
    found = _pick(wanted, list(dict.fromkeys(upscalers)), lambda u: [u], "upscalers")
    if found is not None:
        return found
    raise NotFoundError(
        f"the server has no upscaler {wanted!r} for hires fix",
        candidates=list(upscalers),
        hint=_suggest(wanted, upscalers) or "it has " + ", ".join(repr(u) for u in upscalers),
    )


def _no_sampler(wanted: str, samplers: Sequence[Sampler]) -> NotFoundError:
    choices = [s.name for s in samplers]
    return NotFoundError(
        f"the server has no sampler {wanted!r}",
        candidates=choices,
        hint=_suggest(wanted, choices) or "run `sdcli samplers` to list them",
    )


def _resolve_old_style(
    sampler: str | None, scheduler: str | None, samplers: Sequence[Sampler]
) -> str | None:
    """Before 1.9 the schedule is part of the sampler's name ("DPM++ 2M Karras")."""
    wanted = sampler or "Euler"
    if scheduler and not same_name(scheduler, "automatic"):
        combined = _find_sampler(f"{wanted} {scheduler}", samplers)
        if combined is None:
            raise NotFoundError(
                f"this server predates separate schedulers and has no sampler "
                f"{wanted + ' ' + scheduler!r}",
                hint=_suggest(f"{wanted} {scheduler}", [s.name for s in samplers]),
            )
        return combined.name
    found = _find_sampler(wanted, samplers)
    if found is None:
        raise _no_sampler(wanted, samplers)
    return found.name


# The `[hash]` the web UI appends to a checkpoint title once it knows the hash.
_HASH_SUFFIX = r" \[[0-9a-fA-F]{8,64}\]$"


def is_same_model(value: str | None, model: SdModel) -> bool:
    """Whether option `sd_model_checkpoint` = `value` means `model`.

    The option may hold a title, a bare alias (what a client sent), or a title that gained its
    `[hash]` after the first load while our list was read before it.
    """
    if not value:
        return False
    if value in model_aliases(model):
        return True
    bare = re.sub(_HASH_SUFFIX, "", value)
    if bare != value and bare == model.name:
        suffix = value[len(bare) + 2 : -1].lower()
        return not model.hash or suffix == model.hash.lower()
    return False


def loaded_model(value: str | None, models: Sequence[SdModel]) -> SdModel | None:
    """The checkpoint an option value names (an exact title first); None if none or unclear."""
    if not value:
        return None
    for model in models:
        if model.title == value:
            return model
    hits = [m for m in models if is_same_model(value, m)]
    return hits[0] if len(hits) == 1 else None


def checkpoint_option(options: Mapping[str, Any]) -> str | None:
    """The checkpoint option `sd_model_checkpoint` (a title, or the alias a client sent)."""
    value = options.get("sd_model_checkpoint")
    return str(value) if value else None


def loaded_title(value: str | None, model: SdModel) -> str:
    """The title to report: the server's normalised one when it is a title, else ours."""
    if value and (value == model.title or re.sub(_HASH_SUFFIX, "", value) == model.name):
        return value
    return model.title

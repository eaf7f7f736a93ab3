"""Name resolution against the server's own lists: checkpoints, samplers, schedulers.

The web UI silently replaces names it does not know (webui-api.md §6, §7.3), so sdcli resolves
every name itself before generating, and never picks a "closest" match on its own.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePosixPath

from sdcli.apitypes import Sampler, Scheduler, SdModel
from sdcli.errors import NotFoundError


def did_you_mean(name: str, choices: Iterable[str], *, n: int = 3) -> list[str]:
    pool = list(dict.fromkeys(choices))
    lowered = {c.lower(): c for c in pool}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[c] for c in close]


def _suggest(name: str, choices: Iterable[str]) -> str | None:
    close = did_you_mean(name, choices)
    return "did you mean " + " or ".join(repr(c) for c in close) + "?" if close else None


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
    """Exact alias, then case-insensitive alias, then a unique case-insensitive prefix/substring."""
    wanted = name.strip()
    if not models:
        raise NotFoundError(
            f"the server lists no checkpoints, so model {wanted!r} cannot be used",
            hint="put a model in models/Stable-diffusion, then `sdcli set-model --refresh`",
        )
    exact: list[Callable[[str], bool]] = [
        lambda a: a == wanted,
        lambda a: a.lower() == wanted.lower(),
    ]
    for test in exact:
        hits = _unique(m for m in models if any(test(a) for a in model_aliases(m)))
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise _ambiguous(wanted, hits)
    low = wanted.lower()
    partial: list[Callable[[str], bool]] = [
        lambda a: a.lower().startswith(low),
        lambda a: low in a.lower(),
    ]
    for test in partial:
        hits = _unique(m for m in models if any(test(a) for a in (m.title, m.model_name, m.name)))
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise _ambiguous(wanted, hits)
    choices = [a for m in models for a in (m.model_name, m.title)]
    raise NotFoundError(
        f"no checkpoint matches {wanted!r}",
        candidates=[m.title for m in models],
        hint=_suggest(wanted, choices) or "run `sdcli models` to list them",
    )


def _unique(models: Iterable[SdModel]) -> list[SdModel]:
    return list({m.title: m for m in models}.values())


def _ambiguous(name: str, hits: Sequence[SdModel]) -> NotFoundError:
    titles = [m.title for m in hits]
    shown = ", ".join(titles[:6]) + (f", … ({len(titles)} in all)" if len(titles) > 6 else "")
    return NotFoundError(
        f"{name!r} matches several checkpoints: {shown}",
        candidates=titles,
        hint="type more of the name",
    )


def resolve_scheduler(name: str, schedulers: Sequence[Scheduler]) -> Scheduler:
    """A scheduler by label, name or alias, any case ("karras", "Karras", "SGMUniform")."""
    low = name.strip().lower()
    for s in schedulers:
        if low in {s.label.lower(), s.name.lower(), *(a.lower() for a in s.aliases)}:
            return s
    choices = [s.label for s in schedulers]
    raise NotFoundError(
        f"the server has no scheduler {name!r}",
        candidates=choices,
        hint=_suggest(name, choices) or "run `sdcli samplers` to list them",
    )


def _find_sampler(name: str, samplers: Sequence[Sampler]) -> Sampler | None:
    low = name.strip().lower()
    for s in samplers:
        if s.name.lower() == low:
            return s
    for s in samplers:
        if low in (a.lower() for a in s.aliases):
            return s
    return None


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
        return name, wanted if wanted.lower() not in ("", "automatic") else None
    sched = resolve_scheduler(scheduler, schedulers) if scheduler else None
    if sampler is None:
        return None, sched.label if sched else None
    found = _find_sampler(sampler, samplers)
    if found is None:
        # "DPM++ 2M Karras": a sampler name followed by a scheduler label, name or alias.
        words = sampler.strip().split(" ")
        for cut in range(len(words) - 1, 0, -1):
            head, tail = " ".join(words[:cut]), " ".join(words[cut:])
            base = _find_sampler(head, samplers)
            if base is None:
                continue
            try:
                suffix = resolve_scheduler(tail, schedulers)
            except NotFoundError:
                continue
            if sched is not None and sched.name != suffix.name:
                raise NotFoundError(
                    f"sampler {sampler!r} names the {suffix.label} schedule, "
                    f"but the scheduler is set to {sched.label!r}",
                    hint="drop one of them",
                )
            return base.name, suffix.label
        choices = [s.name for s in samplers]
        raise NotFoundError(
            f"the server has no sampler {sampler!r}",
            candidates=choices,
            hint=_suggest(sampler, choices) or "run `sdcli samplers` to list them",
        )
    return found.name, sched.label if sched else None


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
    """A hires upscaler by exact name, then ignoring case; the server wants the exact one.

    An unknown name fails on the server only after the queue wait (500 "could not find
    upscaler named …"), so it is checked before anything is sent.
    """
    wanted = name.strip()
    if wanted in upscalers:
        return wanted
    hits = list(dict.fromkeys(u for u in upscalers if u.lower() == wanted.lower()))
    if len(hits) == 1:
        return hits[0]
    raise NotFoundError(
        f"the server has no upscaler {wanted!r} for hires fix",
        candidates=list(upscalers),
        hint=_suggest(wanted, upscalers) or "it has " + ", ".join(repr(u) for u in upscalers),
    )


def _resolve_old_style(
    sampler: str | None, scheduler: str | None, samplers: Sequence[Sampler]
) -> str | None:
    """Before 1.9 the schedule is part of the sampler's name ("DPM++ 2M Karras")."""
    wanted = sampler or "Euler"
    if scheduler and scheduler.lower() not in ("automatic", ""):
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
        choices = [s.name for s in samplers]
        raise NotFoundError(
            f"the server has no sampler {wanted!r}",
            candidates=choices,
            hint=_suggest(wanted, choices) or "run `sdcli samplers` to list them",
        )
    return found.name

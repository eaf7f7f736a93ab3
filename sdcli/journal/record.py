"""A Job as the journal keeps it: JSON that rebuilds the Job without the command line, and the
key that tells whether a command line asks for the same job (`generate --resume`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdcli.datatypes import frozen
from sdcli.job import Job

if TYPE_CHECKING:
    from sdcli.dynprompts import DynamicPrompts
    from sdcli.sweeps import Axis

# What changes the images or where they go: a command line differing in one of these is
# another job. --keep-going, --retries and --overwrite only change how a run goes.
_KEY_FIELDS = (
    "mode",
    "values",
    "sets",
    "preset_names",
    "inputs",
    "mask",
    "output_dir",
    "name_template",
    "batches",
    "dynamic",
    "axes",
)


@frozen
class PromptSource:
    """Where a run's prompts come from: `words` (the command line), `file` or `stdin`."""

    kind: str
    path: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> PromptSource:
        path = doc.get("path")
        return cls(str(doc.get("kind", "words")), str(path) if path is not None else None)

    def describe(self) -> str:
        if self.kind == "file":
            return f"file {self.path}"
        return "stdin" if self.kind == "stdin" else "command line"


def source_of(words: Iterable[str], prompts_file: Path | None) -> PromptSource:
    if prompts_file is not None:
        return PromptSource("file", str(prompts_file.resolve()))
    return PromptSource("stdin") if list(words) == ["-"] else PromptSource("words")


def job_record(job: Job) -> dict[str, Any]:
    """Every Job field but the prompts (the journal keeps those one by one), paths absolute."""
    return {
        "mode": job.mode,
        "values": _plain(job.values),
        "sets": _plain(job.sets),
        "preset_names": list(job.preset_names),
        "inputs": [str(p.resolve()) for p in job.inputs],
        "mask": str(job.mask.resolve()) if job.mask is not None else None,
        "output_dir": str(job.output_dir.resolve()),
        "name_template": job.name_template,
        "overwrite": job.overwrite,
        "batches": job.batches,
        "keep_going": job.keep_going,
        "retries": job.retries,
        "retry_backoff": job.retry_backoff,
        "dynamic": _dynamic_record(job),
        "axes": [
            {"key": a.key, "label": a.label, "texts": list(a.texts), "settings": _plain(a.settings)}
            for a in job.axes
        ],
    }


def job_key(record: Mapping[str, Any], source: PromptSource) -> str:
    """A digest of what makes the images: the same command line gives the same key."""
    chosen = {name: record.get(name) for name in _KEY_FIELDS}
    chosen["source"] = source.as_json()
    text = json.dumps(chosen, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def job_from_record(record: Mapping[str, Any], prompts: Iterable[str]) -> Job:
    """The Job a journal recorded, with `prompts`."""
    mask = record.get("mask")
    return Job(
        mode=record["mode"],
        values=dict(record["values"]),
        sets=dict(record["sets"]),
        prompts=prompts,
        preset_names=tuple(record.get("preset_names", ())),
        inputs=tuple(Path(p) for p in record.get("inputs", ())),
        mask=Path(mask) if mask else None,
        output_dir=Path(record["output_dir"]),
        name_template=record["name_template"],
        overwrite=bool(record.get("overwrite", False)),
        batches=int(record.get("batches", 1)),
        keep_going=bool(record.get("keep_going", False)),
        retries=int(record.get("retries", 0)),
        retry_backoff=float(record.get("retry_backoff", 1.0)),
        dynamic=_dynamic(record.get("dynamic")),
        axes=tuple(_axis(doc) for doc in record.get("axes") or ()),
    )


def _dynamic_record(job: Job) -> dict[str, Any] | None:
    d = job.dynamic
    if d is None:
        return None
    return {
        "wildcards": str(d.wildcards.resolve()),
        "wildcards_given": d.wildcards_given,
        "switch": d.switch,
        "combinatorial": d.combinatorial,
        "variants": d.variants,
    }


def _dynamic(doc: Mapping[str, Any] | None) -> DynamicPrompts | None:
    if not doc:
        return None
    from sdcli.dynprompts import DynamicPrompts

    return DynamicPrompts(
        wildcards=Path(doc["wildcards"]),
        wildcards_given=bool(doc.get("wildcards_given")),
        switch="on" if doc.get("switch") == "on" else "auto",
        combinatorial=bool(doc.get("combinatorial")),
        variants=doc.get("variants"),
    )


def _axis(doc: Mapping[str, Any]) -> Axis:
    from sdcli.sweeps import Axis

    return Axis(
        key=str(doc["key"]),
        label=str(doc["label"]),
        texts=tuple(str(t) for t in doc["texts"]),
        settings=tuple(tuple((str(k), _frozen(v)) for k, v in cell) for cell in doc["settings"]),
    )


def _frozen(value: Any) -> Any:
    """A JSON value hashable again, as the planned unit's was (lists back to tuples)."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two job records, as short words (`steps`, `output_dir`…)."""
    found: list[str] = []
    for name in _KEY_FIELDS:
        a, b = old.get(name), new.get(name)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found += [str(k) for k in sorted(set(a) | set(b), key=str) if a.get(k) != b.get(k)]
        elif a != b:
            found.append(name)
    return found


def _plain(value: Any) -> Any:
    """`value` as JSON would give it back (a tuple as a list, a Path as text)."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))

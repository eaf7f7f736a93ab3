"""What the fake server knows: captured lists, checkpoints with their aliases, sampler lookup.

The JSON under `data/` was captured from a live A1111 v1.10.1 (paths rewritten to /home/user);
it ships inside the package so the fake runs from an installed wheel.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sdcli.testing.fake_profiles import Profile

MODELS_DIR = "/home/user/stable-diffusion-webui/models/Stable-diffusion"
SDNEXT_MODELS_DIR = "/home/user/sdnext/models/Stable-diffusion"


@functools.cache
def _load(name: str) -> Any:
    text = (
        resources.files("sdcli.testing").joinpath("data").joinpath(name).read_text(encoding="utf-8")
    )
    return json.loads(text)


def load_json(name: str) -> Any:
    """A private copy of one data file, so callers may mutate what they get."""
    return copy.deepcopy(_load(name))


def endpoint_data(name: str) -> Any:
    """The captured answer of one GET list endpoint (`samplers`, `upscalers`, ...)."""
    return copy.deepcopy(_load("endpoints.json")[name])


def openapi() -> dict[str, Any]:
    """The live server's /openapi.json (API-only mode)."""
    data: dict[str, Any] = _load("openapi.json")
    return data


def schema(name: str) -> dict[str, Any]:
    """One component schema of the captured OpenAPI document."""
    found: dict[str, Any] = openapi()["components"]["schemas"][name]
    return found


# --- checkpoints -----------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """One file under models/Stable-diffusion; `hashed` flips on its first load (§7.1)."""

    name: str  # path relative to the models dir, with extension
    sha256: str
    legacy_hash: str  # the 8-hex `model_hash` (first 64 KiB of the file)
    hashed: bool = True
    sdnext: bool = False  # SD.Next's naming: no extension in titles, the folder kept in names

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]

    @property
    def model_name(self) -> str:
        if self.sdnext:
            return self.stem
        return self.name.replace("/", "_").replace("\\", "_").rsplit(".", 1)[0]

    @property
    def name_for_extra(self) -> str:
        return self.name.rsplit("/", 1)[-1].rsplit(".", 1)[0]

    @property
    def shorthash(self) -> str | None:
        return self.sha256[:10] if self.hashed else None

    @property
    def title(self) -> str:
        name = self.stem if self.sdnext else self.name
        return f"{name} [{self.sha256[:10]}]" if self.hashed else name

    @property
    def filename(self) -> str:
        return f"{SDNEXT_MODELS_DIR if self.sdnext else MODELS_DIR}/{self.name}"

    def aliases(self) -> set[str]:
        """Every exact string POST /options and override_settings accept for this model."""
        ids = {
            self.stem,
            self.legacy_hash,
            self.model_name,
            self.title,
            self.name,
            self.name_for_extra,
            f"{self.name} [{self.legacy_hash}]",
        }
        if self.hashed:
            short = self.sha256[:10]
            ids |= {
                short,
                self.sha256,
                f"{self.name} [{short}]",
                f"{self.name_for_extra} [{short}]",
            }
        return ids

    def api_item(self, *, with_type: bool = False) -> dict[str, Any]:
        if self.sdnext:  # key order and `type` as captured from SD.Next
            return {
                "title": self.title,
                "model_name": self.model_name,
                "filename": self.filename,
                "type": self.name.rsplit(".", 1)[-1],
                "sha256": self.sha256,
                "hash": self.shorthash,
                "config": None,
            }
        item: dict[str, Any] = {
            "title": self.title,
            "model_name": self.model_name,
            "hash": self.shorthash,
            "sha256": self.sha256 if self.hashed else None,
            "filename": self.filename,
            "config": None,
        }
        if with_type:
            item["type"] = "sdxl" if "xl" in self.name.lower() else "sd"
        return item


def _made_up_sha(name: str, prefix: str) -> str:
    """Full sha256 for a model whose real one we only know the start of."""
    return prefix + hashlib.sha256(name.encode()).hexdigest()[len(prefix) :]


def _legacy(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:8]


def default_checkpoints() -> list[Checkpoint]:
    """The fake's models: the captured one first, a subfolder model, and one never hashed."""
    specs = [
        (
            "random-sd15.safetensors",
            "6d338e23880015cdaeb77d7031eb3c2822fe2879046c99d44cca00ffefbb010c",
        ),
        ("qteamixQ_gamma.safetensors", _made_up_sha("qteamixQ_gamma", "58174ec2a4")),
        ("anime/counterfeitV30_v30.safetensors", _made_up_sha("counterfeitV30", "cbfba64e66")),
        (
            "v1-5-pruned-emaonly.safetensors",
            "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa",
        ),
        (
            "sd_xl_base_1.0.safetensors",
            "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b",
        ),
    ]
    models = [Checkpoint(name, sha, _legacy(name)) for name, sha in specs]
    fresh = "dreamshaper_8.safetensors"
    models.append(
        Checkpoint(fresh, _made_up_sha(fresh, "879db523c3"), _legacy(fresh), hashed=False)
    )
    return models


def sdnext_checkpoints() -> list[Checkpoint]:
    """SD.Next's list: the three captured models (real hashes), then three more, sorted by name."""
    captured = {
        m["filename"].split("Stable-diffusion/", 1)[1]: m["sha256"]
        for m in sdnext_data()["sd-models"]
    }
    more = (
        "v1-5-pruned-emaonly.safetensors",
        "sd_xl_base_1.0.safetensors",
        "dreamshaper_8.safetensors",
    )
    specs = {**captured, **{m.name: m.sha256 for m in default_checkpoints() if m.name in more}}
    return [
        Checkpoint(n, sha, _legacy(n), sdnext=True)
        for n, sha in sorted(specs.items(), key=lambda i: i[0].lower())
    ]


def sdnext_data() -> dict[str, Any]:
    """What a live SD.Next (master 058a7f0cf, 2026-07-23) answered; shared, so never mutate it."""
    data: dict[str, Any] = _load("sdnext.json")
    return data


def find_checkpoint(models: list[Checkpoint], alias: Any) -> Checkpoint | None:
    """Exact alias lookup, as `checkpoint_aliases.get` does; no fuzzy matching."""
    if not isinstance(alias, str):
        return None
    for model in models:
        if alias in model.aliases():
            return model
    return None


# --- samplers and schedulers ------------------------------------------------------------------

_SUFFIXES_18 = {
    "DPM++ 2M": ["Karras"],
    "DPM++ SDE": ["Karras"],
    "DPM++ 2M SDE": ["Exponential", "Karras"],
    "DPM++ 2M SDE Heun": ["Karras", "Exponential"],
    "DPM++ 2S a": ["Karras"],
    "DPM++ 3M SDE": ["Karras", "Exponential"],
    "LMS": ["Karras"],
    "DPM2": ["Karras"],
    "DPM2 a": ["Karras"],
}
_FORGE_SAMPLERS = ["DDPM", "HeunPP2", "IPNDM", "IPNDM_V", "DEIS"]
_FORGE_SCHEDULERS = [
    ("turbo", "Turbo"),
    ("align_your_steps_GITS", "Align Your Steps GITS"),
    ("align_your_steps_11", "Align Your Steps 11"),
    ("align_your_steps_32", "Align Your Steps 32"),
]


def _a1111_18_samplers(base: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """v1.8 had one entry per sampler+schedule ("DPM++ 2M Karras"); rebuilt, not captured."""
    out: list[dict[str, Any]] = []
    for item in base:
        if item["name"] == "DDIM CFG++":
            continue
        options = {k: v for k, v in item["options"].items() if k != "scheduler"}
        out.append({"name": item["name"], "aliases": item["aliases"], "options": options})
        for suffix in _SUFFIXES_18.get(item["name"], []):
            alias = f"{item['aliases'][0]}_{suffix[:2].lower()}"
            opts = {**options, "scheduler": suffix.lower()}
            out.append({"name": f"{item['name']} {suffix}", "aliases": [alias], "options": opts})
    return out


def samplers_for(profile: Profile) -> list[dict[str, Any]]:
    """GET /samplers for one flavour (A1111 stringifies option values, Forge does not)."""
    base: list[dict[str, Any]] = endpoint_data("samplers")
    if profile.sampler_catalog == "a1111-1.8":
        base = _a1111_18_samplers(base)
    elif profile.sampler_catalog == "forge":
        base += [{"name": n, "aliases": [n.lower()], "options": {}} for n in _FORGE_SAMPLERS]
    elif profile.sampler_catalog == "sdnext":
        return copy.deepcopy(sdnext_data()["samplers"])  # {name, options}: no aliases
    if not profile.sampler_options_as_strings:
        for item in base:
            item["options"] = {
                k: (v == "True" if v in ("True", "False") else v)
                for k, v in item["options"].items()
            }
    return base


def schedulers_for(profile: Profile) -> list[dict[str, Any]]:
    """GET /schedulers for one flavour (Forge adds a few)."""
    base: list[dict[str, Any]] = endpoint_data("schedulers")
    if profile.sampler_catalog == "forge":
        base += [
            {
                "name": n,
                "label": lbl,
                "aliases": None,
                "default_rho": -1.0,
                "need_inner_model": False,
            }
            for n, lbl in _FORGE_SCHEDULERS
        ]
    return base


@dataclass(frozen=True)
class SamplerChoice:
    """A request's sampler after the server's resolution rules (§6)."""

    sampler: str | None  # None: the strict servers' 404 "Sampler not found"
    scheduler: str  # scheduler label the job runs with ("Automatic" for the sampler's default)
    default_schedule: str | None  # label of the sampler's own schedule, if it has one
    k_diffusion: bool


_TIMESTEP_SAMPLERS = {"DDIM", "DDIM CFG++", "PLMS", "UniPC"}


def resolve_sampler(
    profile: Profile,
    samplers: list[dict[str, Any]],
    schedulers: list[dict[str, Any]],
    sampler_name: Any,
    scheduler_name: Any,
) -> SamplerChoice:
    """1.10: strip a scheduler suffix, exact name lookup, silent fallback to the first sampler.

    Kept apart from `sdcli.names` on purpose, and never to be merged with it: this is the
    server's resolver, written from the web UI's source and checked against captures, so a
    test compares sdcli's own matching with an independent one. Sharing the code would let a
    bug in one pass unseen through both.
    """
    by_name = {s["name"]: s for s in samplers}
    first = samplers[0]["name"]
    name = sampler_name if isinstance(sampler_name, str) and sampler_name else None
    if not profile.has_schedulers:
        found = by_name.get(name) if name is not None else by_name.get(first)
        if found is None:
            return SamplerChoice(None, "Automatic", None, False)
        return SamplerChoice(
            found["name"], "Automatic", None, found["name"] not in _TIMESTEP_SAMPLERS
        )
    labels = {s["name"]: s["label"] for s in schedulers}
    chosen = next(
        (s for s in schedulers if scheduler_name in (s["name"], s["label"])), schedulers[0]
    )
    name = name or first
    if profile.combined_sampler_names:
        for sched in schedulers:
            for option in [sched["label"], sched["name"], *(sched["aliases"] or [])]:
                if name.endswith(" " + option):
                    chosen, name = sched, name[: -(len(option) + 1)]
                    break
    if name not in by_name and profile.strict_sampler:
        return SamplerChoice(None, "Automatic", None, False)
    sampler = by_name.get(name, samplers[0])
    default = sampler["options"].get("scheduler")
    if default is not None and default == chosen["name"]:
        chosen = schedulers[0]
    return SamplerChoice(
        sampler["name"],
        chosen["label"],
        labels.get(default) if isinstance(default, str) else None,
        sampler["name"] not in _TIMESTEP_SAMPLERS,
    )

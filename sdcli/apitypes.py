"""Plain dataclasses for what the web UI answers, parsed once and leniently at the client edge."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from sdcli.datatypes import frozen


@frozen
class GeneratedImage:
    """One result image exactly as the server encoded it (no re-encoding anywhere)."""

    data: bytes
    index: int  # position among this request's results, from 0
    seed: int | None = None
    infotext: str | None = None
    # The server's base64 text of `data`, the very string of the JSON answer (no copy): a
    # terminal picture sends it as it came instead of encoding the bytes again.
    encoded: str = field(default="", repr=False, compare=False)


@frozen
class GenerationResult:
    """A txt2img/img2img answer: the real images, the decoded `info`, and anything extra."""

    images: list[GeneratedImage]
    info: dict[str, Any]
    parameters: dict[str, Any]
    extra_images: int = 0  # grids, masks, extension output: counted, never decoded
    problems: list[str] = field(default_factory=list)  # why an image was left out (undecodable)
    warnings: list[str] = field(default_factory=list)  # what is missing from the kept images


@frozen
class SdModel:
    """A checkpoint from /sd-models; `hash` and `sha256` are None until the server computed them."""

    title: str
    model_name: str
    filename: str = ""
    hash: str | None = None
    sha256: str | None = None
    config: str | None = None

    @property
    def name(self) -> str:
        """The path relative to the models dir with extension, as the web UI's aliases use it."""
        title = self.title
        if self.hash and title.endswith(f" [{self.hash}]"):
            return title[: -len(self.hash) - 3]
        return title


@frozen
class Sampler:
    """A sampler from /samplers; `aliases` are other names the server takes for it."""

    name: str
    aliases: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)


@frozen
class Scheduler:
    """A scheduler from /schedulers; `label` is the name the web UI shows."""

    name: str
    label: str
    aliases: tuple[str, ...] = ()


@frozen
class Progress:
    """The server's one global job, from /sdapi/v1/progress (may be another client's job)."""

    progress: float
    eta_relative: float
    job_count: int
    job_no: int
    sampling_step: int
    sampling_steps: int
    job: str = ""
    textinfo: str | None = None
    interrupted: bool = False
    current_image: bytes | None = field(default=None, repr=False)  # asked for: the live preview

    @property
    def idle(self) -> bool:
        return self.job_count == 0


@frozen
class TaskProgress:
    """One task's state from /internal/progress (UI mode only): ours, even behind a queue."""

    active: bool
    queued: bool
    completed: bool
    progress: float | None = None
    eta: float | None = None
    textinfo: str | None = None
    # A new preview only (None while the one with `id_live_preview` is still the newest)
    live_preview: bytes | None = field(default=None, repr=False)
    id_live_preview: int = -1


@frozen
class PngInfo:
    """The server's reading of an image's metadata (/png-info)."""

    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]

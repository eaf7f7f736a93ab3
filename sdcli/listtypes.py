"""What the server's other lists (LoRAs, embeddings, styles, VAEs, upscalers) and the extras tab
answer. Apart from `sdcli.apitypes` so that `generate`, which uses none of them, never defines them:
each frozen dataclass costs start-up time.
"""

from __future__ import annotations

from sdcli.datatypes import frozen


@frozen
class Lora:
    """A LoRA from the Lora extension's /loras: `name` is what `<lora:name:w>` takes."""

    name: str
    alias: str = ""
    path: str = ""


@frozen
class Embedding:
    """A textual-inversion embedding; `loaded` False when skipped for this model's architecture."""

    name: str
    loaded: bool
    vectors: int | None = None
    shape: int | None = None
    step: int | None = None
    checkpoint: str | None = None


@frozen
class PromptStyle:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


@frozen
class Vae:
    name: str
    filename: str = ""


@frozen
class Upscaler:
    """An extras/hires upscaler; `scale` is its model's native factor (4 for most)."""

    name: str
    model_name: str | None = None
    scale: float | None = None
    path: str | None = None


@frozen
class ExtrasResult:
    """An extras answer: each image exactly as the server encoded it, and its summary line."""

    images: list[bytes]
    html_info: str = ""

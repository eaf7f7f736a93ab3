"""`sdcli describe`: a caption (CLIP) or tags (DeepDanbooru) for local images, from the server.

A server without the interrogator's weights does not say so plainly (fixtures/more/): CLIP
answers 200 with the caption "<error>", DeepDanbooru fails its first call with a 500
IndexError and answers "" after that. The first two become one clear error here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sdcli.errors import ApiError, UsageError

if TYPE_CHECKING:
    from sdcli.client import WebUIClient
    from sdcli.inputs import InputImage

MODELS = ("clip", "deepdanbooru")
_WEIGHTS = {"clip": "CLIP interrogator's (BLIP)", "deepdanbooru": "DeepDanbooru"}


def check_model(model: str) -> str:
    """The model name as the API takes it (lower case); UsageError for any other."""
    name = model.strip().lower()
    if name not in MODELS:
        raise UsageError(f"--model must be clip or deepdanbooru, got {model!r}")
    return name


def describe(client: WebUIClient, image: InputImage, model: str) -> str:
    """The caption of one image; ApiError (exit 1) when the server could not make one."""
    missing = (
        f"the server has no {_WEIGHTS[model]} weights, it seems (the web UI downloads them "
        "on first use: check its console and internet access)"
    )
    try:
        caption = client.interrogate(image.data, model)
    except ApiError as exc:
        if exc.status == 500 and model == "deepdanbooru" and "IndexError" in exc.message:
            exc.hint = missing
        raise
    if caption.strip() == "<error>":
        raise ApiError(
            f"the server could not describe {image.path} with {model}: it answered '<error>'",
            hint=missing,
        )
    return caption

"""The extras tab as a use case: upscale (and restore faces in) local images, save the results.

One image goes to /extra-single-image, several to /extra-batch-images in batches. The server
keeps the input's own text chunks (its `parameters`) and adds a `postprocessing` chunk that
records the step (fixtures/more/); a PNG answer that lost the input's parameters (a JPEG input,
whose infotext sits in EXIF) gets them back as a chunk. Pixels are never re-encoded.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdcli.datatypes import frozen
from sdcli.errors import ApiError, UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sdcli.client import WebUIClient
    from sdcli.inputs import InputImage
    from sdcli.save import SavedImage

BATCH_SIZE = 8  # images per /extra-batch-images request: one upload stays a few MB
FACE_RESTORERS = {"gfpgan": "GFPGAN", "codeformer": "CodeFormer"}


@frozen
class UpscaleSpec:
    """What to do to every image; names as the server spells them (see `resolve`)."""

    upscaler: str = "None"
    scale: float | None = 2.0
    to: tuple[int, int] | None = None  # --to WxH: the exact size (cropped to fit)
    second: str | None = None
    blend: float = 0.0  # the second upscaler's share, 0..1
    restorer: str | None = None  # "GFPGAN" or "CodeFormer"
    restore_strength: float = 1.0
    codeformer_weight: float = 0.5

    def check(self) -> None:
        """Values the server's request model refuses (422) or silently ignores."""
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise UsageError(f"--scale must be a number above 0, got {self.scale}")
        if self.to is not None and min(self.to) < 1:
            raise UsageError("--to needs a width and height of at least 1")
        for label, value in (
            ("--blend", self.blend),
            ("--restore-strength", self.restore_strength),
            ("--codeformer-weight", self.codeformer_weight),
        ):
            if not (math.isfinite(value) and 0 <= value <= 1):
                raise UsageError(f"{label} must be between 0 and 1, got {value}")
        if self.second is not None and self.blend == 0:
            raise UsageError("--upscaler-2 needs --blend above 0 (the second upscaler's share)")
        if self.upscaler == "None" and self.restorer is None:
            raise UsageError(
                "nothing to do: give --upscaler NAME (`sdcli upscalers` lists them) "
                "or --restore-faces"
            )

    def body(self) -> dict[str, Any]:
        """The request fields besides the image(s) (ExtrasSingleImageRequest)."""
        body: dict[str, Any] = {"upscaler_1": self.upscaler}
        if self.to is not None:
            body.update(
                resize_mode=1,
                upscaling_resize_w=self.to[0],
                upscaling_resize_h=self.to[1],
                upscaling_crop=True,
            )
        elif self.scale is not None:
            body.update(resize_mode=0, upscaling_resize=self.scale)
        if self.second is not None:
            body.update(upscaler_2=self.second, extras_upscaler_2_visibility=self.blend)
        if self.restorer == "GFPGAN":
            body["gfpgan_visibility"] = self.restore_strength
        elif self.restorer == "CodeFormer":
            body.update(
                codeformer_visibility=self.restore_strength,
                codeformer_weight=self.codeformer_weight,
            )
        return body

    @property
    def label(self) -> str:
        """For file names: "x2", "1024x768", "faces"."""
        if self.upscaler == "None":
            return "faces"
        if self.to is not None:
            return f"{self.to[0]}x{self.to[1]}"
        return f"x{self.scale:g}"


def resolve(spec: UpscaleSpec, upscalers: Sequence[str], restorers: Sequence[str]) -> UpscaleSpec:
    """The same spec with every name as the server spells it (NotFoundError, exit 2)."""
    from dataclasses import replace

    from sdcli.names.listed import resolve_listed

    first = resolve_listed(spec.upscaler, upscalers, "upscaler") if spec.upscaler else "None"
    second = resolve_listed(spec.second, upscalers, "upscaler") if spec.second else None
    restorer = spec.restorer
    if restorer is not None:
        restorer = resolve_listed(
            FACE_RESTORERS.get(restorer.lower(), restorer), restorers, "face restorer"
        )
    return replace(spec, upscaler=first, second=second, restorer=restorer)


@frozen
class Upscaled:
    """One result as saved."""

    path: Path
    source: Path
    width: int | None
    height: int | None
    postprocessing: str
    parameters: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "input": str(self.source),
            "width": self.width,
            "height": self.height,
            "postprocessing": self.postprocessing,
            "parameters": self.parameters,
        }


def upscale_all(
    client: WebUIClient,
    images: Sequence[InputImage],
    spec: UpscaleSpec,
    output_dir: Path,
    *,
    overwrite: bool = False,
    batch_size: int = BATCH_SIZE,
) -> Iterator[Upscaled]:
    """Send, then save each answer as it comes; every result is on disk when it is yielded."""
    from sdcli.apiparse import encode_image

    body = spec.body()
    if len(images) == 1:
        one = images[0]
        yield _save(one, upscale_one(client, one.data, spec), spec, output_dir, overwrite)
        return
    for start in range(0, len(images), batch_size):
        group = images[start : start + batch_size]
        image_list = [{"data": encode_image(i.data), "name": i.path.name} for i in group]
        result = client.extras_batch({**body, "imageList": image_list})
        if len(result.images) != len(group):
            raise ApiError(
                f"the server answered {len(result.images)} image(s) for {len(group)} sent"
            )
        for source, data in zip(group, result.images, strict=True):
            yield _save(source, data, spec, output_dir, overwrite)


def upscale_one(client: WebUIClient, data: bytes, spec: UpscaleSpec) -> bytes:
    """One image through /extra-single-image: the answer's bytes, as the server encoded them."""
    from sdcli.apiparse import encode_image

    result = client.extras_single({**spec.body(), "image": encode_image(data)})
    return result.images[0]


def chained_spec(values: Mapping[str, Any], upscaler: str | None = None) -> UpscaleSpec | None:
    """`generate --upscale NAME:2` (the preset key `upscale`) as a spec, or None without one;
    `upscaler` is the server's spelling of the name (sdcli.names.request resolves it)."""
    raw = values.get("upscale")
    if not raw:
        return None
    from sdcli.payload import parse_upscale

    name, scale, to = parse_upscale(str(raw))
    return UpscaleSpec(upscaler=upscaler or name, scale=scale, to=to)


def upscale_in_place(client: WebUIClient, image: SavedImage, spec: UpscaleSpec) -> SavedImage:
    """`generate --upscale`: a saved image sent to the extras tab and replaced by the answer, as
    the web UI's own upscale in txt2img does (it saves the upscaled image only). The answer
    keeps the image's `parameters` and says what it did in a `postprocessing` chunk; that step
    is added to `parameters` too ("…, Postprocess upscale by: 2.0, Postprocess upscaler: X"), as
    the web UI writes it there. Anything wrong leaves the generated image where it is."""
    from dataclasses import replace

    from sdcli.output import write_atomic
    from sdcli.pngmeta import (
        NotPngError,
        TextNotStorable,
        read_text_chunks,
        sniff_image_format,
        with_parameters,
    )

    data = image.data or image.path.read_bytes()
    answer = upscale_one(client, data, spec)
    kind = sniff_image_format(answer)
    if kind is None or kind != sniff_image_format(data):
        raise ApiError(
            f"the server's upscale of {image.path} is not a {sniff_image_format(data)} image; "
            "the image is kept as generated"
        )
    text = image.infotext
    if kind == "png" and text:
        try:
            step = read_text_chunks(answer).get("postprocessing") or ""
            text = f"{text.rstrip()}, {step}" if step else text
            answer = with_parameters(answer, text, replace=True)
        except (NotPngError, TextNotStorable) as exc:
            raise ApiError(
                f"the server's upscale of {image.path} is a broken PNG ({exc}); "
                "the image is kept as generated"
            ) from exc
    write_atomic(image.path, answer, overwrite=True)
    return replace(image, data=answer, infotext=text, encoded="")


def _save(
    source: InputImage, data: bytes, spec: UpscaleSpec, output_dir: Path, overwrite: bool
) -> Upscaled:
    from sdcli.output import render_name, write_new_file
    from sdcli.pngmeta import (
        NotPngError,
        TextNotStorable,
        image_size,
        read_text_chunks,
        sniff_image_format,
        with_parameters,
    )

    kind = sniff_image_format(data)
    if kind is None:
        raise ApiError(f"the server's upscale of {source.path} is not an image file")
    notes: list[str] = []
    chunks: dict[str, str] = {}
    if kind == "png":
        try:
            chunks = read_text_chunks(data)
            original = _parameters_of(source)
            if original and "parameters" not in chunks:
                data = with_parameters(data, original)
                chunks["parameters"] = original
        except NotPngError as exc:
            raise ApiError(f"the server's upscale of {source.path} is a broken PNG") from exc
        except TextNotStorable as exc:
            notes.append(f"saved without the original's parameters: {exc}")
    ext = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "gif": ".gif"}[kind]
    literal = f"{source.stem}-{spec.label}".replace("{", "{{").replace("}", "}}")
    name = render_name(literal, {}, ext=ext)  # made a safe file name, never a path
    path = write_new_file(output_dir, name, data, overwrite=overwrite)
    size = image_size(data)
    return Upscaled(
        path=path,
        source=source.path,
        width=size[0] if size else None,
        height=size[1] if size else None,
        postprocessing=chunks.get("postprocessing", ""),
        parameters=chunks.get("parameters"),
        notes=notes,
    )


def _parameters_of(source: InputImage) -> str | None:
    from sdcli.pngmeta import NotPngError, read_parameters_from_file

    try:
        return read_parameters_from_file(source.path)
    except NotPngError:
        return None

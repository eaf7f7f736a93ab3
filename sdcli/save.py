"""Saving what the server sent: file names, one `{index}` counter per run, atomic writes.

The bytes are written as the server encoded them (only the PNG `parameters` chunk is added);
one Saver may serve several Runners at once (a queue over many servers): the counter is locked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdcli.apitypes import GeneratedImage, GenerationResult
from sdcli.datatypes import frozen
from sdcli.errors import ApiError, OutputError
from sdcli.names.answer import answer_model

if TYPE_CHECKING:
    from sdcli.job import Job

EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "gif": ".gif"}


@frozen
class SavedImage:
    """One image on disk and the parameters it was made with (the JSON line, the history)."""

    path: Path
    seed: int | None
    prompt: str
    negative_prompt: str
    model: str | None
    infotext: str | None
    index: int
    batch: int
    interrupted: bool = False  # from a job stopped by Ctrl-C: fewer steps than asked for
    # The bytes written, for a front end that shows the picture without reading the file back.
    # Only the ImageSaved event carries them: what a run keeps has them dropped (see run.py).
    data: bytes = field(default=b"", repr=False, compare=False)
    encoded: str = field(default="", repr=False, compare=False)  # the server's base64 of it

    def as_json(self) -> dict[str, Any]:
        """One `--json` line: typed values, the usual settings at the top (README "JSON output")."""
        from sdcli.infotext import json_fields, parse_infotext, typed_parameters

        info = parse_infotext(self.infotext) if self.infotext else None
        fields = json_fields(info)
        return {
            "path": str(self.path),
            "seed": self.seed if self.seed is not None else fields["seed"],
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "model": self.model or fields["model"],
            "width": fields["width"],
            "height": fields["height"],
            "steps": fields["steps"],
            "sampler": fields["sampler"],
            "scheduler": fields["scheduler"],
            "cfg_scale": fields["cfg_scale"],
            "interrupted": self.interrupted,
            "index": self.index,
            "batch": self.batch,
            "parameters": typed_parameters(info) if info else {},
            "infotext": self.infotext,
        }


def _ignore(message: str) -> None:
    pass


class Saver:
    """Names and writes the images of a run into one directory."""

    def __init__(
        self,
        output_dir: Path,
        name_template: str,
        *,
        overwrite: bool = False,
        preset_names: Sequence[str] = (),
    ) -> None:
        self.output_dir = output_dir
        self.name_template = name_template
        self.overwrite = overwrite
        self.preset_names = tuple(preset_names)
        self._counter = 0
        self._lock = threading.Lock()

    @classmethod
    def for_job(cls, job: Job) -> Saver:
        return cls(
            job.output_dir,
            job.name_template,
            overwrite=job.overwrite,
            preset_names=job.preset_names,
        )

    def check(self) -> None:
        """Refuse, before any request, a directory that cannot take the images."""
        from sdcli.output import check_output_dir

        check_output_dir(self.output_dir)

    def prepare(self) -> None:
        """While the answer is awaited: load what writing an image needs (a head start only)."""
        import sdcli.pngmeta  # noqa: F401

    def _next_index(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def save_all(
        self,
        payload: Mapping[str, Any],
        result: GenerationResult,
        stamp: datetime,
        batch: int,
        into: list[SavedImage],
        *,
        interrupted: bool = False,
        warn: Callable[[str], None] = _ignore,
        init: Path | None = None,
        first_index: int | None = None,
    ) -> None:
        """Save every usable image of one answer into `into`, then raise any problem.

        A broken image or a full disk on the next one must never cost the images already
        received: each is in `into` as soon as it is on disk. When the disk fills, the error
        names the seeds of the images that were lost with it. `first_index`: the {index} of the
        first image as planned (a journaled run), instead of the run's counter.
        """
        problems = [ApiError(text) for text in result.problems]
        for n, image in enumerate(result.images):
            index = None if first_index is None else first_index + n
            try:
                saved = self.save(
                    payload, result, image, stamp, batch, interrupted, warn, init, index=index
                )
                into.append(saved)
            except ApiError as exc:
                problems.append(exc)
            except OutputError as exc:
                raise _not_saved(exc, result.images[n:]) from exc
        if problems:
            raise problems[0]

    def save(
        self,
        payload: Mapping[str, Any],
        result: GenerationResult,
        image: GeneratedImage,
        stamp: datetime,
        batch: int,
        interrupted: bool = False,
        warn: Callable[[str], None] = _ignore,
        init: Path | None = None,
        *,
        index: int | None = None,
    ) -> SavedImage:
        """Write one image (its infotext in the PNG) under the next free name; `index`: its
        {index} as planned, else the run's next one."""
        from sdcli.output import render_name, slugify, write_new_file
        from sdcli.pngmeta import NotPngError, TextNotStorable, sniff_image_format, with_parameters

        data = image.data
        kind = sniff_image_format(data)
        if kind is None:
            raise ApiError(f"image {image.index + 1} from the server is not an image file")
        if kind == "png" and image.infotext:
            try:
                data = with_parameters(data, image.infotext)
            except NotPngError as exc:
                raise ApiError(f"image {image.index + 1} from the server is a broken PNG") from exc
            except TextNotStorable as exc:
                warn(f"image {image.index + 1} saved without its parameters: {exc}")
        if index is None:
            index = self._next_index()
        info = result.info
        model = answer_model(result)
        prompt = str(info.get("prompt", payload.get("prompt", "")))
        fields = {
            "seed": image.seed if image.seed is not None else "noseed",
            "date": stamp,
            "time": stamp,
            "preset": "+".join(self.preset_names) or "none",
            "index": index,
            "batch": batch,
            "prompt_slug": slugify(prompt) or "untitled",
            "model": model or "model",
            "sampler": info.get("sampler_name", payload.get("sampler_name")),
            "scheduler": payload.get("scheduler"),
            "cfg_scale": info.get("cfg_scale", payload.get("cfg_scale")),
            "width": info.get("width", payload.get("width")),
            "height": info.get("height", payload.get("height")),
            "steps": info.get("steps", payload.get("steps")),
            "init": init.stem if init is not None else None,
        }
        name = render_name(self.name_template, fields, ext=EXTENSIONS[kind])
        path = write_new_file(self.output_dir, name, data, overwrite=self.overwrite)
        return SavedImage(
            path=path,
            seed=image.seed,
            prompt=prompt,
            negative_prompt=str(info.get("negative_prompt", payload.get("negative_prompt", ""))),
            model=model,
            infotext=image.infotext,
            index=index,
            batch=batch,
            interrupted=interrupted,
            data=data,
            encoded=image.encoded,
        )


def _not_saved(error: OutputError, lost: Sequence[GeneratedImage]) -> OutputError:
    """The write error, naming the images it cost, so they can be made again by seed."""
    seeds = [str(image.seed) if image.seed is not None else "unknown" for image in lost]
    label = "seed" if len(seeds) == 1 else "seeds"
    return OutputError(f"{error.message}; not saved: {label} {', '.join(seeds)}", hint=error.hint)

"""A recorded request as the bottom layer of a new job (`sdcli rerun ID`).

The whole body goes in as `[params]`, so the request sent again is the one sent before, field
for field; flags, presets and `--set` given to the rerun are layered on top and win.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdcli.datatypes import frozen
from sdcli.errors import UsageError


@frozen
class Recorded:
    """What a rerun starts from: the body as sent, its mode, the seed its first image got."""

    id: int
    body: Mapping[str, Any]
    mode: str
    image_seed: int | None


def load(path: Path, gen_id: int) -> Recorded:
    """Generation `gen_id` of the history at `path` (exit 2 if there is none)."""
    import json
    from contextlib import closing

    from sdcli.history.store import generation, images, open_existing

    conn = open_existing(path)
    if conn is None:
        raise UsageError(f"no generation {gen_id} in the history: nothing recorded yet ({path})")
    with closing(conn):
        row = generation(conn, gen_id)
        if row is None:
            raise UsageError(f"no generation {gen_id} in the history", hint="`sdcli history`")
        seeds = [i["seed"] for i in images(conn, [gen_id])[gen_id] if i["seed"] is not None]
    body = json.loads(row["request"])
    if row["mode"] != "txt2img":
        raise UsageError(f"generation {gen_id} is {row['mode']}: only txt2img can be re-run")
    return Recorded(gen_id, body, row["mode"], seeds[0] if seeds else None)


def find_image(path: Path, image: Path) -> int | None:
    """The generation that saved a file with `image`'s content, if the history has one."""
    from contextlib import closing

    from sdcli.history.recorder import file_sha256
    from sdcli.history.store import by_sha256, open_existing

    digest = file_sha256(image)
    conn = open_existing(path) if digest else None
    if conn is None or digest is None:
        return None
    with closing(conn):
        return by_sha256(conn, digest)


def values_from_body(recorded: Recorded) -> dict[str, Any]:
    """Preset values that rebuild the body exactly. A random seed (-1) becomes the seed the
    first image really got, so a rerun makes the same picture."""
    params = {k: v for k, v in recorded.body.items() if k != "prompt"}
    values: dict[str, Any] = {"params": params}
    seed = recorded.body.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        if seed < 0 and recorded.image_seed is not None:
            seed = recorded.image_seed
            params["seed"] = seed
        values["seed"] = seed
    return values

"""The floor: the least a Python client can do for an image — POST, base64-decode, write.

    python bench/floor.py URL OUTDIR PAYLOAD_JSON PROMPT...   one image (one POST)
    python bench/floor.py URL OUTDIR PAYLOAD_JSON -           one POST per stdin line, one Session

No checks, no names, no metadata, no progress: what no real client can go below.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import requests


def main(argv: list[str]) -> int:
    url, out, payload = argv[1], Path(argv[2]), json.loads(argv[3])
    if argv[4:] == ["-"]:
        prompts = [line.strip() for line in sys.stdin if line.strip()]
    else:
        prompts = [" ".join(argv[4:])]
    n = 0
    with requests.Session() as session:
        for prompt in prompts:
            response = session.post(f"{url}/sdapi/v1/txt2img", json={**payload, "prompt": prompt})
            response.raise_for_status()
            for image in response.json()["images"]:
                n += 1
                (out / f"{n:05d}.png").write_bytes(base64.b64decode(image))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

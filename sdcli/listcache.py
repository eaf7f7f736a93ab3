"""The server's lists kept on disk for a few minutes, so a shell loop checks names locally.

One JSON file per server URL (the URL never holds credentials: `config.split_credentials` took
them out) in the user cache dir. Each list carries the time it was fetched and lives `ttl`
seconds. A file that cannot be read, does not parse, or was written by another sdcli version
or format is ignored and replaced at the next write. Writes go to a temporary file renamed over
the old one, so a reader (another process) sees the old file or the new one, never half of one.

The cache must never make sdcli wrong; the rules that ensure it live with the callers:
`names.request.resolve_names` fetches afresh before saying a name is unknown, and the runner
drops the file when an answer differs from what was asked.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sdcli.apitypes import Sampler, Scheduler, SdModel

FORMAT = 1  # bumped when the file's layout changes
log = logging.getLogger("sdcli.cache")


def _samplers(raw: Any) -> list[Sampler]:
    return [
        Sampler(str(s["name"]), tuple(str(a) for a in s["aliases"]), dict(s["options"]))
        for s in raw
    ]


def _schedulers(raw: Any) -> list[Scheduler] | None:
    if raw is None:
        return None
    return [
        Scheduler(str(s["name"]), str(s["label"]), tuple(str(a) for a in s["aliases"])) for s in raw
    ]


def _models(raw: Any) -> list[SdModel]:
    return [SdModel(**m) for m in raw]


def _strings(raw: Any) -> list[str]:
    if not isinstance(raw, list):
        raise TypeError("not a list")
    return [str(s) for s in raw]


def _strings_or_none(raw: Any) -> list[str] | None:
    return None if raw is None else _strings(raw)


def _flag(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise TypeError("not a bool")
    return raw


# What can be cached, and how each entry is read back (a malformed entry counts as absent).
# Not cached on purpose: GET /options (the loaded model, and which keys the server holds,
# change under other clients: see README "Caching").
DECODERS: dict[str, Callable[[Any], Any]] = {
    "samplers": _samplers,
    "schedulers": _schedulers,
    "models": _models,
    "upscalers": _strings,
    "loras": _strings_or_none,  # None: no Lora extension route
    "vaes": _strings_or_none,  # None: no /sd-vae (Forge)
    "styles": _strings,
    "embeddings": _strings_or_none,  # every name, loaded or skipped; None: no such route
    "extras_upscalers": _strings,  # what `--upscale` may name (no latent modes)
    "sdnext": _flag,  # the flavour: SD.Next or not (GET /sdapi/v1/version)
    "forge": _flag,  # Forge or not (its forge_* options)
    "held": _strings,  # options the server holds, so never need a pin (sdcli.pinning)
}


def _encode(value: Any) -> Any:
    if isinstance(value, list):
        return [asdict(v) if hasattr(v, "__dataclass_fields__") else v for v in value]
    return value


def file_name(url: str) -> str:
    """`http://127.0.0.1:7860` -> `lists-http-127.0.0.1-7860-<crc>.json` (readable, and two URLs
    that read alike still get two files)."""
    readable = "".join(c if c.isalnum() or c in ".-" else "-" for c in url)
    readable = "-".join(part for part in readable.split("-") if part)[:80]
    return f"lists-{readable}-{zlib.crc32(url.encode('utf-8')):08x}.json"


class ListCache:
    """The lists of one server, read once per process; `ttl` seconds of life per list."""

    def __init__(
        self,
        directory: Path,
        url: str,
        ttl: float,
        *,
        read: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = directory / file_name(url)
        self.url = url
        self.ttl = ttl
        self.read = read  # False: --no-cache, set-model: never answer from the file, still write
        self.clock = clock
        self._entries: dict[str, Any] | None = None  # the file's valid entries, once read

    def _load(self) -> dict[str, Any]:
        if self._entries is None:
            self._entries = self._read_file()
        return self._entries

    def _read_file(self) -> dict[str, Any]:
        from sdcli import __version__

        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.debug("list cache %s ignored: %s", self.path, exc)
            return {}
        if (
            not isinstance(data, dict)
            or data.get("format") != FORMAT
            or data.get("sdcli") != __version__
            or data.get("url") != self.url
            or not isinstance(data.get("lists"), dict)
        ):
            log.debug("list cache %s ignored: another version, format or server", self.path)
            return {}
        return {k: v for k, v in data["lists"].items() if isinstance(v, dict)}

    def _fresh_entry(self, key: str) -> dict[str, Any] | None:
        if not self.read or self.ttl <= 0:
            return None
        entry: dict[str, Any] | None = self._load().get(key)
        if entry is None:
            return None
        at = entry.get("at")
        age = self.clock() - at if isinstance(at, (int, float)) else -1
        if not 0 <= age < self.ttl:  # a time in the future (a clock set back) counts as stale
            return None
        return entry

    def fresh(self, key: str) -> bool:
        """Whether the file has `key` younger than `ttl`, without decoding it (hundreds of
        checkpoints): a malformed entry counts here, and `get` still finds it absent."""
        return self._fresh_entry(key) is not None

    def get(self, key: str) -> tuple[bool, Any]:
        """(True, the list) when the file has it, younger than `ttl`; else (False, None)."""
        entry = self._fresh_entry(key)
        if entry is None:
            return False, None
        try:
            return True, DECODERS[key](entry.get("value"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.debug("list cache: %s ignored: %s", key, exc)
            return False, None

    def put(self, key: str, value: Any) -> None:
        """Keep a list just fetched from the server (written at once; failures only logged)."""
        if self.ttl <= 0 or key not in DECODERS:
            return
        entries = dict(self._load()) if self.read else dict(self._read_file())
        entries[key] = {"at": self.clock(), "value": _encode(value)}
        self._entries = entries
        self._write(entries)

    def drop(self) -> None:
        """Forget every list of this server (an answer showed the cache may be wrong)."""
        self._entries = {}
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.debug("list cache %s not removed: %s", self.path, exc)

    def _write(self, entries: dict[str, Any]) -> None:
        from sdcli import __version__

        data = {"format": FORMAT, "sdcli": __version__, "url": self.url, "lists": entries}
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        # Unique per process and thread: two writers never share a temporary file.
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(text)
                os.replace(tmp, self.path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        except OSError as exc:  # a read-only or full disk costs the cache, never the run
            log.debug("list cache %s not written: %s", self.path, exc)

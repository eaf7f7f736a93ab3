"""The history as a sink of a run's events: one row per request, one per saved image.

Recording must never slow or break a generation. Events are only queued on the run's thread;
a writer thread opens the database and writes them. It starts while the first request is on
its way (`prepare`, called by the Runner: sqlite3 and the hashing are loaded then, not before
the request is sent), else at the next event or at `close()`. If the database cannot be
opened or stays locked, recording stops and `close()` returns one warning; the run itself
never notices.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from sdcli.errors import Interrupted, SdcliError
from sdcli.events import (
    Event,
    ImageSaved,
    Interrupting,
    ServerDropped,
    UnitFailed,
    UnitFinished,
    UnitStarted,
)
from sdcli.job import Unit

if TYPE_CHECKING:
    import sqlite3

# A run waits at most this long at its end for the history to be written (a locked database).
WRITE_TIMEOUT = 3.0
# Request fields that hold images (img2img, inpainting, extras): left out of the stored body.
IMAGE_FIELDS = ("init_images", "mask", "image", "imageList")

_END = object()


class HistoryRecorder:
    """A Sink (call it with each event), then `close(error)` once the run is over.

    `close` returns the warning to show, if recording failed (at most one per run).
    """

    def __init__(
        self,
        path: Path,
        *,
        mode: str = "txt2img",
        presets: Sequence[str] = (),
        command: Sequence[str] = (),
        rerun_of: int | None = None,
        timeout: float = WRITE_TIMEOUT,
    ) -> None:
        self.path = path
        self.mode = mode
        self.presets = json.dumps(list(presets), ensure_ascii=False)
        self.command = json.dumps(scrub_command(command), ensure_ascii=False)
        self.rerun_of = rerun_of
        self.timeout = timeout
        self.problem: str | None = None
        self.ids: list[int] = []  # the generations recorded, in order
        self._queue: queue.SimpleQueue[tuple[float, float, object]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._open: dict[tuple[str, Unit], tuple[int, float]] = {}  # unit -> (row, started)
        self._stopping: set[int] = set()  # rows of units being interrupted

    def __call__(self, event: Event) -> None:
        kinds = (UnitStarted, ImageSaved, UnitFinished, UnitFailed, Interrupting, ServerDropped)
        if not isinstance(event, kinds):
            return  # progress, retries and warnings are not history
        self._queue.put((time.time(), time.monotonic(), event))
        # A request about to be sent is only queued: its row is written once it is on its way
        # (prepare), so the writer's work never holds the request back.
        if not isinstance(event, UnitStarted):
            self._start()

    def prepare(self) -> None:
        """The first request is on its way: load what writing needs, start the writer (which
        opens the database in its own thread: a locked one must never hold the run)."""
        import hashlib  # noqa: F401  (file_sha256's; loading OpenSSL takes a few ms)
        import sqlite3  # noqa: F401

        import sdcli.history.store
        import sdcli.infotext  # noqa: F401  (server_facts')

        self._start()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="sdcli-history", daemon=True)
            self._thread.start()

    def close(self, error: BaseException | None = None) -> str | None:
        """Record how the run ended for requests still open, wait for the writes (bounded)."""
        if self._thread is None:
            if self._queue.empty():
                return None  # nothing was ever sent
            self._start()  # the run ended before its first request was on its way
        assert self._thread is not None
        self._queue.put((time.time(), time.monotonic(), (_END, error)))
        self._thread.join(self.timeout + 1.0)
        if self._thread.is_alive() and self.problem is None:
            self.problem = f"cannot write the history {self.path}: the database stayed locked"
        if self.problem is None:
            return None
        return f"{self.problem}; this run is not (fully) recorded there"

    # --- the writer thread -------------------------------------------------------------------

    def _work(self) -> None:
        import sqlite3

        while True:
            wall, mono, item = self._queue.get()
            try:
                if self.problem is None:
                    self._write(wall, mono, item)
            except SdcliError as exc:  # cannot open it: the message names the file
                self.problem = exc.message
            except (sqlite3.Error, OSError) as exc:
                self.problem = f"cannot write the history {self.path}: {_reason(exc)}"
            if isinstance(item, tuple) and item and item[0] is _END:
                break
        if self._conn is not None:
            self._conn.close()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            from sdcli.history.store import connect

            self._conn = connect(self.path, timeout=self.timeout)
        return self._conn

    def _write(self, wall: float, mono: float, item: object) -> None:
        if isinstance(item, tuple):
            self._end(mono, item[1])
        elif isinstance(item, UnitStarted):
            self._started(wall, mono, item)
        elif isinstance(item, ImageSaved):
            self._image(item)
        elif isinstance(item, UnitFinished):
            self._finish(item.server, item.unit, "ok", None, item.seconds)
        elif isinstance(item, UnitFailed):
            self._finish(item.server, item.unit, "failed", str(item.error), mono)
        elif isinstance(item, ServerDropped) and item.unit is not None:
            # the server left the run; its unit goes to another one (a new row there)
            self._finish(item.server, item.unit, "failed", str(item.error), mono)
        elif isinstance(item, Interrupting):
            opened = self._open.get((item.server, item.unit))
            if opened is not None:
                self._stopping.add(opened[0])

    def _started(self, wall: float, mono: float, event: UnitStarted) -> None:
        body = stored_body(event.body)
        started = datetime.fromtimestamp(wall, timezone.utc)
        from sdcli.history.store import utc_text

        seed = body.get("seed")
        # the checkpoint's title when the request names one (--model); else the images tell
        overrides = body.get("override_settings")
        title = overrides.get("sd_model_checkpoint") if isinstance(overrides, dict) else None
        cursor = self._db().execute(
            """INSERT INTO generations (started, outcome, mode, server, model, prompt,
                negative_prompt, seed, batch, batches, request, presets, command, rerun_of,
                template)
            VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                utc_text(started),
                self.mode,
                scrub_url(event.server),
                title if isinstance(title, str) else None,
                str(body.get("prompt", event.unit.prompt)),
                str(body.get("negative_prompt") or ""),
                seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
                event.unit.batch,
                event.unit.batches,
                json.dumps(body, ensure_ascii=False),
                self.presets,
                self.command,
                self.rerun_of,
                event.unit.template,
            ),
        )
        row = int(cursor.lastrowid or 0)
        self.ids.append(row)
        self._open[(event.server, event.unit)] = (row, mono)

    def _image(self, event: ImageSaved) -> None:
        opened = self._open.get((event.server, event.unit))
        if opened is None:
            return
        image = event.image
        path = Path(image.path).absolute()
        db = self._db()
        db.execute(
            """INSERT INTO images (generation_id, path, sha256, seed, infotext, interrupted)
            VALUES (?, ?, ?, ?, ?, ?)""",
            (
                opened[0],
                str(path),
                file_sha256(path),
                image.seed,
                image.infotext,
                int(image.interrupted),
            ),
        )
        facts = server_facts(image.infotext)
        if facts:
            db.execute(
                """UPDATE generations SET model = coalesce(model, ?),
                    model_hash = coalesce(model_hash, ?), flavour = coalesce(flavour, ?),
                    version = coalesce(version, ?) WHERE id = ?""",
                (
                    facts.get("model"),
                    facts.get("model_hash"),
                    facts.get("flavour"),
                    facts.get("version"),
                    opened[0],
                ),
            )

    def _finish(
        self, server: str, unit: Unit, outcome: str, error: str | None, seconds_or_mono: float
    ) -> None:
        opened = self._open.pop((server, unit), None)
        if opened is None:
            return
        row, started = opened
        seconds = seconds_or_mono if outcome == "ok" else seconds_or_mono - started
        self._db().execute(
            "UPDATE generations SET outcome = ?, error = ?, seconds = ? WHERE id = ?",
            (outcome, error, round(seconds, 3), row),
        )

    def _end(self, mono: float, error: object) -> None:
        """The run is over: requests still open end with its error (or its Ctrl-C)."""
        for (server, unit), (row, _) in list(self._open.items()):
            stopped = row in self._stopping or isinstance(error, (Interrupted, KeyboardInterrupt))
            if error is None:
                message = "the run ended without an answer"
            else:
                message = str(error) or type(error).__name__
            self._finish(server, unit, "interrupted" if stopped else "failed", message, mono)


def stored_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The request body as sent, each image replaced by a note of its size (history stays
    small, and an image sent is already a file the user has)."""
    kept = dict(body)
    for key in IMAGE_FIELDS:
        value = kept.get(key)
        if isinstance(value, list):
            kept[key] = [f"<image: {len(str(v))} characters left out>" for v in value]
        elif isinstance(value, str) and value:
            kept[key] = f"<image: {len(value)} characters left out>"
    return kept


def scrub_url(url: str) -> str:
    """A URL without its user and password (`http://u:p@host:7860` -> `http://host:7860`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url if "@" not in url else "<a URL with credentials, left out>"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


# Patterns are kept as text: `re` compiles (and caches) each at first use, not at start-up.
_URLISH = r"^[A-Za-z][A-Za-z0-9+.-]*://"
_SECRET_FLAGS = ("--auth",)


def scrub_command(argv: Sequence[str]) -> list[str]:
    """The command line without credentials: `--auth`'s value and URLs' user:pass removed."""
    out: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            out.append("***")
            hide_next = False
        elif word in _SECRET_FLAGS:
            out.append(word)
            hide_next = True
        elif word.partition("=")[0] in _SECRET_FLAGS:
            out.append(word.partition("=")[0] + "=***")
        elif "@" in word and ("://" in word or "=" in word):
            urlish = re.match(_URLISH, word)
            flag, sep, value = ("", "", word) if urlish else word.partition("=")
            out.append(flag + sep + scrub_url(value))
        else:
            out.append(word)
    return out


def file_sha256(path: Path) -> str | None:
    """The file's sha256 (hex), or None when it cannot be read."""
    import hashlib

    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def server_facts(infotext: str | None) -> dict[str, str]:
    """Model, hash, flavour and version as the image's own parameters tell them.

    Forge's version starts with "f" (`f2.0.1v1.10.1`), SD.Next writes `App: SD.Next`, the web
    UI writes `v1.10.1`; reForge cannot be told from the web UI here.
    """
    if not infotext:
        return {}
    from sdcli.infotext import parse_infotext

    info = parse_infotext(infotext)
    facts: dict[str, str] = {}
    if info.model:
        facts["model"] = info.model
    if info.model_hash:
        facts["model_hash"] = info.model_hash
    version = info.params.get("Version")
    if version:
        facts["version"] = version
    if info.params.get("App", "").lower() == "sd.next":
        facts["flavour"] = "sdnext"
    elif version and re.match(r"^f\d", version):
        facts["flavour"] = "forge"
    elif version and re.match(r"^v\d", version):
        facts["flavour"] = "a1111"
    return facts


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)

"""A run's journal at work: it plans each prompt's units (seeds and {index} fixed), records
each unit's outcome as an event Sink, and on resume says what is left to do.

Exactly once: a unit is `done` once its images are on disk and recorded. The only gap is a
crash between writing an image and the commit that records it; `reconcile` closes it on
resume: image files in the output folder newer than the run's last commit are read, and one
whose seed and prompt are a unit's is that unit's. A unit whose images are all there is done;
one left half-made (interrupted, failed half-way, cut by the crash) has its images removed and
is made again whole, with its planned seeds and {index}.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from sdcli.datatypes import mutable
from sdcli.errors import UsageError
from sdcli.events import Event, ImageSaved, UnitFailed, UnitFinished
from sdcli.job import Job, Unit, units
from sdcli.journal.record import PromptSource, job_key, job_record
from sdcli.journal.store import JournalUnavailable, unavailable, utc_now

# Files this much older than the run's last commit are never taken for a crashed unit's (a
# coarse file system clock, FAT's 2 s, is covered).
MTIME_SLACK = 10.0
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
_MAX_SEED = 4294967294  # the web UI draws random seeds below this


class JournalMismatch(UsageError):
    """The prompts or units of a resumed run are not the ones it planned."""


@mutable
class Resumed:
    """What a resumed run found before going on (for the front end to tell)."""

    done: int
    total: int
    recovered: int  # units found saved on disk though not recorded (a crash)
    removed: list[Path]  # images of half-made units, removed: those units are made again
    temporary: int = 0  # temporary files a killed sdcli left in the output folder, removed


def images_per_unit(job: Job, unit: Unit | None = None) -> int:
    """How many images one request makes (batch size times the request's own batch count);
    an X/Y/Z plot's cell may set its own batch size."""
    own = dict(unit.overrides) if unit is not None else {}
    size = job.sets.get("batch_size", own.get("batch_size", job.values.get("batch_size"))) or 1
    n_iter = job.sets.get("n_iter") or 1
    try:
        return max(1, int(size) * int(n_iter))
    except (TypeError, ValueError):
        return 1


class RunJournal:
    """One run's journal. Give `units_for` to run_job as its `plan`, and the journal itself as
    a sink; `finish(all_read)` once run_job returns. Thread-safe: sinks are called from
    every server's thread."""

    def __init__(self, conn: sqlite3.Connection, path: Path, run_id: int, job: Job) -> None:
        self.conn = conn
        self.path = path
        self.run_id = run_id
        self.job = job
        self._lock = threading.Lock()
        self._prompt_no = 0
        self._random = "seed" not in job.sets  # a seed given with --set is sent as given
        row = conn.execute(
            "SELECT max(first_index + images) FROM units WHERE run_id = ?", (run_id,)
        ).fetchone()
        self._next_index = int(row[0] or 1)

    # --- opening -------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        conn: sqlite3.Connection,
        path: Path,
        job: Job,
        source: PromptSource,
        *,
        server: str = "",
        command: Sequence[str] = (),
    ) -> RunJournal:
        """A new run of `job`."""
        record = job_record(job)
        text, stamp = utc_now()
        try:
            with conn:
                cursor = conn.execute(
                    "INSERT INTO runs (created, updated, updated_ts, mode, job, job_key, "
                    "output_dir, source, server, command) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        text,
                        text,
                        stamp,
                        job.mode,
                        json.dumps(record, ensure_ascii=False),
                        job_key(record, source),
                        record["output_dir"],
                        json.dumps(source.as_json()),
                        server,
                        json.dumps(list(command), ensure_ascii=False),
                    ),
                )
        except sqlite3.Error as exc:
            raise unavailable(path, exc, "write") from exc
        assert cursor.lastrowid is not None
        return cls(conn, path, cursor.lastrowid, job)

    @property
    def all_read(self) -> bool:
        row = self.conn.execute("SELECT all_read FROM runs WHERE id = ?", (self.run_id,)).fetchone()
        return bool(row[0])

    def counts(self) -> tuple[int, int]:
        """(units done, units planned)."""
        row = self.conn.execute(
            "SELECT count(*), sum(state = 'done') FROM units WHERE run_id = ?", (self.run_id,)
        ).fetchone()
        return int(row[1] or 0), int(row[0])

    def read_so_far(self) -> int:
        """How many prompts the run has read (and planned)."""
        row = self.conn.execute(
            "SELECT max(number) FROM prompts WHERE run_id = ?", (self.run_id,)
        ).fetchone()
        return int(row[0] or 0)

    def prompts(self, more: Iterator[str] | None = None) -> Iterator[str]:
        """The prompts the run read, in order, a page at a time (memory stays flat); then,
        from `more` (the run's source read again from its start), those it had not read yet:
        the ones it had read must come first there, unchanged."""
        last = self.read_so_far()
        number = 0
        while number < last:
            with self._lock:
                page = self.conn.execute(
                    "SELECT number, text FROM prompts WHERE run_id = ? AND number > ? "
                    "AND number <= ? ORDER BY number LIMIT 500",
                    (self.run_id, number, last),
                ).fetchall()
            if not page:
                break
            for row in page:
                number = int(row[0])
                yield str(row[1])
        if more is None:
            return
        for n, prompt in enumerate(more, start=1):
            if n > last:
                yield prompt
                continue
            with self._lock:
                row = self.conn.execute(
                    "SELECT text FROM prompts WHERE run_id = ? AND number = ?", (self.run_id, n)
                ).fetchone()
            if row is not None and str(row[0]) != prompt:
                raise JournalMismatch(
                    f"prompt {n} is not the one run {self.run_id} read: "
                    f"{_short(prompt)} instead of {_short(str(row[0]))}",
                    hint="give the prompts the run started with",
                )

    # --- planning ------------------------------------------------------------------------

    def units_for(self, job: Job, prompt: str) -> list[Unit]:
        """The prompt's units still to do, seeds and {index} as planned: planned now (and
        recorded) the first time the prompt is read, else as the journal has them."""
        with self._lock:
            self._prompt_no += 1
            number = self._prompt_no
            planned = units(job, prompt)
            try:
                row = self.conn.execute(
                    "SELECT text FROM prompts WHERE run_id = ? AND number = ?",
                    (self.run_id, number),
                ).fetchone()
                if row is None:
                    return self._plan(number, prompt, planned)
                return self._known(number, prompt, str(row[0]), planned)
            except sqlite3.Error as exc:
                raise unavailable(self.path, exc, "write") from exc

    def _plan(self, number: int, prompt: str, planned: list[Unit]) -> list[Unit]:
        fixed: list[Unit] = []
        sizes = [images_per_unit(self.job, u) for u in planned]
        draws = self._random_bases(planned, sizes)
        for unit, size in zip(planned, sizes, strict=True):
            seed = unit.seed
            if unit.prompt in draws and not (isinstance(seed, int) and seed >= 0):
                # drawn now, once per prompt; its batches go on from it as --count does
                seed = draws[unit.prompt] + (unit.batch - 1) * size
            fixed.append(replace(unit, seed=seed, index=self._next_index))
            self._next_index += size
        text, stamp = utc_now()
        with self.conn:
            self.conn.execute(
                "INSERT INTO prompts (run_id, number, text) VALUES (?, ?, ?)",
                (self.run_id, number, prompt),
            )
            self.conn.executemany(
                "INSERT INTO units (run_id, first_index, prompt, text, negative, batch, init, "
                "seed, images) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        self.run_id,
                        u.index,
                        number,
                        u.prompt if u.prompt != prompt else None,
                        u.negative_prompt,
                        u.batch,
                        _path_text(u.init),
                        u.seed,
                        size,
                    )
                    for u, size in zip(fixed, sizes, strict=True)
                ],
            )
            self._touch(text, stamp)
        return fixed

    def _random_bases(self, planned: Sequence[Unit], sizes: Sequence[int]) -> dict[str, int]:
        """A random seed for each prompt (a dynamic prompt's drawn ones each their own) whose
        units would get a random one from the server: fixed now, so a resume makes the same
        images. The cells of an X/Y/Z plot share their prompt's, as in the web UI's plot."""
        if not self._random:
            return {}
        spans: dict[str, int] = {}
        for unit, size in zip(planned, sizes, strict=True):
            if not (isinstance(unit.seed, int) and unit.seed >= 0):
                spans[unit.prompt] = max(spans.get(unit.prompt, 0), unit.batch * size)
        return {text: random.randrange(_MAX_SEED - span) for text, span in spans.items()}

    def _known(self, number: int, prompt: str, recorded: str, planned: list[Unit]) -> list[Unit]:
        if recorded != prompt:
            raise JournalMismatch(
                f"prompt {number} is not the one run {self.run_id} read: "
                f"{_short(prompt)} instead of {_short(recorded)}",
                hint=f"give the same prompts, or `sdcli resume {self.run_id}` to finish the run "
                "with the prompts it read",
            )
        rows = self.conn.execute(
            "SELECT first_index, text, negative, batch, init, seed, state FROM units "
            "WHERE run_id = ? AND prompt = ? ORDER BY first_index",
            (self.run_id, number),
        ).fetchall()
        same = len(rows) == len(planned) and all(
            row["batch"] == u.batch and row["init"] == _path_text(u.init)
            for row, u in zip(rows, planned, strict=False)
        )
        if not same:
            raise JournalMismatch(f"prompt {number} of run {self.run_id} was planned otherwise")
        # A random dynamic prompt draws anew each time: the prompts sent are the ones planned.
        return [
            replace(
                u,
                prompt=row["text"] or prompt,
                negative_prompt=row["negative"],
                seed=row["seed"],
                index=row["first_index"],
            )
            for row, u in zip(rows, planned, strict=True)
            if row["state"] != "done"
        ]

    # --- the sink ------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if not isinstance(event, (ImageSaved, UnitFinished, UnitFailed)):
            return
        if event.unit.index is None:
            return  # a unit this journal did not plan
        with self._lock:
            try:
                self._record(event)
            except sqlite3.Error as exc:
                raise unavailable(self.path, exc, "write") from exc

    def _record(self, event: ImageSaved | UnitFinished | UnitFailed) -> None:
        key = event.unit.index
        if isinstance(event, ImageSaved):
            image = event.image
            self.conn.execute(
                "INSERT OR REPLACE INTO files (run_id, unit, path, seed, interrupted) "
                "VALUES (?, ?, ?, ?, ?)",
                (self.run_id, key, str(image.path.resolve()), image.seed, int(image.interrupted)),
            )
            if not image.interrupted:
                return  # committed with the unit's outcome, just after
        elif isinstance(event, UnitFinished):
            self.conn.execute(
                "UPDATE units SET state = 'done', error = NULL "
                "WHERE run_id = ? AND first_index = ?",
                (self.run_id, key),
            )
        else:
            self.conn.execute(
                "UPDATE units SET state = 'failed', error = ? WHERE run_id = ? AND first_index = ?",
                (str(event.error), self.run_id, key),
            )
        self._touch(*utc_now())
        self.conn.commit()

    def _touch(self, text: str, stamp: float) -> None:
        self.conn.execute(
            "UPDATE runs SET updated = ?, updated_ts = ? WHERE id = ?", (text, stamp, self.run_id)
        )

    # --- the end -------------------------------------------------------------------------

    def finish(self, all_read: bool) -> bool:
        """After run_job: mark the prompts all read (when they were) and the run done when
        every unit is; a run that planned nothing is dropped. True when nothing is left."""
        with self._lock:
            try:
                text, stamp = utc_now()
                with self.conn:
                    if all_read:
                        self.conn.execute(
                            "UPDATE runs SET all_read = 1 WHERE id = ?", (self.run_id,)
                        )
                    self._touch(text, stamp)
                done, total = self.counts()
                if total == 0:  # it stopped before its first prompt: nothing to resume
                    with self.conn:
                        self.conn.execute("DELETE FROM runs WHERE id = ?", (self.run_id,))
                    return True
                if self.all_read and done == total:
                    with self.conn:
                        self.conn.execute(
                            "UPDATE runs SET finished = ? WHERE id = ?", (text, self.run_id)
                        )
                    return True
            except sqlite3.Error as exc:
                raise unavailable(self.path, exc, "write") from exc
        return False

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # --- resuming ------------------------------------------------------------------------

    def reconcile(self, read: Callable[[Path], tuple[int | None, str] | None]) -> Resumed:
        """Before a resumed run goes on: settle every unit not done (see the module's doc).

        `read(path)` gives an image file's (seed, prompt) from its parameters, or None.
        """
        with self._lock:
            try:
                return self._reconcile(read)
            except sqlite3.Error as exc:
                raise unavailable(self.path, exc, "write") from exc

    def _reconcile(self, read: Callable[[Path], tuple[int | None, str] | None]) -> Resumed:
        run = self.conn.execute(
            "SELECT updated_ts, output_dir FROM runs WHERE id = ?", (self.run_id,)
        ).fetchone()
        open_units = {
            int(row["first_index"]): row
            for row in self.conn.execute(
                "SELECT u.first_index, u.seed, u.images, coalesce(u.text, p.text) AS text "
                "FROM units u "
                "JOIN prompts p ON p.run_id = u.run_id AND p.number = u.prompt "
                "WHERE u.run_id = ? AND u.state != 'done'",
                (self.run_id,),
            )
        }
        files: dict[int, list[tuple[Path, bool, bool]]] = {}  # unit -> (path, interrupted, new)
        if open_units:
            for row in self.conn.execute(
                "SELECT f.unit, f.path, f.interrupted FROM files f JOIN units u "
                "ON u.run_id = f.run_id AND u.first_index = f.unit "
                "WHERE f.run_id = ? AND u.state != 'done'",
                (self.run_id,),
            ):
                files.setdefault(int(row[0]), []).append((Path(row[1]), bool(row[2]), False))
            for path, unit in self._unrecorded(Path(run[1]), float(run[0]), open_units, read):
                files.setdefault(unit, []).append((path, False, True))
        temporary = _remove_dead_temporaries(Path(run[1]))
        recovered = 0
        removed: list[Path] = []
        with self.conn:
            for key, found in files.items():
                existing = [(p, i, new) for p, i, new in found if p.is_file()]
                row = open_units[key]
                whole = len(existing) >= int(row["images"]) and not any(i for _, i, _ in existing)
                if whole:
                    recovered += 1
                    self.conn.executemany(
                        "INSERT OR IGNORE INTO files (run_id, unit, path, seed) "
                        "VALUES (?, ?, ?, ?)",
                        [(self.run_id, key, str(p), None) for p, _, new in existing if new],
                    )
                    self.conn.execute(
                        "UPDATE units SET state = 'done', error = NULL "
                        "WHERE run_id = ? AND first_index = ?",
                        (self.run_id, key),
                    )
                    continue
                for path, _, _ in existing:
                    path.unlink(missing_ok=True)
                    removed.append(path)
                self.conn.execute(
                    "DELETE FROM files WHERE run_id = ? AND unit = ?", (self.run_id, key)
                )
            self._touch(*utc_now())
        done, total = self.counts()
        return Resumed(done, total, recovered, removed, temporary)

    def _unrecorded(
        self,
        folder: Path,
        since: float,
        open_units: Mapping[int, sqlite3.Row],
        read: Callable[[Path], tuple[int | None, str] | None],
    ) -> Iterator[tuple[Path, int]]:
        """Image files newer than the last commit, not recorded, that a unit not done made."""
        by_seed: dict[int, list[int]] = {}
        for key, row in open_units.items():
            if row["seed"] is not None and row["seed"] >= 0:
                for n in range(int(row["images"])):
                    by_seed.setdefault(int(row["seed"]) + n, []).append(key)
        if not by_seed:
            return
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            if not entry.name.lower().endswith(_IMAGE_SUFFIXES):
                continue
            try:
                if not entry.is_file() or entry.stat().st_mtime < since - MTIME_SLACK:
                    continue
            except OSError:
                continue
            path = Path(entry.path).resolve()
            known = self.conn.execute(
                "SELECT 1 FROM files WHERE run_id = ? AND path = ?", (self.run_id, str(path))
            ).fetchone()
            if known is not None:
                continue
            found = read(path)
            if found is None:
                continue
            seed, text = found
            for key in by_seed.get(seed, []) if seed is not None else []:
                prompt = str(open_units[key]["text"])
                if text == prompt or prompt in text:
                    yield path, key
                    break


def _remove_dead_temporaries(folder: Path) -> int:
    """Remove the temporary files (sdcli.output's `.sdcli-PID-….tmp`) that an sdcli process
    killed mid-write left in `folder`; a live process's are left alone."""
    import re

    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        match = re.fullmatch(r"\.sdcli-(\d+)-[0-9a-f]{12}\.tmp", entry.name)
        if match is None or _alive(int(match.group(1))):
            continue
        try:
            os.unlink(entry.path)
            removed += 1
        except OSError:
            continue
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid() or sys.platform == "win32":  # Windows' os.kill would end it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, ValueError, OverflowError):
        return True  # someone else's, or cannot tell: leave it
    return True


def _path_text(path: Path | None) -> str | None:
    return str(path.resolve()) if path is not None else None


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:59] + "…")


def read_seed_and_prompt(path: Path) -> tuple[int | None, str] | None:
    """An image's seed and prompt from its stored parameters (None when it has none)."""
    from sdcli.infotext import parse_infotext
    from sdcli.pngmeta import read_parameters_from_file

    try:
        text = read_parameters_from_file(path)
    except UsageError:
        return None
    if not text:
        return None
    info = parse_infotext(text)
    return info.seed, info.prompt


__all__ = [
    "JournalMismatch",
    "JournalUnavailable",
    "Resumed",
    "RunJournal",
    "images_per_unit",
    "read_seed_and_prompt",
]

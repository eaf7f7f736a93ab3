"""Opening the run journal and reading it: the schema, the runs and their counts.

SQLite in WAL mode with a busy timeout, like the history: one commit per unit outcome is cheap
(no fsync per commit), a reader never blocks a run, and `kill -9` loses at most the unit in
flight. A file that is not a database, or that another process keeps locked, is one clear error.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sdcli.datatypes import frozen
from sdcli.errors import UsageError

BUSY_TIMEOUT = 5.0  # seconds a write waits for another process's transaction
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,              -- UTC, ISO 8601
    updated TEXT NOT NULL,              -- the last commit, UTC
    updated_ts REAL NOT NULL,           -- the same, in seconds: files newer are checked on resume
    mode TEXT NOT NULL,
    job TEXT NOT NULL,                  -- the Job as JSON (sdcli.journal.record)
    job_key TEXT NOT NULL,              -- what `--resume` matches a command line with
    output_dir TEXT NOT NULL,
    source TEXT NOT NULL,               -- where the prompts came from (JSON)
    server TEXT NOT NULL DEFAULT '',    -- the URL, never credentials
    command TEXT,                       -- the command line, credentials removed (JSON)
    all_read INTEGER NOT NULL DEFAULT 0,  -- every prompt read and planned
    finished TEXT                       -- when its last unit was done
);
CREATE INDEX IF NOT EXISTS runs_key ON runs (job_key);
CREATE TABLE IF NOT EXISTS prompts (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,            -- 1-based, in the order read
    text TEXT NOT NULL,
    PRIMARY KEY (run_id, number)
);
CREATE TABLE IF NOT EXISTS units (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    first_index INTEGER NOT NULL,       -- {index} of its first image: the unit's key in the run
    prompt INTEGER NOT NULL,            -- prompts.number
    text TEXT,                          -- the prompt sent, when not the line read (dynamic)
    negative TEXT,                      -- a negative prompt drawn for this unit (dynamic)
    batch INTEGER NOT NULL,
    init TEXT,                          -- img2img: the init image
    seed INTEGER,                       -- as planned (a random one drawn at plan time)
    images INTEGER NOT NULL,            -- images the unit makes
    state TEXT NOT NULL DEFAULT 'pending',  -- pending, done, failed
    error TEXT,
    PRIMARY KEY (run_id, first_index)
);
CREATE INDEX IF NOT EXISTS units_prompt ON units (run_id, prompt);
CREATE TABLE IF NOT EXISTS files (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    unit INTEGER NOT NULL,              -- units.first_index
    path TEXT NOT NULL,
    seed INTEGER,
    interrupted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, path)
);
CREATE INDEX IF NOT EXISTS files_unit ON files (run_id, unit);
"""


class JournalUnavailable(UsageError):
    """The journal cannot be opened, read or written (exit 2: a local file)."""


def connect(path: Path, *, timeout: float = BUSY_TIMEOUT) -> sqlite3.Connection:
    """Open (creating it and its folder if needed) the journal at `path`, schema ready."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise unavailable(path, exc, "open") from exc
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")  # stays set in the file
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL: a commit survives kill -9
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise JournalUnavailable(
                f"the run journal {path} was written by a newer sdcli (schema {version})",
                hint="upgrade sdcli, or move the file away to start a new journal",
            )
        if version < SCHEMA_VERSION:
            conn.executescript(_SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
    except sqlite3.Error as exc:
        conn.close()
        raise unavailable(path, exc, "use") from exc
    except JournalUnavailable:
        conn.close()
        raise
    return conn


def open_existing(path: Path) -> sqlite3.Connection | None:
    """The journal for reading, or None when no run was ever journaled (no file is made)."""
    return connect(path) if path.exists() else None


def unavailable(path: Path, exc: BaseException, what: str) -> JournalUnavailable:
    """The one-line error for a journal that cannot be used, saying why in words."""
    reason = exc.strerror.lower() if isinstance(exc, OSError) and exc.strerror else str(exc)
    hint = None
    if "locked" in reason or "busy" in reason:
        reason = "another sdcli process keeps it locked"
        hint = "wait for it to finish, or stop it"
    elif "not a database" in reason or "malformed" in reason:
        reason = "it is not a run journal sdcli can read (damaged?)"
        hint = f"move it away (mv {path} {path}.bad) to start a new journal"
    return JournalUnavailable(f"cannot {what} the run journal {path}: {reason}", hint=hint)


def utc_now() -> tuple[str, float]:
    """Now as stored: UTC ISO 8601 text (to the millisecond) and seconds since the epoch."""
    now = datetime.now(timezone.utc)
    text = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return text, now.timestamp()


def local_time(stored: str, *, short: bool = False) -> str:
    """A stored UTC time as the local `2026-11-30 16:21:40`; `short`: to the minute, as
    `11-30 16:21` this year, else the date (`sdcli runs` at a terminal)."""
    when = datetime.fromisoformat(stored.replace("Z", "+00:00")).astimezone()
    if not short:
        return when.strftime("%Y-%m-%d %H:%M:%S")
    return when.strftime("%m-%d %H:%M" if when.year == datetime.now().year else "%Y-%m-%d")


# --- what `sdcli runs` shows ----------------------------------------------------------------


@frozen
class RunInfo:
    """One run and how far it got."""

    id: int
    created: str
    updated: str
    mode: str
    output_dir: str
    source: dict[str, Any]
    server: str
    all_read: bool
    finished: str | None
    total: int  # units planned so far (all of them once `all_read`)
    done: int
    failed: int
    images: int  # files saved and recorded

    @property
    def state(self) -> str:
        """`done`, or `unfinished` (stopped, crashed, or running now)."""
        return "done" if self.finished else "unfinished"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created": self.created,
            "updated": self.updated,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "failed": self.failed,
            "images": self.images,
            "all_prompts_read": self.all_read,
            "mode": self.mode,
            "output_dir": self.output_dir,
            "prompts": self.source,
            "server": self.server,
        }


_INFO = """
    SELECT r.*,
        (SELECT count(*) FROM units u WHERE u.run_id = r.id) AS total,
        (SELECT count(*) FROM units u WHERE u.run_id = r.id AND u.state = 'done') AS done,
        (SELECT count(*) FROM units u WHERE u.run_id = r.id AND u.state = 'failed') AS failed,
        (SELECT count(*) FROM files f WHERE f.run_id = r.id) AS images
    FROM runs r"""


def _info(row: sqlite3.Row) -> RunInfo:
    return RunInfo(
        id=row["id"],
        created=row["created"],
        updated=row["updated"],
        mode=row["mode"],
        output_dir=row["output_dir"],
        source=json.loads(row["source"]),
        server=row["server"],
        all_read=bool(row["all_read"]),
        finished=row["finished"],
        total=row["total"],
        done=row["done"],
        failed=row["failed"],
        images=row["images"],
    )


def runs(conn: sqlite3.Connection, *, limit: int | None = None) -> Iterator[RunInfo]:
    """The runs, newest first."""
    sql = _INFO + " ORDER BY r.id DESC" + (" LIMIT ?" if limit else "")
    for row in conn.execute(sql, (limit,) if limit else ()):
        yield _info(row)


def run_info(conn: sqlite3.Connection, run_id: int) -> RunInfo | None:
    row = conn.execute(_INFO + " WHERE r.id = ?", (run_id,)).fetchone()
    return None if row is None else _info(row)


def last_unfinished(conn: sqlite3.Connection) -> int | None:
    """The newest run not done, or None."""
    row = conn.execute(
        "SELECT id FROM runs WHERE finished IS NULL ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return None if row is None else int(row[0])


def latest_with_key(conn: sqlite3.Connection, key: str) -> tuple[int, bool] | None:
    """The newest run of exactly this job, and whether it is done; None when there is none."""
    row = conn.execute(
        "SELECT id, finished FROM runs WHERE job_key = ? ORDER BY id DESC LIMIT 1", (key,)
    ).fetchone()
    return None if row is None else (int(row[0]), row[1] is not None)


def unfinished_in(conn: sqlite3.Connection, output_dir: str) -> list[sqlite3.Row]:
    """Unfinished runs saving into `output_dir`, newest first (with their job)."""
    return list(
        conn.execute(
            "SELECT id, job FROM runs WHERE output_dir = ? AND finished IS NULL ORDER BY id DESC",
            (output_dir,),
        )
    )

"""Opening the history database and reading it: search, one generation, the row of an image.

SQLite in WAL mode with a busy timeout, so a reader never blocks a run that records, and two
sdcli processes recording at once wait for each other briefly instead of failing.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sdcli.datatypes import frozen
from sdcli.errors import UsageError
from sdcli.history.migrations import MIGRATIONS, applied, migrate

# How long a write waits for another process's transaction (each takes milliseconds).
BUSY_TIMEOUT = 5.0
OUTCOMES = ("running", "ok", "failed", "interrupted")


class HistoryUnavailable(UsageError):
    """The database cannot be opened, read or written (exit 2: a local file)."""


def connect(path: Path, *, timeout: float = BUSY_TIMEOUT) -> sqlite3.Connection:
    """Open (creating it and its folder if needed) and migrate the database at `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(path), timeout=timeout, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        raise HistoryUnavailable(f"cannot open the history {path}: {_reason(exc)}") from exc
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")  # stays set in the file
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable enough, no fsync per row
        if not {fn.__name__ for fn in MIGRATIONS} <= applied(conn):
            migrate(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise HistoryUnavailable(f"cannot use the history {path}: {_reason(exc)}") from exc
    return conn


def open_existing(path: Path) -> sqlite3.Connection | None:
    """The database for reading, or None when nothing was ever recorded (no file is made)."""
    if not path.exists():
        return None
    return connect(path)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


# --- search ----------------------------------------------------------------------------------


@frozen
class Filters:
    """What `sdcli history` narrows the list with; None or empty: no condition."""

    query: str = ""
    model: str | None = None
    preset: str | None = None
    since: datetime | None = None  # aware
    failed: bool = False
    limit: int | None = 20


_SUMMARY = """
    SELECT g.*,
        (SELECT count(*) FROM images i WHERE i.generation_id = g.id) AS image_count,
        (SELECT i.seed FROM images i WHERE i.generation_id = g.id ORDER BY i.id LIMIT 1)
            AS image_seed
    FROM generations g"""


def has_fts(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'generations_fts'"
    ).fetchone()
    return row is not None


def search(conn: sqlite3.Connection, filters: Filters) -> list[sqlite3.Row]:
    """Generations matching `filters`, newest first."""
    where: list[str] = []
    args: list[Any] = []
    words = query_words(filters.query)
    if words and has_fts(conn):
        where.append("g.id IN (SELECT rowid FROM generations_fts WHERE generations_fts MATCH ?)")
        args.append(" ".join(_fts_phrase(w) for w in words))
    else:
        for word in words:
            where.append("(g.prompt LIKE ? ESCAPE '\\' OR g.negative_prompt LIKE ? ESCAPE '\\')")
            args += [f"%{_like(word)}%"] * 2
    if filters.model:
        where.append("(g.model LIKE ? ESCAPE '\\' OR g.model_hash LIKE ? ESCAPE '\\')")
        args += [f"%{_like(filters.model)}%", f"{_like(filters.model)}%"]
    if filters.preset:
        where.append("g.presets LIKE ? ESCAPE '\\'")
        args.append(f"%{_like(json.dumps(filters.preset))}%")
    if filters.since is not None:
        where.append("g.started >= ?")
        args.append(utc_text(filters.since))
    if filters.failed:
        where.append("g.outcome IN ('failed', 'interrupted')")
    sql = _SUMMARY + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY g.id DESC"
    if filters.limit:
        sql += " LIMIT ?"
        args.append(filters.limit)
    return list(conn.execute(sql, args))


def query_words(query: str) -> list[str]:
    """The search's words: each must appear (as a word prefix) in the prompt or negative."""
    return [w for w in re.split(r"[\s,()\[\]{}:|]+", query) if w]


def _fts_phrase(word: str) -> str:
    """A word as an FTS5 prefix phrase: user text never reaches FTS5's own query syntax."""
    return '"' + word.replace('"', '""') + '"*'


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# Patterns are kept as text: `re` compiles (and caches) each at first use, not at start-up.
_RELATIVE = r"(?i)^(\d+)\s*(m|min|h|d|w)$"
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """`--since`: `30m`, `12h`, `3d`, `2w` ago, or a local date or time (`2026-11-30`,
    `2026-11-30 14:00`)."""
    now = now or datetime.now(timezone.utc)
    value = text.strip()
    match = re.match(_RELATIVE, value)
    if match:
        unit = _UNITS[match.group(2).lower()]
        return now - timedelta(**{unit: int(match.group(1))})
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"--since {text!r} is neither a time ago nor a date",
            hint="e.g. 30m, 12h, 3d, 2w, 2026-11-30 or '2026-11-30 14:00'",
        ) from None
    return when if when.tzinfo else when.astimezone()  # a naive time is local time


def utc_text(when: datetime) -> str:
    """The form `started` is stored in: UTC, ISO 8601, to the millisecond; sorts as text."""
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def local_time(stored: str) -> str:
    """A stored UTC time as the local `2026-11-30 16:21:40`."""
    when = datetime.fromisoformat(stored.replace("Z", "+00:00"))
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S")


# --- one generation --------------------------------------------------------------------------


def generation(conn: sqlite3.Connection, gen_id: int) -> sqlite3.Row | None:
    return conn.execute(_SUMMARY + " WHERE g.id = ?", (gen_id,)).fetchone()  # type: ignore[no-any-return]


def images(conn: sqlite3.Connection, gen_ids: Sequence[int]) -> dict[int, list[sqlite3.Row]]:
    """The images of each of `gen_ids`, in the order they were saved."""
    found: dict[int, list[sqlite3.Row]] = {gen_id: [] for gen_id in gen_ids}
    if not gen_ids:
        return found
    marks = ", ".join("?" * len(gen_ids))
    rows = conn.execute(
        f"SELECT * FROM images WHERE generation_id IN ({marks}) ORDER BY id", list(gen_ids)
    )
    for row in rows:
        found[row["generation_id"]].append(row)
    return found


def by_sha256(conn: sqlite3.Connection, digest: str) -> int | None:
    """The generation that saved an image with this content: the first, if several did (a
    rerun of a fixed seed makes the same bytes again; the original is what it came from)."""
    row = conn.execute(
        "SELECT generation_id FROM images WHERE sha256 = ? ORDER BY id LIMIT 1", (digest,)
    ).fetchone()
    return None if row is None else int(row[0])


def clear(conn: sqlite3.Connection) -> int:
    """Delete every row; the file is compacted so deleted prompts do not linger in it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        count = int(conn.execute("SELECT count(*) FROM generations").fetchone()[0])
        conn.execute("DELETE FROM images")
        conn.execute("DELETE FROM generations")
        if has_fts(conn):
            conn.execute("INSERT INTO generations_fts (generations_fts) VALUES ('rebuild')")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return count


def as_json(row: sqlite3.Row, image_rows: Sequence[sqlite3.Row]) -> dict[str, Any]:
    """One generation as a JSON object: typed values, the request and lists decoded."""
    doc: dict[str, Any] = {
        "id": row["id"],
        "started": row["started"],
        "seconds": row["seconds"],
        "outcome": row["outcome"],
        "error": row["error"],
        "mode": row["mode"],
        "prompt": row["prompt"],
        "template": row["template"],
        "negative_prompt": row["negative_prompt"],
        "seed": row["seed"],
        "model": row["model"],
        "model_hash": row["model_hash"],
        "server": row["server"],
        "flavour": row["flavour"],
        "version": row["version"],
        "presets": json.loads(row["presets"] or "[]"),
        "batch": row["batch"],
        "batches": row["batches"],
        "rerun_of": row["rerun_of"],
        "command": json.loads(row["command"]) if row["command"] else None,
        "request": json.loads(row["request"]),
        "images": [
            {
                "path": image["path"],
                "seed": image["seed"],
                "sha256": image["sha256"],
                "interrupted": bool(image["interrupted"]),
                "exists": Path(image["path"]).is_file(),
            }
            for image in image_rows
        ],
    }
    return doc

"""The history's schema, as numbered migrations applied in order, each exactly once.

A migration is a function registered with `@migration`; its name (m001_…) is stored in
`_migrations` once it ran, so a database made by any earlier release is brought up to date
without losing a row. Never edit a released migration: add the next one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next migration (they run in the order they are defined)."""
    MIGRATIONS.append(fn)
    return fn


def applied(conn: sqlite3.Connection) -> set[str]:
    """The names of the migrations this database has had (none for a new, empty file)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    return {row[0] for row in conn.execute("SELECT name FROM _migrations")}


def migrate(conn: sqlite3.Connection, upto: int | None = None) -> list[str]:
    """Apply the missing migrations (the first `upto` only, for tests), in one transaction.

    `BEGIN IMMEDIATE` takes the write lock before looking: two processes opening a new file at
    once do not both create its tables. Returns the names applied now.
    """
    wanted = MIGRATIONS if upto is None else MIGRATIONS[:upto]
    conn.execute("BEGIN IMMEDIATE")
    try:
        done = applied(conn)
        now: list[str] = []
        for fn in wanted:
            if fn.__name__ in done:
                continue
            fn(conn)
            conn.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (fn.__name__, datetime.now(timezone.utc).isoformat(timespec="seconds")),
            )
            now.append(fn.__name__)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return now


def fts5_available(conn: sqlite3.Connection) -> bool:
    """Whether this Python's SQLite has FTS5 (most builds do; some minimal ones do not)."""
    try:
        conn.execute("CREATE VIRTUAL TABLE temp._fts5_probe USING fts5(x)")
    except sqlite3.OperationalError:
        return False
    conn.execute("DROP TABLE temp._fts5_probe")
    return True


@migration
def m001_initial(conn: sqlite3.Connection) -> None:
    """One row per request sent (a unit: one prompt, one batch) and one per image saved."""
    conn.execute(
        """CREATE TABLE generations (
            id INTEGER PRIMARY KEY,
            started TEXT NOT NULL,            -- UTC, ISO 8601
            seconds REAL,                     -- from sending to the last image saved or the error
            outcome TEXT NOT NULL,            -- running, ok, failed, interrupted
            error TEXT,                       -- the error line, for failed and interrupted
            mode TEXT NOT NULL,               -- txt2img, img2img, extras
            server TEXT NOT NULL,             -- base URL, never with credentials
            flavour TEXT,                     -- a1111, forge, sdnext (from the images' infotext)
            version TEXT,
            model TEXT,
            model_hash TEXT,
            prompt TEXT NOT NULL,
            negative_prompt TEXT NOT NULL DEFAULT '',
            seed INTEGER,                     -- the request's seed (-1: the server drew one)
            batch INTEGER NOT NULL DEFAULT 1,
            batches INTEGER NOT NULL DEFAULT 1,
            request TEXT NOT NULL,            -- the JSON body as sent, images left out
            presets TEXT NOT NULL DEFAULT '[]',   -- JSON list of preset names
            command TEXT,                     -- JSON list: the command line, credentials removed
            rerun_of INTEGER REFERENCES generations(id) ON DELETE SET NULL
        )"""
    )
    conn.execute("CREATE INDEX generations_started ON generations(started)")
    conn.execute(
        """CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            generation_id INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
            path TEXT NOT NULL,               -- absolute
            sha256 TEXT,
            seed INTEGER,
            infotext TEXT,
            interrupted INTEGER NOT NULL DEFAULT 0
        )"""
    )
    conn.execute("CREATE INDEX images_generation ON images(generation_id)")
    conn.execute("CREATE INDEX images_sha256 ON images(sha256)")


@migration
def m002_prompt_search(conn: sqlite3.Connection) -> None:
    """Full-text search of prompts (FTS5, kept in step by triggers), filled from the rows there.

    Without FTS5 nothing is created and searches fall back to LIKE (slower, same answers for
    whole words).
    """
    if not fts5_available(conn):
        return
    conn.execute(
        "CREATE VIRTUAL TABLE generations_fts USING fts5("
        "prompt, negative_prompt, content='generations', content_rowid='id')"
    )
    conn.execute(
        """CREATE TRIGGER generations_ai AFTER INSERT ON generations BEGIN
            INSERT INTO generations_fts (rowid, prompt, negative_prompt)
            VALUES (new.id, new.prompt, new.negative_prompt);
        END"""
    )
    conn.execute(
        """CREATE TRIGGER generations_ad AFTER DELETE ON generations BEGIN
            INSERT INTO generations_fts (generations_fts, rowid, prompt, negative_prompt)
            VALUES ('delete', old.id, old.prompt, old.negative_prompt);
        END"""
    )
    conn.execute(
        """CREATE TRIGGER generations_au AFTER UPDATE OF prompt, negative_prompt ON generations
        BEGIN
            INSERT INTO generations_fts (generations_fts, rowid, prompt, negative_prompt)
            VALUES ('delete', old.id, old.prompt, old.negative_prompt);
            INSERT INTO generations_fts (rowid, prompt, negative_prompt)
            VALUES (new.id, new.prompt, new.negative_prompt);
        END"""
    )
    conn.execute("INSERT INTO generations_fts (generations_fts) VALUES ('rebuild')")


@migration
def m003_prompt_template(conn: sqlite3.Connection) -> None:
    """The dynamic prompt a generation's prompt was drawn from (NULL for a prompt as typed)."""
    conn.execute("ALTER TABLE generations ADD COLUMN template TEXT")

"""The history database on its own: schema migrations, search (FTS5 and its LIKE fallback),
filters, clearing, and the commands that read it (no server needed)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from sdcli.errors import UsageError
from sdcli.history import migrations, store

from cli_helpers import run_sdcli
from terminal_helpers import Terminal


def add_generation(conn: sqlite3.Connection, **values: Any) -> int:
    """One row as the recorder writes it; `values` override the defaults."""
    row: dict[str, Any] = {
        "started": "2026-11-30T16:00:00.000Z",
        "outcome": "ok",
        "mode": "txt2img",
        "server": "http://127.0.0.1:7860",
        "prompt": "a cat",
        "negative_prompt": "",
        "seed": 1,
        "request": json.dumps({"prompt": values.get("prompt", "a cat")}),
        "presets": "[]",
        **values,
    }
    names = ", ".join(row)
    marks = ", ".join("?" * len(row))
    cursor = conn.execute(f"INSERT INTO generations ({names}) VALUES ({marks})", list(row.values()))
    return int(cursor.lastrowid or 0)


def history_file(home: Path) -> Path:
    return home / "history.db"


# --- migrations --------------------------------------------------------------------------------


def test_an_empty_file_gets_the_whole_schema(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    path.touch()  # a zero-byte file is a valid, empty SQLite database
    conn = store.connect(path)
    names = {fn.__name__ for fn in migrations.MIGRATIONS}
    assert migrations.applied(conn) == names
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"generations", "images", "generations_fts", "_migrations"} <= tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_database_of_the_first_schema_keeps_its_rows_and_becomes_searchable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.db"
    first = sqlite3.connect(path, isolation_level=None)
    assert migrations.migrate(first, upto=1) == ["m001_initial"]
    add_generation(first, prompt="an old lighthouse")
    first.execute(
        "INSERT INTO images (generation_id, path, sha256, seed) VALUES (1, '/x.png', 'ab', 7)"
    )
    first.close()

    conn = store.connect(path)  # what a later release does on opening it
    assert [r["prompt"] for r in store.search(conn, store.Filters(query="lighthouse"))] == [
        "an old lighthouse"
    ]
    assert store.by_sha256(conn, "ab") == 1
    # and a second opening applies nothing again
    assert migrations.migrate(conn) == []


def test_migrations_are_named_in_order() -> None:
    names = [fn.__name__ for fn in migrations.MIGRATIONS]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert all(n.startswith("m") and n[1:4].isdigit() for n in names)


# --- search ------------------------------------------------------------------------------------


@pytest.fixture
def filled(tmp_path: Path) -> sqlite3.Connection:
    conn = store.connect(tmp_path / "h.db")
    add_generation(conn, prompt="a red lighthouse at dusk", negative_prompt="lowres")
    add_generation(conn, prompt="1boy, chibi, holding iPad", presets='["chibi"]', model="sd15")
    add_generation(
        conn,
        prompt="a cat",
        negative_prompt="lighthouse",
        outcome="failed",
        error="boom",
        model="sdxl_base",
        model_hash="31e35c80fc",
    )
    add_generation(conn, prompt="100% _literal_ cat", outcome="interrupted")
    return conn


def _ids(conn: sqlite3.Connection, **filters: Any) -> list[int]:
    return [row["id"] for row in store.search(conn, store.Filters(**filters))]


@pytest.mark.parametrize("fts", [True, False], ids=["fts5", "like"])
def test_search_finds_words_in_prompt_and_negative_prompt(
    filled: sqlite3.Connection, fts: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fts:
        monkeypatch.setattr(store, "has_fts", lambda conn: False)
    assert _ids(filled) == [4, 3, 2, 1]  # newest first
    assert _ids(filled, query="lighthouse") == [3, 1]
    assert _ids(filled, query="lighthouse dusk") == [1]  # every word
    assert _ids(filled, query="LightHouse") == [3, 1]  # any case
    assert _ids(filled, query="light") == [3, 1]  # start of a word
    assert _ids(filled, query="1boy, chibi") == [2]
    assert _ids(filled, query='"quoted" OR NOT') == []  # never FTS5 syntax, never an error
    assert _ids(filled, query="100%") == [4]
    assert _ids(filled, query="cat", limit=1) == [4]


def test_without_fts5_the_schema_still_builds_and_search_uses_like(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migrations, "fts5_available", lambda conn: False)
    conn = store.connect(tmp_path / "h.db")
    assert not store.has_fts(conn)
    add_generation(conn, prompt="a red lighthouse")
    add_generation(conn, prompt="a cat")
    assert _ids(conn, query="lighthouse") == [1]


def test_filters(filled: sqlite3.Connection) -> None:
    assert _ids(filled, model="SDXL") == [3]
    assert _ids(filled, model="31e35c") == [3]  # a hash's start
    assert _ids(filled, preset="chibi") == [2]
    assert _ids(filled, preset="chib") == []  # a preset name is whole
    assert _ids(filled, failed=True) == [4, 3]
    now = datetime(2026, 11, 30, 17, 0, tzinfo=timezone.utc)
    add_generation(filled, started="2026-11-30T16:59:00.000Z", prompt="late")
    assert _ids(filled, since=store.parse_since("30m", now=now)) == [5]
    assert _ids(filled, since=store.parse_since("2h", now=now)) == [5, 4, 3, 2, 1]


def test_since_accepts_ages_and_local_dates() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    assert store.parse_since("3d", now=now) == now - timedelta(days=3)
    assert store.parse_since("2w", now=now) == now - timedelta(weeks=2)
    local = store.parse_since("2026-11-30")
    assert local == datetime(2026, 11, 30).astimezone()
    with pytest.raises(UsageError, match="neither a time ago nor a date"):
        store.parse_since("yesterday-ish")


def test_clear_deletes_every_row_and_leaves_no_prompt_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    conn = store.connect(path)
    secret = "a very private prompt " + "x" * 200
    for _ in range(50):
        add_generation(conn, prompt=secret)
    assert store.clear(conn) == 50
    assert _ids(conn) == [] and _ids(conn, query="private") == []
    conn.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("h.db"))
    assert b"very private" not in data


# --- the commands that read it -----------------------------------------------------------------


def test_history_path_moves_with_sdcli_home_and_sdcli_history(
    isolated_sdcli_home: Path, tmp_path: Path
) -> None:
    r = run_sdcli("history", "path")
    assert r.returncode == 0 and r.stdout == f"{history_file(isolated_sdcli_home)}\n"
    other = tmp_path / "elsewhere.db"
    r = run_sdcli("history", "path", env={"SDCLI_HISTORY": str(other)})
    assert r.stdout == f"{other}\n"
    (isolated_sdcli_home / "config.toml").write_text(f'history_file = "{other}.2"\n')
    assert run_sdcli("history", "path").stdout == f"{other}.2\n"
    assert not other.exists()  # nothing is created just to say where it would be


def test_history_before_anything_was_recorded(isolated_sdcli_home: Path) -> None:
    r = run_sdcli("history")
    assert r.returncode == 0 and r.stdout == ""
    assert not history_file(isolated_sdcli_home).exists()


def test_history_in_a_pipe_and_as_json_lines(isolated_sdcli_home: Path) -> None:
    conn = store.connect(history_file(isolated_sdcli_home))
    add_generation(conn, prompt="a cat", seed=5, model="sd15")
    add_generation(conn, prompt="a red lighthouse", outcome="failed", error="boom")
    conn.execute(
        "INSERT INTO images (generation_id, path, sha256, seed) VALUES (1, '/gone.png', 'ab', 6)"
    )
    conn.close()
    r = run_sdcli("history")
    lines = [line.split("\t") for line in r.stdout.splitlines()]
    assert [(f[0], f[2], f[3], f[4], f[5], f[6]) for f in lines] == [
        ("2", "failed", "0", "1", "", "a red lighthouse"),
        ("1", "ok", "1", "6", "sd15", "a cat"),  # the image's seed
    ]
    r = run_sdcli("history", "lighthouse", "--json")
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(d["id"], d["outcome"], d["error"]) for d in docs] == [(2, "failed", "boom")]
    r = run_sdcli("history", "-n", "1", "--failed")
    assert [line.split("\t")[0] for line in r.stdout.splitlines()] == ["2"]


def test_history_show_marks_files_that_no_longer_exist(
    isolated_sdcli_home: Path, tmp_path: Path
) -> None:
    kept = tmp_path / "kept.png"
    kept.write_bytes(b"png")
    conn = store.connect(history_file(isolated_sdcli_home))
    add_generation(conn, prompt="a cat", command=json.dumps(["sdcli", "generate", "a cat"]))
    for path, seed in ((kept, 1), (tmp_path / "gone.png", 2)):
        conn.execute(
            "INSERT INTO images (generation_id, path, seed) VALUES (1, ?, ?)", (str(path), seed)
        )
    conn.close()
    r = run_sdcli("history", "show", "1")
    assert r.returncode == 0, r.stderr
    shown = {line[:16].strip(): line[16:] for line in r.stdout.splitlines()}
    assert shown["command"] == "sdcli generate 'a cat'"
    images = [line for line in r.stdout.splitlines() if line.startswith("image")]
    assert images == [
        f"image           {kept}  seed 1",
        f"image           {tmp_path / 'gone.png'}  seed 2  (file no longer exists)",
    ]
    doc = json.loads(run_sdcli("history", "show", "1", "--json").stdout)
    assert [i["exists"] for i in doc["images"]] == [True, False]
    r = run_sdcli("history", "show", "7")
    assert r.returncode == 2 and r.stderr.startswith("sdcli: error: no generation 7")


def test_clear_needs_yes_without_a_terminal(isolated_sdcli_home: Path) -> None:
    conn = store.connect(history_file(isolated_sdcli_home))
    add_generation(conn)
    conn.close()
    r = run_sdcli("history", "--clear", input="y\n")
    assert r.returncode == 2 and "give --yes" in r.stderr
    assert run_sdcli("history").stdout.count("\n") == 1  # still there
    r = run_sdcli("history", "--clear", "--yes")
    assert r.returncode == 0 and "deleted 1 generation(s)" in r.stderr
    assert run_sdcli("history").stdout == ""


def test_history_table_and_clear_question_on_a_terminal(isolated_sdcli_home: Path) -> None:
    conn = store.connect(history_file(isolated_sdcli_home))
    add_generation(conn, prompt="a red lighthouse at dusk, " + "very long words " * 10)
    add_generation(conn, prompt="a cat", outcome="interrupted", model="sd15")
    conn.close()
    term = Terminal("history", columns=100)
    term.wait_exit()
    screen = term.text()
    assert "ID" in screen and "OUTCOME" in screen and "PROMPT" in screen, term.dump()
    rows = [line for line in term.lines() if line.strip()[:1].isdigit()]
    assert rows[0].split()[0] == "2" and "interrupted" in rows[0] and "sd15" in rows[0]
    assert rows[1].split()[0] == "1" and "a red lighthouse at dusk" in rows[1]
    assert rows[1].rstrip().endswith("…")  # a long prompt is cut in the table only
    assert term.exit_code == 0

    term = Terminal("history", "--clear")
    term.wait_for("Delete all 2 generation(s)")
    term.type_line("n")
    term.wait_exit()
    assert "nothing deleted" in term.text() and term.exit_code == 0
    assert len(run_sdcli("history").stdout.splitlines()) == 2
    term = Terminal("history", "--clear")
    term.wait_for("Delete all 2 generation(s)")
    term.type_line("y")
    term.wait_exit()
    assert "deleted 2 generation(s)" in term.text() and term.exit_code == 0
    assert run_sdcli("history").stdout == ""


@pytest.mark.parametrize("columns", [60, 80])
def test_history_table_keeps_every_column_on_a_narrow_terminal(
    isolated_sdcli_home: Path, columns: int
) -> None:
    """Rich's own shrinking dropped the ID and PROMPT columns at 60 columns: the prompt is cut
    first, then the other columns wrap, never losing a character."""
    conn = store.connect(history_file(isolated_sdcli_home))
    add_generation(
        conn, prompt="a red lighthouse at dusk, " + "very long words " * 10, model="random-sd15"
    )
    conn.close()
    term = Terminal("history", columns=columns)
    term.wait_exit()
    header = " ".join(term.lines()[:2])
    for name in ("ID", "WHEN", "SEED", "MODEL", "PROMPT"):
        assert name in header, term.dump()
    [row] = [line for line in term.lines() if line.strip()[:1].isdigit()]
    assert row.split()[0] == "1" and row.rstrip().endswith("…") and "a red" in row, term.dump()
    if columns == 80:  # room for every other column whole, on the row's one line
        assert "2026-11-30 16:00:00" in row and "random-sd15" in row, term.dump()
    assert term.exit_code == 0

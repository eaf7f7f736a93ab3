"""Runs that resume (issue 17, item 2): a run of many units keeps a journal; after kill -9,
Ctrl-C or a crash between a write and its commit, `--resume` and `sdcli resume` do only what is
not done, and every unit ends saved exactly once, with its planned seeds and {index}."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from sdcli.pngmeta import read_parameters_from_file
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import run_sdcli, start_sdcli
from terminal_helpers import run_on_terminal

TINY = ("--steps", "2", "-W", "64", "-H", "64")
TXT2IMG = "/sdapi/v1/txt2img"
NAME = re.compile(r"^\d{8}-\d{6}-(\d{4})-(\d+)\.png$")  # the default {date}-{time}-{index}-{seed}


def _prompts(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("".join(f"prompt number {k}\n" for k in range(1, n + 1)), encoding="utf-8")
    return path


def _journal(home: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(home / "runs.db")
    conn.row_factory = sqlite3.Row
    return conn


def _planned(home: Path) -> dict[int, tuple[int, str, int]]:
    """{index of each planned image: (its seed, its prompt, its unit's batch)} from the journal."""
    with _journal(home) as conn:
        rows = conn.execute(
            "SELECT u.first_index, u.seed, u.images, u.batch, p.text FROM units u "
            "JOIN prompts p ON p.run_id = u.run_id AND p.number = u.prompt"
        ).fetchall()
    return {
        row["first_index"] + n: (row["seed"] + n, row["text"], row["batch"])
        for row in rows
        for n in range(row["images"])
    }


def _saved(out: Path) -> dict[int, Path]:
    """The images in `out` by the {index} in their names; a second file for an index fails."""
    found: dict[int, Path] = {}
    for path in sorted(out.iterdir()):
        match = NAME.match(path.name)
        assert match, f"unexpected file {path.name}"
        index = int(match.group(1))
        assert index not in found, f"two files for index {index}: {found[index]}, {path}"
        found[index] = path
    return found


def _assert_exactly_as_planned(home: Path, out: Path) -> None:
    """One file per planned image, with the planned seed (in its name and its parameters)
    and prompt, nothing else."""
    planned = _planned(home)
    saved = _saved(out)
    assert sorted(saved) == sorted(planned)
    for index, path in saved.items():
        seed, prompt, _ = planned[index]
        assert NAME.match(path.name).group(2) == str(seed)  # type: ignore[union-attr]
        text = read_parameters_from_file(path) or ""
        assert text.startswith(prompt + "\n"), text
        assert f"Seed: {seed}," in text
        assert "interrupted" not in text.lower()


def _kill_while_held(fake: FakeWebUI, args: list[str], *, after_jobs: int) -> int:
    """Start `sdcli ARGS`, let `after_jobs` requests through, hold the next at its first step and
    SIGKILL sdcli there (no handler runs, nothing is flushed); its return code."""
    fake.pause_at_step(1, after_jobs=after_jobs)
    proc = start_sdcli(*args, stdin=subprocess.DEVNULL)
    try:
        assert fake.wait_paused(60)
        proc.kill()
        proc.communicate(timeout=60)  # a safety net, not a timing assertion
    finally:
        if proc.poll() is None:
            proc.kill()
        fake.resume()
    return proc.returncode


def test_a_run_killed_with_sigkill_resumes_with_each_unit_saved_once(
    fake_webui: FakeWebUI, tmp_path: Path, isolated_sdcli_home: Path
) -> None:
    prompts = _prompts(tmp_path, 5)
    out = tmp_path / "out"
    args = ["--url", fake_webui.url, "generate", *TINY, "-c", "2", "--prompts-file", str(prompts),
            "-o", str(out)]  # fmt: skip
    # the 5th request of 10 is held at its 1st step
    assert _kill_while_held(fake_webui, args, after_jobs=4) == -signal.SIGKILL
    assert len(list(out.iterdir())) == 4
    seeds_before = {p.name for p in out.iterdir()}

    fake_webui.clear_requests()
    r = run_sdcli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert "resuming run 1: 4 of 6+ units done" in r.stderr  # 3 prompts read of 5
    assert len(fake_webui.requests_to(TXT2IMG)) == 6  # only what was not done
    assert seeds_before <= {p.name for p in out.iterdir()}  # the first four untouched
    _assert_exactly_as_planned(isolated_sdcli_home, out)
    # Random seeds were drawn at plan time, as the web UI's batch count would give them.
    planned = _planned(isolated_sdcli_home)
    for index in range(1, 11, 2):
        assert planned[index + 1][0] == planned[index][0] + 1
    assert len(r.stdout.splitlines()) == 6  # the paths of the images made now

    again = run_sdcli(*args, "--resume")
    assert again.returncode == 0
    assert "run 1 of this command is done: nothing to resume" in again.stderr
    assert len(list(out.iterdir())) == 10


def test_a_fixed_seed_keeps_its_seeds_and_names_across_a_resume(
    fake_webui: FakeWebUI, tmp_path: Path, isolated_sdcli_home: Path
) -> None:
    prompts = _prompts(tmp_path, 3)
    out = tmp_path / "out"
    args = ["--url", fake_webui.url, "generate", *TINY, "--seed", "100", "-b", "2", "-c", "2",
            "--prompts-file", str(prompts), "-o", str(out)]  # fmt: skip
    _kill_while_held(fake_webui, args, after_jobs=3)
    r = run_sdcli("resume")  # from the journal alone, the last unfinished run
    assert r.returncode == 0, r.stderr
    _assert_exactly_as_planned(isolated_sdcli_home, out)
    saved = _saved(out)
    assert sorted(saved) == list(range(1, 13))
    seeds = [int(NAME.match(saved[i].name).group(2)) for i in sorted(saved)]  # type: ignore[union-attr]
    assert seeds == [100, 101, 102, 103] * 3  # seed + n for each prompt, as planned


def test_ctrl_c_then_resume_replaces_the_unfinished_image(
    fake_webui: FakeWebUI, tmp_path: Path, isolated_sdcli_home: Path
) -> None:
    prompts = _prompts(tmp_path, 4)
    out = tmp_path / "out"
    fake_webui.pause_at_step(1, after_jobs=2)
    proc = start_sdcli("--url", fake_webui.url, "generate", *TINY, "--prompts-file", str(prompts),
                       "-o", str(out), "--json", stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        assert fake_webui.wait_paused(60)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)  # a safety net, not a timing assertion
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert "run 1: 2 of 3+ units done; to do the rest: sdcli resume 1" in stderr
    partial: Path | None = None
    if len(lines) == 2:
        # On a loaded machine the fake may answer after sdcli's 10 s grace: nothing to keep.
        assert "before the server returned any image" in stderr, stderr
    else:
        assert [line["interrupted"] for line in lines] == [False, False, True], stderr
        partial = Path(lines[2]["path"])
        unfinished = partial.read_bytes()

    r = run_sdcli("resume", "1")
    assert r.returncode == 0, r.stderr
    _assert_exactly_as_planned(isolated_sdcli_home, out)
    assert len(list(out.iterdir())) == 4
    if partial is not None:
        assert f"removed {partial}" in r.stderr
        assert _saved(out)[3].read_bytes() != unfinished  # made again whole (noise differs)


def _finished_run(fake: FakeWebUI, tmp_path: Path, *extra: str) -> tuple[list[str], Path]:
    prompts = _prompts(tmp_path, 3)
    out = tmp_path / "out"
    args = ["--url", fake.url, "generate", *TINY, *extra, "--prompts-file", str(prompts), "-o",
            str(out)]  # fmt: skip
    r = run_sdcli(*args)
    assert r.returncode == 0, r.stderr
    return args, out


def _lose_the_commit_of(home: Path, index: int, since: float) -> None:
    """As if the process died after writing unit `index`'s images, before the commit."""
    with _journal(home) as conn:
        conn.execute("UPDATE units SET state = 'pending' WHERE first_index = ?", (index,))
        conn.execute("DELETE FROM files WHERE unit = ?", (index,))
        conn.execute("UPDATE runs SET finished = NULL, all_read = 0, updated_ts = ?", (since,))


def test_images_written_before_a_lost_commit_are_not_made_again(
    fake_webui: FakeWebUI, tmp_path: Path, isolated_sdcli_home: Path
) -> None:
    args, out = _finished_run(fake_webui, tmp_path)
    before = _saved(out)
    _lose_the_commit_of(isolated_sdcli_home, 3, before[3].stat().st_mtime - 1)
    gone = subprocess.Popen(["true"])  # a process that is gone
    gone.wait()
    leftover = out / f".sdcli-{gone.pid}-0123456789ab.tmp"  # kill -9 in the middle of a write
    leftover.write_bytes(b"half an image")
    fake_webui.clear_requests()
    r = run_sdcli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert "resuming run 1: 3 of 3+ units done (1 found saved on disk)" in r.stderr
    assert not leftover.exists()
    assert "removed 1 temporary file(s) a killed sdcli left behind" in r.stderr
    assert fake_webui.requests_to(TXT2IMG) == []
    assert _saved(out) == before
    with _journal(isolated_sdcli_home) as conn:
        assert conn.execute("SELECT finished FROM runs").fetchone()[0] is not None


def test_a_unit_cut_half_way_by_a_crash_is_made_again_whole(
    fake_webui: FakeWebUI, tmp_path: Path, isolated_sdcli_home: Path
) -> None:
    args, out = _finished_run(fake_webui, tmp_path, "-b", "2")
    before = _saved(out)
    _lose_the_commit_of(isolated_sdcli_home, 3, before[3].stat().st_mtime - 1)
    before[4].unlink()  # the crash came between the unit's two images
    fake_webui.clear_requests()
    r = run_sdcli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert f"removed {before[3]}" in r.stderr
    assert len(fake_webui.requests_to(TXT2IMG)) == 1
    _assert_exactly_as_planned(isolated_sdcli_home, out)
    assert len(list(out.iterdir())) == 6


def test_runs_lists_runs_in_a_pipe_and_as_json(
    fake_webui: FakeWebUI, tmp_path: Path, isolated_sdcli_home: Path
) -> None:
    _finished_run(fake_webui, tmp_path)
    r = run_sdcli("runs")
    assert r.returncode == 0, r.stderr
    [line] = r.stdout.splitlines()
    fields = line.split("\t")
    assert fields[0] == "1" and fields[2:6] == ["done", "3", "3", "0"]
    assert fields[6] == str((tmp_path / "out").resolve())
    assert fields[7] == f"file {(tmp_path / 'prompts.txt').resolve()}"
    j = run_sdcli("runs", "--json")
    [doc] = [json.loads(x) for x in j.stdout.splitlines()]
    assert doc["id"] == 1 and doc["state"] == "done" and doc["done"] == doc["total"] == 3
    assert doc["images"] == 3 and doc["all_prompts_read"] is True
    assert doc["server"] == fake_webui.url


def test_runs_at_a_terminal_keeps_one_line_a_run_at_80_columns(
    fake_webui: FakeWebUI, tmp_path: Path, isolated_sdcli_home: Path
) -> None:
    out = tmp_path / "a folder with a rather long name" / "and another one below it" / "renders"
    prompts = tmp_path / "prompts for the long evening run, version two.txt"
    prompts.write_text("a cat\na dog\n", encoding="utf-8")
    fake_webui.fail(TXT2IMG, status=500, times=1)
    r = run_sdcli(
        "--url", fake_webui.url, "generate", *TINY, "--keep-going", "--prompts-file",
        str(prompts), "-o", str(out),
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    r = run_sdcli(
        "--url", fake_webui.url, "generate", *TINY, "-c", "2", "-o", str(out), "-",
        input="a bird\n",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    screen = run_on_terminal("runs", columns=80, rows=24, cwd=elsewhere)
    assert screen.exit_code == 0, screen.text
    header, _rule, *rows = screen.lines
    assert [cell.strip() for cell in header.split("┃")] == [
        "RUN", "STARTED", "STATE", "UNITS", "FAILED", "OUTPUT", "PROMPTS",
    ]  # fmt: skip
    assert len(rows) == 2, screen.text  # one line a run: nothing wrapped
    second, first = ([cell.strip() for cell in row.split("│")] for row in rows)
    assert second[0] == "2" and re.fullmatch(r"\d\d-\d\d \d\d:\d\d", second[1])
    assert second[2:5] == ["done", "2/2", ""] and second[6] == "stdin"
    assert first[0] == "1" and first[3:5] == ["1/2", "1"]
    for cells in (first, second):
        assert cells[5].startswith("…") and cells[5].endswith("/renders"), screen.text
    assert first[6].startswith("…") and first[6].endswith("two.txt"), screen.text
    # wide enough, each path whole, as it reads from here
    wide = run_on_terminal("runs", columns=200, rows=24, cwd=tmp_path)
    first = [cell.strip() for cell in wide.lines[-1].split("│")]
    assert first[5:] == [
        "a folder with a rather long name/and another one below it/renders",
        "prompts for the long evening run, version two.txt",
    ]


def test_a_single_request_keeps_no_journal(
    fake_webui: FakeWebUI, tmp_path: Path, isolated_sdcli_home: Path
) -> None:
    r = run_sdcli("--url", fake_webui.url, "generate", *TINY, "-o", str(tmp_path), "a cat")
    assert r.returncode == 0, r.stderr
    assert not (isolated_sdcli_home / "runs.db").exists()


def test_resume_with_other_settings_is_refused(
    fake_webui: FakeWebUI, tmp_path: Path, isolated_sdcli_home: Path
) -> None:
    prompts = _prompts(tmp_path, 3)
    out = tmp_path / "out"
    args = ["--url", fake_webui.url, "generate", *TINY, "--prompts-file", str(prompts), "-o",
            str(out)]  # fmt: skip
    _kill_while_held(fake_webui, args, after_jobs=1)
    fake_webui.clear_requests()
    r = run_sdcli(*[a if a != "2" else "3" for a in args], "--resume")  # --steps 3
    assert r.returncode == 2
    [line] = r.stderr.splitlines()
    assert line.startswith("sdcli: error: --resume: unfinished run 1 saving into ")
    assert "(steps differ)" in line and "sdcli resume 1" in line
    assert fake_webui.requests_to(TXT2IMG) == []


@pytest.mark.parametrize("argv", [["resume", "7"], ["resume", "x"]])
def test_a_bad_run_id_is_one_line_and_exit_2(
    fake_webui: FakeWebUI, tmp_path: Path, argv: list[str]
) -> None:
    _finished_run(fake_webui, tmp_path)
    r = run_sdcli(*argv)
    assert r.returncode == 2
    assert r.stderr.splitlines()[0].startswith("sdcli: error: ")
    assert "Traceback" not in r.stderr
    if argv[1] == "7":
        assert r.stderr.splitlines() == [
            "sdcli: error: no run 7 in the run journal (sdcli runs lists them)"
        ]


def test_a_corrupt_journal_is_a_clear_error_and_nothing_is_sent(
    fake_webui: FakeWebUI, tmp_path: Path, isolated_sdcli_home: Path
) -> None:
    (isolated_sdcli_home / "runs.db").write_bytes(b"this is not a database" * 100)
    prompts = _prompts(tmp_path, 2)
    r = run_sdcli("--url", fake_webui.url, "generate", *TINY, "--prompts-file", str(prompts),
                  "-o", str(tmp_path / "out"))  # fmt: skip
    assert r.returncode == 2
    [line] = r.stderr.splitlines()
    assert line.startswith(f"sdcli: error: cannot use the run journal {isolated_sdcli_home}")
    assert "it is not a run journal sdcli can read" in line and "mv " in line
    assert fake_webui.requests_to(TXT2IMG) == []
    listed = run_sdcli("runs")
    assert listed.returncode == 2 and "not a run journal" in listed.stderr


def test_a_journal_locked_by_another_process_is_a_clear_error(
    fake_webui: FakeWebUI, tmp_path: Path, isolated_sdcli_home: Path
) -> None:
    _finished_run(fake_webui, tmp_path)
    holder = sqlite3.connect(isolated_sdcli_home / "runs.db", isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        r = run_sdcli("runs")  # waits out the busy timeout, then says why
    finally:
        holder.close()
    assert r.returncode == 2
    [line] = r.stderr.splitlines()
    assert "another sdcli process keeps it locked" in line
    assert os.path.exists(isolated_sdcli_home / "runs.db")


def test_random_dynamic_prompts_resume_with_the_prompts_planned(
    fake_webui: FakeWebUI, tmp_path: Path, isolated_sdcli_home: Path
) -> None:
    """A random template draws anew each time it is read: a resumed run sends the prompts it
    drew the first time, with their seeds, each once."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        "".join(f"a {{red|green|blue|white|black}} cat number {k}\n" for k in range(1, 4)),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    args = ["--url", fake_webui.url, "generate", *TINY, "--variants", "2", "--prompts-file",
            str(prompts), "-o", str(out)]  # fmt: skip
    _kill_while_held(fake_webui, args, after_jobs=3)
    r = run_sdcli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    with _journal(isolated_sdcli_home) as conn:
        texts = [row[0] for row in conn.execute("SELECT text FROM units ORDER BY first_index")]
    assert len(texts) == 6 and all(t and t.startswith("a ") for t in texts)
    sent = [
        (read_parameters_from_file(p) or "").split("\n")[0] for _, p in sorted(_saved(out).items())
    ]
    assert sent == texts  # each planned prompt once, in order, none drawn anew
    _assert_exactly_as_planned_texts(isolated_sdcli_home, out)


def _assert_exactly_as_planned_texts(home: Path, out: Path) -> None:
    with _journal(home) as conn:
        rows = conn.execute("SELECT first_index, seed, text FROM units").fetchall()
    saved = _saved(out)
    assert sorted(saved) == sorted(row[0] for row in rows)
    for index, seed, text in rows:
        info = read_parameters_from_file(saved[index]) or ""
        assert info.startswith(text + "\n") and f"Seed: {seed}," in info


def test_a_run_over_two_servers_killed_and_resumed_saves_each_unit_once(
    make_fake_webui: Callable[..., FakeWebUI], tmp_path: Path, isolated_sdcli_home: Path
) -> None:
    one, two = make_fake_webui(), make_fake_webui()
    prompts = _prompts(tmp_path, 8)
    out = tmp_path / "out"
    args = ["--url", one.url, "--url", two.url, "generate", *TINY, "--prompts-file",
            str(prompts), "-o", str(out)]  # fmt: skip
    _kill_while_held(one, args, after_jobs=2)  # the other server goes on until the kill
    assert len(list(out.iterdir())) < 8
    r = run_sdcli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    _assert_exactly_as_planned(isolated_sdcli_home, out)
    assert len(list(out.iterdir())) == 8


def test_stored_times_are_shown_local_in_full_or_to_the_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`sdcli runs` in a pipe gives the full local time; at a terminal, to the minute (the
    date alone for another year): one function for both."""
    import time
    from datetime import datetime

    from sdcli.journal.store import local_time

    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +05:30: the half hour shows it is converted
    time.tzset()
    try:
        this_year = f"{datetime.now().year}-03-04T05:06:07.000Z"
        assert local_time(this_year) == f"{datetime.now().year}-03-04 10:36:07"
        assert local_time(this_year, short=True) == "03-04 10:36"
        assert local_time("2001-03-04T20:06:07.000Z", short=True) == "2001-03-05"
    finally:
        monkeypatch.undo()
        time.tzset()

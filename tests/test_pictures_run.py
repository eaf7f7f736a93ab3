"""Pictures during and after `generate` on a pseudo-terminal (through pyte); never in pipes."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pyte
import requests
from PIL import Image

from sdcli.cli.pictures import fit_cells, halfblock_lines
from sdcli.cli.thumbnails import THUMB_COLUMNS, THUMB_ROWS
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import run_sdcli
from terminal_helpers import Terminal, leftover_bar

HALF = "▀"


def _expected_cells(path: Path, columns: int, rows: int) -> list[list[tuple[str, str]]]:
    """(fg, bg) of every cell of the half-block picture of the file, as pyte names colours."""
    with Image.open(path) as image:
        c, r = fit_cells(image.width, image.height, columns, rows)
        lines = halfblock_lines(image, c, r)
    screen = pyte.Screen(c + 1, r + 1)
    pyte.Stream(screen).feed("\r\n".join(lines))
    return [[(screen.buffer[y][x].fg, screen.buffer[y][x].bg) for x in range(c)] for y in range(r)]


def _cells(term: Terminal, row: int, columns: int) -> list[tuple[str, str]]:
    return [(term.screen.buffer[row][x].fg, term.screen.buffer[row][x].bg) for x in range(columns)]


def _previews_every_step(fake: FakeWebUI) -> None:
    r = requests.post(f"{fake.url}/sdapi/v1/options", json={"show_progress_every_n_steps": 1})
    assert r.ok


def _generate(fake: FakeWebUI, *extra: str) -> list[str]:
    """Run in the test's directory: `out/NAME.png` fits on a row of the screen."""
    return ["--url", fake.url, "generate", "-p", "draft", "--steps", "6", "-o", "out", *extra]


def test_a_thumbnail_is_drawn_under_each_saved_path(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    term = Terminal(*_generate(fake_webui, "-b", "2", "a cat"), columns=90, rows=40, cwd=tmp_path)
    try:
        assert term.wait_exit() == 0
        lines = term.lines()
        paths = sorted((tmp_path / "out").glob("*.png"))
        assert len(paths) == 2
        for path in paths:
            at = lines.index(f"out/{path.name}")
            expected = _expected_cells(path, THUMB_COLUMNS, THUMB_ROWS)
            for y, row in enumerate(expected):
                assert lines[at + 1 + y] == HALF * len(row)
                assert _cells(term, at + 1 + y, len(row)) == row, (path, y)
        assert lines[-1].startswith("'a cat': saved 2 images")
        assert leftover_bar(lines) == []
    finally:
        term.close()


def test_no_show_draws_no_thumbnail(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    term = Terminal(*_generate(fake_webui, "--no-show", "a cat"), columns=90, rows=30, cwd=tmp_path)
    try:
        assert term.wait_exit() == 0
        [path] = (tmp_path / "out").glob("*.png")
        assert f"out/{path.name}" in term.lines()
        assert HALF not in term.text()
    finally:
        term.close()


def test_no_picture_and_no_escape_code_goes_to_a_pipe(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    _previews_every_step(fake_webui)
    r = run_sdcli(*_generate(fake_webui, "a cat"), env={"TERM": "xterm-kitty"}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    [path] = (tmp_path / "out").glob("*.png")
    assert r.stdout == f"out/{path.name}\n"
    assert "\x1b" not in r.stderr and HALF not in r.stderr
    # nobody sees a preview: none was asked for
    assert all(
        not q.json or not q.json.get("live_preview")
        for q in fake_webui.requests_to("/internal/progress")
    )
    progress = fake_webui.requests_to("/sdapi/v1/progress")
    assert all(q.query.get("skip_current_image") != "false" for q in progress)


def test_stdout_in_a_pipe_gets_the_path_only_while_stderr_shows_the_picture(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100"}
    child = subprocess.Popen(
        [sys.executable, "-m", "sdcli", *_generate(fake_webui, "a cat")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
        text=True,
        cwd=tmp_path,
    )
    os.close(slave)
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    out, _ = child.communicate(timeout=60)
    os.close(master)
    assert child.returncode == 0
    [path] = (tmp_path / "out").glob("*.png")
    assert out == f"out/{path.name}\n"  # the results: nothing but the path
    assert HALF.encode() in drawn  # the thumbnail went to the terminal, on stderr


def test_the_live_preview_shows_above_the_bar_while_the_server_samples(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    _previews_every_step(fake_webui)
    fake_webui.pause_at_step(3)
    term = Terminal(*_generate(fake_webui, "--no-show", "a cat"), columns=90, rows=30, cwd=tmp_path)
    try:
        term.wait_for(lambda t: "step 3/6" in t.text() and HALF in t.text())
        lines = term.lines()
        bar = next(i for i, line in enumerate(lines) if "step 3/6" in line)
        picture = [i for i, line in enumerate(lines) if line.startswith(HALF)]
        # a 512x512 job: the fake's preview is 128x128, drawn right above the bar
        assert picture == list(range(bar - len(picture), bar)) and len(picture) >= 4
        colours = {c for i in picture for c in _cells(term, i, len(lines[i]))}
        assert len(colours) > 10 and all(fg != "default" for fg, _ in colours)
        fake_webui.resume()
        assert term.wait_exit() == 0
        final = term.lines()
        assert HALF not in term.text()  # the preview went with the bar
        assert leftover_bar(final) == []
        assert final[-1].startswith("'a cat': saved 1 image")
    finally:
        term.close()


def test_no_preview_draws_the_bar_alone_and_asks_for_no_preview(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    _previews_every_step(fake_webui)
    fake_webui.pause_at_step(3)
    args = _generate(fake_webui, "--no-show", "--no-preview", "a cat")
    term = Terminal(*args, columns=90, rows=30, cwd=tmp_path)
    try:
        term.wait_for("step 3/6")
        assert HALF not in term.text()
        fake_webui.resume()
        assert term.wait_exit() == 0
    finally:
        term.close()
    assert all(
        not q.json or not q.json.get("live_preview")
        for q in fake_webui.requests_to("/internal/progress")
    )
    progress = fake_webui.requests_to("/sdapi/v1/progress")
    assert progress and all(q.query.get("skip_current_image") == "true" for q in progress)

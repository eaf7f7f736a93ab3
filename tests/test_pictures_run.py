"""Pictures during and after `generate` on a pseudo-terminal (through pyte); never in pipes."""

from __future__ import annotations

import base64
import os
import pty
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyte
import pytest
import requests
from PIL import Image

from sdcli.cli.pictures import fit_cells, halfblock_lines
from sdcli.cli.thumbnails import THUMB_COLUMNS, THUMB_ROWS
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import run_sdcli
from terminal_helpers import Terminal, leftover_bar

HALF = "▀"
_INTERNAL = "/internal/progress"


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


def _bar_row(term: Terminal, step: str = "step 3/6") -> int:
    return next(i for i, line in enumerate(term.lines()) if step in line)


def _beside(term: Terminal, label: str = "'a cat'") -> bool:
    """The preview sits at the left of the bar: its last rows are the bar's and the label's."""
    lines = term.lines()
    if "step 3/6" not in term.text():
        return False
    bar = _bar_row(term)
    width = len(lines[bar]) - len(lines[bar].lstrip(HALF))
    return width >= 4 and lines[bar - 1] == HALF * width + "  " + label


def _above(term: Terminal, label: str = "'a cat'") -> bool:
    """The preview is drawn above the bar (a terminal too narrow for both side by side)."""
    lines = term.lines()
    if "step 3/6" not in term.text():
        return False
    bar = _bar_row(term)
    return lines[bar].startswith(label) and lines[bar - 1].startswith(HALF)


def _picture_rows(term: Terminal) -> list[int]:
    return [i for i, line in enumerate(term.lines()) if line.startswith(HALF)]


def test_the_live_preview_sits_at_the_left_of_the_bar_while_the_server_samples(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    _previews_every_step(fake_webui)
    fake_webui.pause_at_step(3)
    term = Terminal(*_generate(fake_webui, "--no-show", "a cat"), columns=90, rows=30, cwd=tmp_path)
    try:
        term.wait_for(_beside)
        lines = term.lines()
        bar = _bar_row(term)
        picture = _picture_rows(term)
        # a 512x512 job: the fake's preview is 128x128, a square of 20x10 cells whose last rows
        # hold the prompt and, on the picture's bottom row, the bar
        assert picture == list(range(bar - 9, bar + 1))
        width = len(lines[bar]) - len(lines[bar].lstrip(HALF))
        assert width == 20 and all(lines[i] == HALF * width for i in picture[:-2])
        assert lines[bar][width : width + 3] == "  ━" and leftover_bar(lines) == [lines[bar]]
        assert bar == len(lines) - 1  # nothing under it: the bar is the last row, as without
        colours = {c for i in picture for c in _cells(term, i, width)}
        assert len(colours) > 10 and all(fg != "default" for fg, _ in colours)
        fake_webui.resume()
        assert term.wait_exit() == 0
        final = term.lines()
        assert HALF not in term.text()  # the preview went with the bar
        assert leftover_bar(final) == []
        assert final[-1].startswith("'a cat': saved 1 image")
    finally:
        term.close()


def test_the_preview_goes_above_the_bar_when_beside_it_the_bar_would_have_under_40_columns(
    make_fake_webui: Callable[..., FakeWebUI], tmp_path: Path
) -> None:
    """A 20-column picture, 2 columns of gap, the terminal's last column never written: at 63
    columns the bar's row keeps 40 and the picture sits at its left; at 62, above it."""
    for columns, where in ((63, _beside), (62, _above)):
        fake = make_fake_webui()
        _previews_every_step(fake)
        fake.pause_at_step(3)
        args = _generate(fake, "--no-show", "a cat")
        term = Terminal(*args, columns=columns, rows=30, cwd=tmp_path)
        try:
            term.wait_for(where)
            bar = _bar_row(term)
            rows = range(bar - 9, bar + 1) if where is _beside else range(bar - 10, bar)
            assert _picture_rows(term) == list(rows)
            assert "━" in term.lines()[bar]
            fake.resume()
            assert term.wait_exit() == 0
            assert HALF not in term.text() and leftover_bar(term.lines()) == []
        finally:
            term.close()


def test_resizing_mid_run_moves_the_preview_and_leaves_nothing_behind(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    _previews_every_step(fake_webui)
    fake_webui.pause_at_step(3)
    term = Terminal(*_generate(fake_webui, "--no-show", "a cat"), columns=56, rows=30, cwd=tmp_path)
    try:
        term.wait_for(_above)
        term.resize(90, 30)
        term.wait_for(_beside)  # the next poll's frame: the picture at the bar's left
        bar = _bar_row(term)
        assert _picture_rows(term) == list(range(bar - 9, bar + 1))
        assert len(leftover_bar(term.lines())) == 1 and bar == len(term.lines()) - 1
        term.resize(56, 30)  # the frame drawn at 90 columns is cut at 56 by the terminal…
        term.wait_for(_above)  # …and erased whole: the picture over the bar again
        bar = _bar_row(term)
        assert _picture_rows(term) == list(range(bar - 10, bar))
        assert len(leftover_bar(term.lines())) == 1 and bar == len(term.lines()) - 1
        fake_webui.resume()
        assert term.wait_exit() == 0
        assert HALF not in term.text() and leftover_bar(term.lines()) == []
        assert term.lines()[-1].startswith("'a cat': saved 1 image")
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


@pytest.mark.parametrize("profile", ["a1111-nowebui", "sdnext"])
def test_without_internal_progress_the_preview_is_the_current_image(
    make_fake_webui: Callable[..., FakeWebUI], tmp_path: Path, profile: str
) -> None:
    """API-only A1111 (a bare base64 PNG) and SD.Next (a JPEG at every step): current_image."""
    fake = make_fake_webui(profile=profile)
    if profile != "sdnext":
        _previews_every_step(fake)
    fake.pause_at_step(3)
    term = Terminal(*_generate(fake, "--no-show", "a cat"), columns=90, rows=30, cwd=tmp_path)
    try:
        term.wait_for(_beside)
        fake.resume()
        assert term.wait_exit() == 0
        assert HALF not in term.text()
    finally:
        term.close()
    assert len(fake.requests_to("/internal/progress")) <= 1  # the probe that finds none (404)
    asked = fake.requests_to("/sdapi/v1/progress")
    assert any(q.query.get("skip_current_image") == "false" for q in asked)


def test_previews_off_on_the_server_are_said_once_under_debug(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    r = requests.post(f"{fake_webui.url}/sdapi/v1/options", json={"live_previews_enable": False})
    assert r.ok
    fake_webui.pause_at_step(3)
    args = ["--debug", *_generate(fake_webui, "--no-show", "a cat")]
    term = Terminal(*args, columns=120, rows=40, cwd=tmp_path)
    try:
        term.wait_for("step 3/6")
        fake_webui.resume()
        assert term.wait_exit() == 0
        said = "the server's live previews are off (live_previews_enable): the bar alone"
        assert term.text().count(said) == 1
        assert HALF not in term.text()
    finally:
        term.close()
    assert all(
        not (q.json or {}).get("live_preview") for q in fake_webui.requests_to("/internal/progress")
    )


def test_a_preview_is_asked_for_at_most_once_a_second_in_place_of_a_poll(
    fake_webui: FakeWebUI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UI mode: one request a poll; every ~1 s it is POST /internal/progress with live_preview
    and the id of the preview already drawn, which the server then does not send again."""
    from concurrent.futures import ThreadPoolExecutor

    from sdcli import progress
    from sdcli.catalog import Catalog
    from sdcli.client import WebUIClient
    from sdcli.events import ProgressSnapshot

    _previews_every_step(fake_webui)
    fake_webui.pause_at_step(3)
    body = {"prompt": "a cat", "steps": 6, "width": 64, "height": 64, "force_task_id": "task(p)"}
    now = [100.0]
    monkeypatch.setattr("sdcli.progress.time.monotonic", lambda: now[0])
    seen: list[ProgressSnapshot] = []
    with WebUIClient(fake_webui.url) as client, ThreadPoolExecutor(1) as pool:
        job = pool.submit(client.generate, "txt2img", body)
        assert fake_webui.wait_paused()
        fake_webui.clear_requests()
        poller = progress.Poller(client, Catalog(client), seen.append, preview=True)
        poller.start()
        for _ in range(8):  # 2.4 s of polls, 0.3 s apart
            poller.poll("task(p)", 99.0)
            now[0] += 0.3
        fake_webui.resume()
        assert job.result(timeout=30).images
    internal = fake_webui.requests_to("/internal/progress")
    polled = fake_webui.requests_to("/sdapi/v1/progress")
    assert len(internal) + len(polled) == 8  # one request a poll
    asked = [q.json for q in internal if q.json and q.json["live_preview"]]
    assert [a["id_live_preview"] for a in asked] == [-1, 1]  # at 0 s and 1.2 s; the id sent back
    previews = [s.preview for s in seen if s.preview is not None]
    assert len(previews) == 1 and previews[0][:8] == b"\x89PNG\r\n\x1a\n"  # sent once
    assert all(q.query["skip_current_image"] == "true" for q in polled)


def test_an_xy_grid_gets_its_thumbnail_too(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    args = _generate(fake_webui, "-W", "64", "-H", "64", "--xy", "cfg=5,7", "a cat")
    term = Terminal(*args, columns=90, rows=60, cwd=tmp_path)
    try:
        assert term.wait_exit() == 0
        lines = term.lines()
        [grid] = sorted((tmp_path / "out").glob("*-grid-*.png"))
        at = lines.index(f"out/{grid.name}")
        expected = _expected_cells(grid, THUMB_COLUMNS, THUMB_ROWS)
        for y, row in enumerate(expected):
            assert lines[at + 1 + y] == HALF * len(row)
            assert _cells(term, at + 1 + y, len(row)) == row, y
        assert at + 1 + len(expected) == len(lines)  # the grid and its picture come last
    finally:
        term.close()


def _kitty_chunks(head: bytes, payload: bytes) -> bytes:
    """Kitty's escape codes for `payload` as its spec describes them, written out here."""
    chunks = [payload[i : i + 4096] for i in range(0, len(payload), 4096)]
    codes = [b"\x1b_G" + head + b",m=1;" + chunks[0] + b"\x1b\\"]
    codes += [b"\x1b_Gm=1;" + chunk + b"\x1b\\" for chunk in chunks[1:-1]]
    codes.append(b"\x1b_Gm=0;" + chunks[-1] + b"\x1b\\")
    return b"".join(codes)


@pytest.mark.parametrize(
    "env",
    [
        {"SDCLI_IMAGES": "kitty"},
        # kitty itself, but over SSH: the file is not on kitty's machine, the bytes go
        {"TERM": "xterm-kitty", "KITTY_WINDOW_ID": "1", "SSH_CONNECTION": "10.0.0.2 1 10.0.0.1 22"},
    ],
)
def test_kitty_gets_each_saved_png_in_chunks_on_the_terminal(
    fake_webui: FakeWebUI, tmp_path: Path, env: dict[str, str]
) -> None:
    env = {**env, "KITTY_PID": str(os.getpid())}  # a live process: only SSH keeps the bytes
    term = Terminal(*_generate(fake_webui, "--size", "768x512", "a cat"), env=env, cwd=tmp_path)
    try:
        assert term.wait_exit() == 0
    finally:
        term.close()
    [path] = (tmp_path / "out").glob("*.png")
    data = path.read_bytes()
    columns, rows = fit_cells(768, 512, THUMB_COLUMNS, THUMB_ROWS)
    head = f"a=T,f=100,q=2,C=1,c={columns},r={rows}".encode()
    assert _kitty_chunks(head, base64.standard_b64encode(data)) in term.raw
    assert b"t=f" not in term.raw
    # the path, then the picture (pyte shows no APC: the screen would show the payload)
    assert term.raw.index(f"out/{path.name}\r\n".encode()) < term.raw.index(b"\x1b_G")


def test_iterm2_gets_each_saved_image_in_one_escape_code(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    env = {"TERM_PROGRAM": "iTerm.app"}
    term = Terminal(*_generate(fake_webui, "a cat"), env=env, columns=90, cwd=tmp_path)
    try:
        assert term.wait_exit() == 0
    finally:
        term.close()
    [path] = (tmp_path / "out").glob("*.png")
    data = path.read_bytes()
    columns, rows = fit_cells(512, 512, THUMB_COLUMNS, THUMB_ROWS)
    args = f"inline=1;size={len(data)};width={columns};height={rows};preserveAspectRatio=1"
    expected = f"\x1b]1337;File={args}:".encode() + base64.standard_b64encode(data) + b"\x07"
    assert expected in term.raw
    assert term.raw.count(b"\x1b]1337;") == 1


def test_over_two_servers_one_preview_sits_at_the_left_of_their_rows(
    make_fake_webui: Callable[..., FakeWebUI], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The picture of the server marked ◂, kept till its request ends, then the other's; only
    the server drawn is asked for previews (but for a first ask of each, at the start)."""
    fakes = {"left": make_fake_webui(), "right": make_fake_webui()}
    config = tmp_path / "config.toml"
    config.write_text("".join(f'[servers.{n}]\nurl = "{f.url}"\n' for n, f in fakes.items()))
    monkeypatch.setenv("SDCLI_CONFIG", str(config))
    (tmp_path / "prompts.txt").write_text("a cat\na dog\n")
    for fake in fakes.values():
        _previews_every_step(fake)
        fake.pause_at_step(3)
    args = _generate(fakes["left"], "--no-show", "--prompts-file", "prompts.txt")
    args[:2] = ["--url", "all"]
    term = Terminal(*args, columns=80, rows=24, cwd=tmp_path)

    def asked(fake: FakeWebUI) -> int:
        return sum(bool((q.json or {}).get("live_preview")) for q in fake.requests_to(_INTERNAL))

    def marked(t: Terminal, working: int = 2) -> str | None:
        """The server whose row is marked, when the picture is at the rows' left."""
        lines = t.lines()
        if len(lines) < 10 or t.text().count("step 3/6") != working:
            return None
        tails = [line[20:] for line in lines[-10:] if line.startswith(HALF * 20)]
        marks = [tail[4:].split()[0] for tail in tails if tail.startswith("  ◂ ")]
        return marks[0] if len(marks) == 1 and len(tails) == 10 else None

    try:
        term.wait_for(lambda t: marked(t) is not None)
        first = marked(term)
        assert first is not None
        other = "right" if first == "left" else "left"
        lines = term.lines()
        assert lines[-3][22:].startswith(("◂ left ", "  left "))
        assert lines[-2][22:].startswith(("◂ right ", "  right "))
        assert re.match(r"0/2\+? done · 0 images · 2 servers", lines[-1][22:])
        # three asks of the drawn server's preview (two seconds): the other was asked once at most
        term.wait_for(lambda t: asked(fakes[first]) >= 3)
        assert asked(fakes[other]) <= 1
        fakes[first].resume()  # its image is saved: the other server's preview takes the place
        term.wait_for(lambda t: " idle" in t.text() and marked(t, working=1) == other)
        fakes[other].resume()
        assert term.wait_exit() == 0
        final = term.lines()
    finally:
        term.close()
    assert HALF not in "\n".join(final) and leftover_bar(final) == []
    assert not any(" done · " in row or "◂" in row for row in final)
    assert len([row for row in final if ": saved 1 image · seed " in row]) == 2

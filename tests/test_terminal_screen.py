"""What a person sees with stdout and stderr both on the terminal (issue 10, item 1).

Each test runs the real sdcli on a pseudo-terminal through a terminal emulator (pyte) and looks
at the final screen: while running there is one live bar; at the end it is gone, each saved
path stands alone on its line, and a one-line summary follows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sdcli.testing.fake_webui import FakeWebUI

from terminal_helpers import Terminal, leftover_bar, run_on_terminal

WIDTHS = (60, 80, 120)
LONG_PROMPT = "a cat on a mat, watercolor, soft morning light, highly detailed, masterpiece"


@pytest.fixture(autouse=True)
def no_pictures(isolated_sdcli_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """These screens are read row by row for paths, bars and summaries; the thumbnails and the
    live preview drawn between them have their own tests (test_pictures_run.py)."""
    monkeypatch.setenv("SDCLI_IMAGES", "none")


def saved_names(out: Path) -> list[str]:
    return sorted(f"out/{p.name}" for p in out.iterdir())


def path_lines(lines: list[str]) -> list[str]:
    return sorted(row for row in lines if row.startswith("out/"))


def bar_line(term: Terminal) -> str:
    rows = [row for row in term.lines() if "━" in row or "─" in row]
    assert len(rows) == 1, term.dump()  # one live bar, never a trail of them
    return rows[0]


@pytest.mark.parametrize("columns", WIDTHS)
def test_the_bar_is_gone_and_the_path_stands_alone(
    fake_webui: FakeWebUI, tmp_path: Path, columns: int
) -> None:
    fake_webui.pause_at_step(5)
    seen: list[str] = []

    def at_step_5(term: Terminal) -> None:
        seen.append(bar_line(term))
        fake_webui.resume()

    screen = run_on_terminal(
        "--url", fake_webui.url, "generate", "-p", "chibi", LONG_PROMPT, "-o", "out",
        columns=columns, cwd=tmp_path, until="step 5/27", then=at_step_5,
    )  # fmt: skip
    assert screen.exit_code == 0, screen.text
    [bar] = seen
    assert len(bar) < columns  # one row: it never wraps, so it can be erased
    assert "step 5/27" in bar and "ETA" in bar  # what matters stays visible at every width
    assert "'a cat" in bar  # the label shrinks, but is there
    assert leftover_bar(screen.lines) == [], screen.text
    names = saved_names(tmp_path / "out")
    assert len(names) == 1
    assert path_lines(screen.lines) == names  # the path alone on its row, not glued to anything
    index = screen.lines.index(names[0])
    assert "saved 1 image" in screen.lines[index + 1]  # then the one-line summary
    assert len(screen.lines) == index + 2


def test_the_label_shrinks_before_step_and_eta_are_lost(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    fake_webui.pause_at_step(5)
    term = Terminal(
        "--url", fake_webui.url, "generate", "-p", "chibi", LONG_PROMPT, "-o", "out",
        columns=60, cwd=tmp_path,
    )  # fmt: skip
    try:
        term.wait_for("step 5/27")
        bar = bar_line(term)
        fake_webui.resume()
        assert term.wait_exit() == 0
    finally:
        term.close()
    assert "…" in bar and LONG_PROMPT not in bar  # the prompt gave way
    assert "━" in bar  # and the bar itself is still there


@pytest.mark.parametrize("columns", WIDTHS)
def test_count_and_batch_size_leave_one_row_per_path(
    fake_webui: FakeWebUI, tmp_path: Path, columns: int
) -> None:
    fake_webui.pause_at_step(3)
    screen = run_on_terminal(
        "--url", fake_webui.url, "generate", "--steps", "6", "-W", "64", "-H", "64",
        "--count", "2", "-b", "2", "a cat", "-o", "out",
        columns=columns, rows=30, cwd=tmp_path, until="step 3/6",
        then=lambda term: fake_webui.resume(),
    )  # fmt: skip
    assert screen.exit_code == 0, screen.text
    assert leftover_bar(screen.lines) == [], screen.text
    names = saved_names(tmp_path / "out")
    assert len(names) == 4
    assert path_lines(screen.lines) == names
    assert sum("saved 2 images" in row for row in screen.lines) == 2


def test_from_image_leaves_no_bar(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    first = run_on_terminal(
        "--url", fake_webui.url, "generate", "--steps", "4", "-W", "64", "-H", "64", "a cat",
        "-o", "out", cwd=tmp_path,
    )  # fmt: skip
    assert first.exit_code == 0, first.text
    [source] = saved_names(tmp_path / "out")
    fake_webui.pause_at_step(2)
    screen = run_on_terminal(
        "--url", fake_webui.url, "generate", "--from-image", source, "--seed", "-1", "-o", "out",
        cwd=tmp_path, until="step 2/4", then=lambda term: fake_webui.resume(),
    )  # fmt: skip
    assert screen.exit_code == 0, screen.text
    assert leftover_bar(screen.lines) == [], screen.text
    new = sorted(set(saved_names(tmp_path / "out")) - {source})
    assert path_lines(screen.lines) == new and len(new) == 1


@pytest.mark.parametrize("columns", (60, 120))
def test_ctrl_c_leaves_the_kept_path_and_the_error_line_only(
    fake_webui: FakeWebUI, tmp_path: Path, columns: int
) -> None:
    fake_webui.pause_at_step(3)
    screen = run_on_terminal(
        "--url", fake_webui.url, "generate", "--steps", "20", "-W", "64", "-H", "64", "a cat",
        "-o", "out", columns=columns, cwd=tmp_path, until="step 3/20",
        then=lambda term: term.ctrl_c(),
    )  # fmt: skip
    assert screen.exit_code == 130, screen.text
    assert leftover_bar(screen.lines) == [], screen.text
    names = saved_names(tmp_path / "out")
    assert len(names) == 1
    assert path_lines(screen.lines) == names
    assert any(row.startswith("sdcli: error: interrupted; kept 1 image") for row in screen.lines)


def test_prompts_typed_at_the_terminal_never_bring_back_a_frozen_bar(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    term = Terminal(
        "--url", fake_webui.url, "generate", "--steps", "6", "-W", "64", "-H", "64", "-",
        "-o", "out", cwd=tmp_path,
    )  # fmt: skip
    try:
        term.wait_for("Ctrl-D")  # says how to type prompts and how to finish
        fake_webui.pause_at_step(3)
        term.type_line("a cat")
        term.wait_for("step 3/6")
        fake_webui.resume()
        term.wait_for("saved 1 image")
        term.type_line("a dog")
        term.wait_for(lambda t: sum("saved 1 image" in row for row in t.lines()) == 2)
        term.ctrl_d()
        assert term.wait_exit() == 0
        lines = term.lines()
    finally:
        term.close()
    assert leftover_bar(lines) == [], "\n".join(lines)
    names = saved_names(tmp_path / "out")
    assert path_lines(lines) == names and len(names) == 2
    assert "a cat" in lines and "a dog" in lines  # what was typed stays on its own row
    assert "2 prompts" in lines[-1]  # the closing summary of the run

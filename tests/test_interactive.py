"""`sdcli interactive` end to end against the fake web UI: lines from a pipe (no UI), the line
editor driven through prompt_toolkit's pipe input, and the real thing on a pseudo-terminal."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyte
import pytest
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output.vt100 import Vt100_Output

from sdcli.cli.state import AppState
from sdcli.interactive.engine import Engine
from sdcli.interactive.session import RunOptions, Session
from sdcli.interactive.ui import run_terminal
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import run_sdcli
from terminal_helpers import Terminal

TXT2IMG = "/sdapi/v1/txt2img"


def _bodies(fake: FakeWebUI) -> list[dict[str, Any]]:
    return [r.json for r in fake.requests_to(TXT2IMG)]


# --- stdin is not a terminal: lines run in order, like a script -------------------------------


def test_piped_lines_run_in_order_with_the_settings_of_the_commands(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    lines = "a cat\n/preset chibi\na dog\n/seed 42\na bird\n/again\n/quit\nnever run\n"
    r = run_sdcli(
        "--url", fake_webui.url, "interactive", "-p", "draft", "-o", str(tmp_path), input=lines
    )
    assert r.returncode == 0, r.stderr
    paths = r.stdout.splitlines()
    assert len(paths) == 4 and all(Path(p).is_file() for p in paths)
    cat, dog, bird, again = _bodies(fake_webui)
    assert cat["prompt"] == "a cat" and cat["steps"] != 27  # draft alone
    # chibi added after draft: its settings win
    assert dog["prompt"] == "a dog"
    assert (dog["steps"], dog["sampler_name"], dog["scheduler"]) == (27, "DPM++ 2M", "Karras")
    assert dog["override_settings"]["CLIP_stop_at_last_layers"] == 2
    assert dog["negative_prompt"].startswith("EasyNegative")
    assert bird["seed"] == 42 and again["seed"] == 42 and again["prompt"] == "a bird"


def test_piped_vary_sends_a_new_seed_and_an_unknown_command_stops_the_run(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    lines = "/seed 7\na cat\n/vary\n/sed 3\na dog\n"
    r = run_sdcli("--url", fake_webui.url, "i", "-o", str(tmp_path), input=lines)
    assert r.returncode == 2
    assert "sdcli: error: unknown command /sed (did you mean 'seed'?)" in r.stderr
    first, vary = _bodies(fake_webui)  # "a dog" never ran
    assert first["seed"] == 7 and vary["seed"] == -1 and vary["prompt"] == "a cat"


def test_again_with_nothing_to_repeat_is_a_usage_error(fake_webui: FakeWebUI) -> None:
    r = run_sdcli("--url", fake_webui.url, "interactive", input="/again\n")
    assert r.returncode == 2
    assert "/again repeats the last prompt: there is none yet" in r.stderr
    assert _bodies(fake_webui) == []


def test_show_names_an_image_of_this_session(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    lines = "a cat\na dog\n/show 1\n/show 3\n"
    r = run_sdcli("--url", fake_webui.url, "interactive", "-o", str(tmp_path), input=lines)
    first = r.stdout.splitlines()[0]
    assert f"1: {first} (pictures are drawn only on a terminal that can)" in r.stderr
    assert r.returncode == 2 and "/show takes 1 to 2, not 3" in r.stderr


def test_save_preset_writes_the_current_settings(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    lines = "/preset chibi\n/steps 9\n/set enable_hr=true\n/save-preset mine\n"
    r = run_sdcli("--url", fake_webui.url, "interactive", input=lines)
    assert r.returncode == 0, r.stderr
    shown = run_sdcli("presets", "show", "mine", "--toml")
    assert "steps = 9" in shown.stdout and 'sampler = "DPM++ 2M"' in shown.stdout
    assert "enable_hr = true" in shown.stdout


# --- the line editor, driven through prompt_toolkit's pipe input -------------------------------


@pytest.fixture
def engine(fake_webui: FakeWebUI, tmp_path: Path) -> Iterator[Engine]:
    state = AppState(url=fake_webui.url)
    session = Session.start([], {}, [], RunOptions(output_dir=tmp_path), labels={})
    yield Engine(state, session, terminal=True, progress=False)
    state.close()


class EditorScreen:
    """What prompt_toolkit draws, fed to a terminal emulator (pyte): a stand-in for stderr."""

    encoding = "utf-8"

    def __init__(self, columns: int = 100, rows: int = 24) -> None:
        self.screen = pyte.Screen(columns, rows)
        self._stream = pyte.Stream(self.screen)
        self._lock = threading.Lock()
        self.reply: Callable[[str], None] = lambda keys: None

    def write(self, data: str) -> int:
        with self._lock:
            self._stream.feed(data)
            for _ in range(data.count("\x1b[6n")):  # where is the cursor? as a terminal answers
                cursor = self.screen.cursor
                self.reply(f"\x1b[{cursor.y + 1};{cursor.x + 1}R")
        return len(data)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True

    def text(self) -> str:
        with self._lock:
            return "\n".join(row.rstrip() for row in self.screen.display)

    def output(self) -> Vt100_Output:
        size = Size(rows=self.screen.lines, columns=self.screen.columns)
        return Vt100_Output(self, lambda: size, term="xterm")  # type: ignore[arg-type]


def _type(engine: Engine, *steps: tuple[str, str | None]) -> EditorScreen:
    """Run the line editor in a thread and type each step's keys, then wait until the screen
    shows the step's text (None: go on at once). Ends once the editor returns."""
    screen = EditorScreen()
    failed: list[BaseException] = []

    def editor() -> None:
        try:
            run_terminal(engine, input=pipe, output=screen.output())
        except BaseException as exc:
            failed.append(exc)

    with create_pipe_input() as pipe:
        screen.reply = pipe.send_text
        thread = threading.Thread(target=editor, daemon=True)
        thread.start()
        for keys, shown in steps:
            pipe.send_text(keys)
            if shown is not None:
                _wait(_shown_or_ended(screen, shown, thread), screen)
        thread.join(timeout=60)  # a safety net against a hung test
    assert not thread.is_alive(), screen.text()
    if failed:
        raise failed[0]
    return screen


def _shown_or_ended(
    screen: EditorScreen, text: str, thread: threading.Thread
) -> Callable[[], bool]:
    return lambda: text in screen.text() or not thread.is_alive()


def _wait(done: Callable[[], bool], screen: EditorScreen) -> None:
    deadline = time.monotonic() + 60  # a safety net, not a timing assertion
    while not done():
        assert time.monotonic() < deadline, screen.text()
        time.sleep(0.01)


def test_editor_generates_and_completes_commands(
    engine: Engine, fake_webui: FakeWebUI, capsys: pytest.CaptureFixture[str]
) -> None:
    _type(
        engine,
        ("/pre", "/preset  add a preset"),
        ("\t", "sdcli> /preset"),
        ("chibi\r", None),
        ("a cat\r", None),
        ("\x04", None),
    )
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1 and Path(out.strip()).is_file()
    (body,) = _bodies(fake_webui)
    assert body["prompt"] == "a cat" and body["steps"] == 27  # /pre<Tab> became /preset


def test_editor_completes_a_model_name_for_model(engine: Engine, fake_webui: FakeWebUI) -> None:
    _type(
        engine,
        ("/model qteami", "qteamixQ_gamma"),
        ("\t", "sdcli> /model qteamixQ_gamma"),
        ("\r", None),
        ("\x04", None),
    )
    assert fake_webui.current_model.startswith("qteamixQ_gamma")


def test_editor_toolbar_says_when_someone_else_keeps_the_server_busy(
    engine: Engine, fake_webui: FakeWebUI
) -> None:
    import requests

    fake_webui.pause_at_step(1)
    other = threading.Thread(
        target=requests.post,
        args=(fake_webui.url + TXT2IMG,),
        kwargs={"json": {"prompt": "another user's job", "steps": 5}, "timeout": 60},
    )
    other.start()
    try:
        assert fake_webui.wait_paused(timeout=60)
        _type(engine, ("", "busy (another job)"), ("\x04", None))
    finally:
        fake_webui.resume()
        other.join(timeout=60)
    assert fake_webui.requests_to("/sdapi/v1/interrupt") == []  # somebody else's: left alone


def test_editor_says_an_error_and_goes_on(
    engine: Engine, fake_webui: FakeWebUI, capsys: pytest.CaptureFixture[str]
) -> None:
    _type(engine, *[(keys, None) for keys in ("/steps lots\r", "/seed 5\r", "a cat\r", "/quit\r")])
    err = capsys.readouterr().err
    assert "sdcli: error: /steps takes a number, not 'lots'" in err
    (body,) = _bodies(fake_webui)
    assert body["seed"] == 5


# --- on a real pseudo-terminal, through a terminal emulator ------------------------------------


def _interactive(fake: FakeWebUI, out: Path, *args: str) -> Terminal:
    return Terminal("--url", fake.url, "interactive", "-o", str(out), *args, columns=100)


def _at_prompt(term: Terminal) -> bool:
    """An empty prompt waits, the cursor on it (a line typed before would be read too early)."""
    screen = term.screen
    return screen.display[screen.cursor.y].rstrip() == "sdcli>" and screen.cursor.x == 7


def test_terminal_prompt_generates_completes_and_ctrl_d_exits_0(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    term = _interactive(fake_webui, tmp_path, "-p", "draft")
    try:
        term.wait_for(_at_prompt)
        term.wait_for(lambda t: "presets: draft" in t.text())  # the toolbar
        term.send("/pre\t")
        term.wait_for("sdcli> /preset")
        term.send("chibi\r")
        term.wait_for(lambda t: "presets: draft, chibi" in t.text())
        term.wait_for(_at_prompt)
        term.send("a cat in a hat\r")
        term.wait_for("saved 1 image")
        term.wait_for(_at_prompt)
        term.ctrl_d()
        assert term.wait_exit() == 0
    finally:
        term.close()
    (body,) = _bodies(fake_webui)
    assert body["prompt"] == "a cat in a hat" and body["steps"] == 27
    assert len(list(tmp_path.iterdir())) == 1
    assert "Traceback" not in term.text()


def test_terminal_ctrl_c_interrupts_the_server_job_and_returns_to_the_prompt(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    fake_webui.pause_at_step(2)
    term = _interactive(fake_webui, tmp_path, "--steps", "20")
    try:
        term.wait_for(_at_prompt)
        term.send("a slow cat\r")
        assert fake_webui.wait_paused(timeout=60)
        term.wait_for("step 2/20")  # the live bar, as a person sees it before pressing Ctrl-C
        term.ctrl_c()
        assert fake_webui.wait_for_request("/sdapi/v1/interrupt", timeout=60)
        fake_webui.resume()
        term.wait_for("back to the prompt")
        term.wait_for(_at_prompt)
        term.send("/seed 3\r")  # still alive: a command works
        term.wait_for("seed: 3")
        term.wait_for(_at_prompt)
        term.ctrl_d()
        assert term.wait_exit() == 0
    finally:
        fake_webui.resume()
        term.close()
    assert len(_bodies(fake_webui)) == 1
    kept = list(tmp_path.iterdir())
    assert len(kept) == 1  # the image the interrupted job returned is kept


def test_terminal_input_history_survives_a_restart(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    first = _interactive(fake_webui, tmp_path)
    try:
        first.wait_for(_at_prompt)
        first.send("/steps 11\r")
        first.wait_for("11 steps")  # the toolbar
        first.wait_for(_at_prompt)
        first.send("/quit\r")
        assert first.wait_exit() == 0
    finally:
        first.close()
    second = _interactive(fake_webui, tmp_path)
    try:
        second.wait_for(_at_prompt)
        second.send("\x1b[A")  # Up
        second.wait_for("sdcli> /quit")
        second.send("\x1b[A")
        second.wait_for("sdcli> /steps 11")
        second.send("\x03")  # Ctrl-C at the prompt clears the line: the next one stands alone
        second.send("/seed 9\r")
        second.wait_for("seed: 9")
        second.wait_for(_at_prompt)
        second.send("\x12steps")  # Ctrl-R searches the history
        second.wait_for("(reverse-i-search)`steps': /steps 11")
        second.send("\r")  # the search ends on the line found
        second.wait_for(lambda t: "reverse-i-search" not in t.text())
        second.send("\r")
        second.wait_for("11 steps")  # and it ran
        second.wait_for(_at_prompt)
        second.ctrl_d()
        assert second.wait_exit() == 0
    finally:
        second.close()


def test_piped_prompts_are_recorded_and_history_and_rerun_read_them(
    fake_webui: FakeWebUI, isolated_sdcli_home: Path, tmp_path: Path
) -> None:
    lines = "/seed 11\na cat\na dog\n/history cat\n/rerun 1\n"
    r = run_sdcli("--url", fake_webui.url, "interactive", "-o", str(tmp_path), input=lines)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    # two paths, one history row (a pipe gets it tab-separated), then the re-run's path
    assert len(out) == 4 and Path(out[0]).is_file() and Path(out[3]).is_file()
    row = out[2].split("\t")
    assert (row[0], row[2], row[4], row[-1]) == ("1", "ok", "11", "a cat")
    cat, dog, again = (
        {k: v for k, v in b.items() if k != "force_task_id"} for b in _bodies(fake_webui)
    )
    assert again == cat and dog["prompt"] == "a dog"  # the recorded request, exactly
    listed = run_sdcli("history", "--json")
    gens = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(g["prompt"], g["rerun_of"]) for g in reversed(gens)] == [
        ("a cat", None),
        ("a dog", None),
        ("a cat", 1),
    ]


def test_rerun_of_an_unknown_generation_is_a_usage_error(
    fake_webui: FakeWebUI, isolated_sdcli_home: Path
) -> None:
    r = run_sdcli("--url", fake_webui.url, "interactive", input="/rerun 9\n")
    assert r.returncode == 2 and "no generation 9 in the history" in r.stderr
    r = run_sdcli("--url", fake_webui.url, "interactive", input="/rerun x\n")
    assert r.returncode == 2 and "/rerun ID" in r.stderr
    assert fake_webui.requests_to(TXT2IMG) == []


def test_each_prompt_starts_its_history_writer_while_its_request_is_on_its_way(
    engine: Engine, fake_webui: FakeWebUI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One Runner serves the whole session, and each prompt has a history of its own: every
    prompt's gets its head start (the writer running) while the server still holds the request,
    not only at its first image."""
    from sdcli.history.recorder import HistoryRecorder

    original = HistoryRecorder.prepare
    prepared = threading.Event()
    seen: list[tuple[bool, bool]] = []  # (the request still held, the writer running)

    def prepare(recorder: HistoryRecorder) -> None:
        original(recorder)
        thread = recorder._thread
        seen.append((fake_webui.wait_paused(0), thread is not None and thread.is_alive()))
        prepared.set()

    def hold_until_prepared() -> None:
        if fake_webui.wait_paused(30):
            prepared.wait(60)  # a safety net: without the head start, the request goes on after
        fake_webui.resume()

    monkeypatch.setattr(HistoryRecorder, "prepare", prepare)
    for prompt in ("one", "two", "three"):
        prepared.clear()
        fake_webui.pause_at_step(1)
        holder = threading.Thread(target=hold_until_prepared)
        holder.start()
        engine.generate(prompt)
        holder.join()
    assert seen == [(True, True)] * 3
    assert len(engine.session.images) == 3

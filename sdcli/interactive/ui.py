"""The line editor (prompt_toolkit): completion, a bottom toolbar, input history, and the keys.

A prompt is read with prompt_toolkit; the line is then carried out by the Engine with the
terminal back in its normal mode, so the live bar is the same as `generate`'s and Ctrl-C is a
real SIGINT: the core interrupts the server's job, keeps what it returned, and we come back here.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any

from sdcli.cli import render
from sdcli.errors import SdcliError

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import Completer
    from prompt_toolkit.history import History
    from prompt_toolkit.input import Input
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
    from prompt_toolkit.output import Output

    from sdcli.interactive.engine import Engine

BUSY_POLL_SECONDS = 3.0  # the toolbar's "busy" at most this often, and only at the prompt
HISTORY_FILE = "interactive-history"
PROMPT = "sdcli> "


class BusyWatch:
    """Whether the server runs someone else's job: polled while the prompt waits, never while
    our own job runs (the engine holds `lock` while it works)."""

    def __init__(self, engine: Engine, redraw: Any) -> None:
        self.engine = engine
        self.redraw = redraw
        self.lock = threading.Lock()
        self.at_prompt = threading.Event()
        self.stopped = threading.Event()
        self.busy: bool | None = None  # None: not known (yet, or the server did not answer)
        self._thread = threading.Thread(target=self._loop, name="sdcli-busy", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.at_prompt.set()  # wake it up to see it must stop

    def _loop(self) -> None:
        while not self.stopped.is_set():
            self.at_prompt.wait()
            with self.lock:
                if self.stopped.is_set() or not self.at_prompt.is_set():
                    continue
                try:
                    busy: bool | None = not self.engine.state.client.progress().idle
                except SdcliError:
                    busy = None
            if busy != self.busy:
                self.busy = busy
                self.redraw()
            self.stopped.wait(BUSY_POLL_SECONDS)


def toolbar_text(engine: Engine, busy: bool | None) -> str:
    """server · model · presets · size · steps · sampler · seed · busy."""
    summary = engine.summary()
    server = "busy (another job)" if busy else "idle" if busy is False else "?"
    parts = [
        engine.state.settings.url.partition("://")[2] or engine.state.settings.url,
        _without_hash(summary.get("model")) or "model ?",
        "presets: " + (", ".join(engine.session.presets) or "none"),
        summary.get("size", ""),
        f"{summary['steps']} steps" if summary.get("steps") else "",
        summary.get("sampler", ""),
        f"seed {engine.session.seed_mode}",
        server,
    ]
    return " │ ".join(p for p in parts if p)


def _without_hash(title: str | None) -> str:
    """ "anime/x.safetensors [cbfba64e66]" -> "anime/x": the toolbar has little room."""
    if not title:
        return ""
    name, bracket, rest = title.rpartition(" [")
    name = name if bracket and rest.endswith("]") else title
    stem, dot, ext = name.rpartition(".")
    return stem if dot and ext.lower() in _MODEL_EXTENSIONS else name


_MODEL_EXTENSIONS = {"safetensors", "ckpt", "pt", "pth", "bin", "gguf"}


def history_for(path_dir: Any) -> History:
    """The input history file in the state dir; in memory if that cannot be written."""
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    try:
        path_dir.mkdir(parents=True, exist_ok=True)
        path = path_dir / HISTORY_FILE
        path.touch(exist_ok=True)
    except OSError as exc:
        render.warn(f"input history not kept: {exc.strerror or exc}")
        return InMemoryHistory()
    return FileHistory(str(path))


def make_session(
    engine: Engine, *, input: Input | None = None, output: Output | None = None
) -> tuple[PromptSession[str], BusyWatch]:
    """The prompt_toolkit session (tests pass a pipe input and a dummy output)."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.output import create_output

    from sdcli.config import state_dir
    from sdcli.interactive.completion import InteractiveCompleter

    def preset_names() -> list[str]:
        from sdcli.presets import list_presets

        return [p.name for p in list_presets()]

    holder: dict[str, PromptSession[str]] = {}

    def redraw() -> None:
        session = holder.get("session")
        if session is not None and session.app.is_running:
            session.app.invalidate()

    watch = BusyWatch(engine, redraw)
    completer = InteractiveCompleter(
        lambda: engine.lists, preset_names, lambda: list(engine.session.presets)
    )
    session: PromptSession[str] = PromptSession(
        PROMPT,
        history=history_for(state_dir()),
        completer=completer,
        complete_while_typing=True,
        key_bindings=_tab_completes_at_once(completer),
        bottom_toolbar=lambda: toolbar_text(engine, watch.busy),
        input=input,
        output=output if output is not None else create_output(stdout=sys.stderr),
    )
    holder["session"] = session
    return session, watch


def _tab_completes_at_once(completer: Completer) -> KeyBindings:
    """Tab inserts the only completion at once, even typed before the menu came up ("/pre" Tab
    fast): prompt_toolkit's own Tab would wait for the completion already running, and then
    only show the menu."""
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.key_binding import KeyBindings

    bindings = KeyBindings()

    @bindings.add("tab")
    def _complete(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        if buffer.complete_state is not None:
            buffer.complete_next()
            return
        found = list(
            completer.get_completions(buffer.document, CompleteEvent(completion_requested=True))
        )
        if len(found) == 1:
            buffer.apply_completion(found[0])
        else:
            buffer.start_completion(insert_common_part=True)

    return bindings


def run_terminal(
    engine: Engine, *, input: Input | None = None, output: Output | None = None
) -> None:
    """Read and carry out lines until /quit or Ctrl-D; Ctrl-C at the prompt clears the line."""
    render.note("reading the server's lists… (/help lists the commands, Ctrl-D leaves)")
    engine.refresh()
    lists = engine.lists
    if lists is not None and lists.unreachable:
        render.warn(f"cannot reach {engine.state.settings.url}: no completion of its names")
    session, watch = make_session(engine, input=input, output=output)
    watch.start()
    try:
        while True:
            watch.at_prompt.set()
            try:
                line = session.prompt()
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt: the line is gone, the session goes on
            except EOFError:
                return  # Ctrl-D
            finally:
                watch.at_prompt.clear()
            with watch.lock:  # no busy poll while our own work runs
                try:
                    if not engine.handle(line):
                        return
                except SdcliError as exc:
                    render.failure(exc)
                except KeyboardInterrupt:
                    render.warn("interrupted; back to the prompt")
    finally:
        watch.stop()

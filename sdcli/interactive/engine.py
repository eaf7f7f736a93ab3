"""Carries out what is typed in interactive mode: prompts run through the same plan/run/save core
as `generate`, `/` commands change the Session. No prompt_toolkit here: the line-by-line mode
(stdin not a terminal) and the line editor (`ui`) both drive an Engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sdcli.cli import render
from sdcli.errors import Interrupted, SdcliError, UsageError
from sdcli.interactive.commands import COMMANDS, Command, Prompt, parse_line
from sdcli.interactive.session import RANDOM_SEED, Session

if TYPE_CHECKING:
    from sdcli.cli.pictures import Mode
    from sdcli.cli.state import AppState
    from sdcli.config import Settings
    from sdcli.events import Event
    from sdcli.interactive.lists import ServerLists

HISTORY_ROWS = 20  # `/history`: the newest this many


class Relay:
    """The one sink the session's Runner keeps; each prompt points it at that prompt's sinks."""

    def __init__(self) -> None:
        self.target: Callable[[Event], None] | None = None

    def __call__(self, event: Event) -> None:
        if self.target is not None:
            self.target(event)

    def prepare(self) -> None:
        """The prompt's request is on its way: its sinks get their head start (the history's
        writer starts then, not at the first image)."""
        from sdcli.events import prepare_sink

        if self.target is not None:
            prepare_sink(self.target)


class Engine:
    """One interactive session over one client: `handle(line)` for each line typed."""

    def __init__(
        self, state: AppState, session: Session, *, terminal: bool, progress: bool
    ) -> None:
        self.state = state
        self.session = session
        self.terminal = terminal  # the line editor: a Ctrl-C or an error returns to the prompt
        self.progress = progress  # a live bar on stderr
        self.pictures: Mode | None = None  # thumbnails under saved paths, `/show` (a terminal)
        self.preview = False  # the server's live preview above the bar
        self.thumbnails = True  # one under each saved path (when pictures are drawn)
        self.lists: ServerLists | None = None
        self.model: str | None = None  # the server's checkpoint, for the toolbar
        self._summary: dict[str, Any] | None = None
        self._relay = Relay()
        self._runner: Any = None

    @property
    def settings(self) -> Settings:
        """The settings, without the default preset: the session's own list says which apply
        (it started with the default one; a `/preset -NAME` must not bring it back)."""
        return replace(self.state.settings, default_preset=None)

    # --- dispatch ------------------------------------------------------------------------

    def handle(self, line: str) -> bool:
        """Carry out one line; False when the session should end (/quit)."""
        parsed = parse_line(line)
        if parsed is None:
            return True
        if isinstance(parsed, Prompt):
            self.generate(parsed.text)
            return True
        if parsed.name == "quit":
            return False
        handler = getattr(self, "cmd_" + parsed.name.replace("-", "_"))
        self._summary = None  # the toolbar reads the settings again
        handler(parsed)
        return True

    def summary(self) -> dict[str, Any]:
        """What the toolbar shows of the settings: model, size, steps, sampler (cached)."""
        if self._summary is None:
            from sdcli.plan import plan_job

            try:
                values = dict(plan_job(self.session.request("{prompt}"), self.settings).values)
            except SdcliError:
                values = {}
            width, height = values.get("width"), values.get("height")
            sampler = " ".join(str(values[k]) for k in ("sampler", "scheduler") if values.get(k))
            self._summary = {
                "model": values.get("model") or self.model,
                "size": f"{width}x{height}" if width and height else "",
                "steps": values.get("steps"),
                "sampler": sampler,
            }
        return self._summary

    # --- generating ----------------------------------------------------------------------

    def generate(self, prompt: str, *, seed: int | None = None) -> None:
        """One prompt with the session's settings."""
        self._generate(self.session.request(prompt, seed=seed))

    def _generate(self, request: Any, *, rerun_of: int | None = None) -> None:
        """One request through plan_job/run_job, with the terminal's sinks, the history's and
        our own."""
        from sdcli.cli.generate_cmd import history_recorder
        from sdcli.cli.reporter import CliReporter, LiveReporter
        from sdcli.events import ImageSaved, Sink, fanout
        from sdcli.heap import KeepHeap
        from sdcli.plan import plan_job
        from sdcli.run import Runner, run_job

        job = plan_job(request, self.settings)
        recorded = request.recorded
        prompt = recorded.body.get("prompt", "") if recorded is not None else request.words[0]
        history = history_recorder(self.state, job, rerun_of)
        reporter = (LiveReporter if self.progress else CliReporter)(json_lines=False, quiet=False)
        saved: list[Any] = []

        def record(event: Event) -> None:
            if isinstance(event, ImageSaved):
                saved.append(event.image)

        if self._runner is None:  # one Runner: the server's names are read once a session
            self._runner = Runner(
                self.state.client,
                self._relay,
                progress=self.progress,
                preview=self.progress and self.preview,
            )
        sinks: list[Sink] = [KeepHeap(), reporter, record]
        if self.pictures is not None and self.thumbnails:
            from sdcli.cli.thumbnails import Thumbnails

            sinks.append(Thumbnails(self.pictures))  # after the reporter: the path comes first
        if history is not None:
            sinks.append(history)
        self._relay.target = fanout(*sinks)
        ended: BaseException | None = None
        try:
            run_job(job, self._runner)
        except Interrupted as exc:
            ended = exc
            if not self.terminal:
                raise
            render.warn(f"{exc.message}; back to the prompt")
        except BaseException as exc:
            ended = exc
            raise
        finally:
            self._relay.target = None
            reporter.close()
            problem = history.close(ended) if history is not None else None
            if problem:
                render.warn(problem)
            self.session.images += saved
            self.session.last_prompt = prompt
            seeds = [image.seed for image in saved if image.seed is not None]
            if seeds:
                self.session.last_seed = seeds[0]

    # --- commands ------------------------------------------------------------------------

    def cmd_preset(self, command: Command) -> None:
        names = command.arg.split()
        if not names:
            raise UsageError("/preset NAME adds a preset, /preset -NAME removes it")
        for name in names:
            if name.startswith("-"):
                self.session.remove_preset(name[1:])
            else:
                self.session.add_preset(name)
        self._say(f"presets: {', '.join(self.session.presets) or 'none'}")

    def cmd_set(self, command: Command) -> None:
        if "=" not in command.arg:
            raise UsageError("/set KEY=VALUE (VALUE as JSON, else text); /set KEY= removes KEY")
        self.session.set_item(command.arg)

    def cmd_neg(self, command: Command) -> None:
        self.session.set_negative(command.arg)

    def cmd_seed(self, command: Command) -> None:
        if not command.arg:
            raise UsageError(f"/seed N or /seed random (now: {self.session.seed_mode})")
        self.session.set_seed(command.arg)
        self._say(f"seed: {self.session.seed_mode}")

    def cmd_size(self, command: Command) -> None:
        self.session.set_size(command.arg)

    def cmd_steps(self, command: Command) -> None:
        self.session.set_steps(command.arg)

    def cmd_model(self, command: Command) -> None:
        from sdcli.cli.models_cmd import switch_checkpoint

        if not command.arg:
            raise UsageError("/model NAME switches the server's checkpoint")
        self.model = switch_checkpoint(self.state.client, command.arg)
        self._summary = None
        self._say(f"model: {self.model}")

    def cmd_again(self, command: Command) -> None:
        prompt = self._last_prompt("again")
        seed = self.session.last_seed
        self.generate(prompt, seed=seed if seed is not None else None)

    def cmd_vary(self, command: Command) -> None:
        self.generate(self._last_prompt("vary"), seed=RANDOM_SEED)

    def _last_prompt(self, name: str) -> str:
        if self.session.last_prompt is None:
            raise UsageError(f"/{name} repeats the last prompt: there is none yet")
        return self.session.last_prompt

    def cmd_show(self, command: Command) -> None:
        from sdcli.cli.show_cmd import show_images

        images = self.session.images
        if not images:
            raise UsageError("/show shows an image of this session: none yet")
        index = _number(command.arg, "/show N", default=len(images))
        if not 1 <= index <= len(images):
            raise UsageError(f"/show takes 1 to {len(images)}, not {index}")
        path = images[index - 1].path
        if self.pictures is None:
            render.note(f"{index}: {path} (pictures are drawn only on a terminal that can)")
            return
        show_images([path], self.state.settings.images, width=None, height=None)

    def cmd_history(self, command: Command) -> None:
        """The newest generations of the history (all front ends'), matching QUERY if given."""
        from contextlib import closing

        from sdcli.cli.history_cmd import HISTORY_COLUMNS, summary_row
        from sdcli.history import store

        path = self.state.settings.history_path
        conn = store.open_existing(path) if path is not None else None
        if conn is None:
            render.note("nothing recorded yet")
            return
        with closing(conn):
            rows = store.search(conn, store.Filters(query=command.arg, limit=HISTORY_ROWS))
        if not rows:
            render.note("no generation matches")
            return
        render.table(None, HISTORY_COLUMNS, [summary_row(row) for row in rows], cut="PROMPT")

    def cmd_rerun(self, command: Command) -> None:
        """The recorded request of generation ID, as it was (its own prompt, settings and seed;
        the session's settings are not added), saved and recorded like any prompt here."""
        from sdcli.history.replay import load
        from sdcli.plan import JobRequest

        if not command.arg.isdigit():
            raise UsageError("/rerun ID re-runs a generation of the history (see /history)")
        path = self.state.settings.history_path
        if path is None:
            raise UsageError("the history is turned off")
        gen_id = int(command.arg)
        options = self.session.options
        request = JobRequest(
            recorded=load(path, gen_id),
            output_dir=options.output_dir,
            name_template=options.name_template,
            overwrite=options.overwrite,
            retries=options.retries,
        )
        self._generate(request, rerun_of=gen_id)

    def cmd_save_preset(self, command: Command) -> None:
        from sdcli.presets import save_preset

        if not command.arg or " " in command.arg:
            raise UsageError("/save-preset NAME writes the current settings as NAME.toml")
        path = save_preset(command.arg, self.session.preset_values())
        self._say(f"saved preset {command.arg}: {path}")

    def cmd_settings(self, command: Command) -> None:
        render.table(None, ["setting", "value"], self.settings_rows())

    def settings_rows(self) -> list[list[str]]:
        """What the next prompt sends: presets, every merged value, then the --set items."""
        from sdcli.plan import plan_job

        job = plan_job(self.session.request("{prompt}"), self.settings)
        rows = [["presets", ", ".join(self.session.presets) or "none"]]
        values = dict(job.values)
        values.setdefault("seed", RANDOM_SEED)
        rows += [[key, _shown(value)] for key, value in values.items() if key != "params"]
        for key, value in dict(values.get("params") or {}).items():
            rows.append([f"params.{key}", _shown(value)])
        rows += [[f"--set {key}", _shown(value)] for key, value in job.sets.items()]
        return rows

    def cmd_info(self, command: Command) -> None:
        from sdcli.cli.info_cmd import show_server

        show_server(self.state, json_out=False)

    def cmd_interrupt(self, command: Command) -> None:
        from sdcli.cli.jobs_cmd import stop_server_job

        stop_server_job(self.state, "interrupt")

    def cmd_refresh(self, command: Command) -> None:
        self.refresh()
        lists = self.lists
        assert lists is not None
        self._say(
            f"{len(lists.models)} models, {len(lists.samplers)} samplers, "
            f"{len(lists.loras)} LoRAs, {len(lists.embeddings)} embeddings, "
            f"{len(lists.styles)} styles, {len(lists.vaes)} VAEs"
        )

    def refresh(self) -> None:
        """Read the server's names (completion) and its checkpoint (toolbar)."""
        from sdcli.interactive.lists import ServerLists
        from sdcli.names.lookup import checkpoint_option

        self.lists = ServerLists.fetch(self.state.client)
        if not self.lists.unreachable:
            try:
                self.model = checkpoint_option(self.state.client.get_options())
            except SdcliError:
                self.model = None

    def cmd_help(self, command: Command) -> None:
        rows = [[f"/{name} {spec.args}".rstrip(), spec.help] for name, spec in COMMANDS.items()]
        rows.append(["TEXT", "generate an image from TEXT (//TEXT: a prompt starting with /)"])
        render.table(None, ["command", "what it does"], rows)

    def _say(self, text: str) -> None:
        """A confirmation, only where someone is watching (a script has its exit code)."""
        if self.terminal:
            render.note(text)


def _number(text: str, usage: str, *, default: int) -> int:
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{usage} takes a number, not {text!r}") from None


def _shown(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

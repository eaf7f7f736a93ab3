"""The Typer app: global options, command registration, and the one place errors become exits."""

from __future__ import annotations

import copy
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Annotated, Any

import typer

from sdcli import __version__
from sdcli.cli import commands, render
from sdcli.cli.helpformat import HelpGroup
from sdcli.cli.state import AppState
from sdcli.errors import ExitCode, SdcliError, Terminated, interruption, signal_exit_code

EXIT_CODES_HELP = (
    "Exit codes: 0 ok · 1 the server failed or refused the request · 2 bad usage or bad local "
    "input (preset, file, value, unknown model/sampler) · 3 cannot reach the server (refused, "
    "DNS, timeout, connection lost) · 4 authentication failed · 130 interrupted (Ctrl-C; "
    "143 SIGTERM, 129 SIGHUP) · 141 stdout closed early (e.g. | head -1)."
)


# The commands that run units and can spread them over several servers (--url repeated).
MANY_SERVER_COMMANDS = ("generate", "img2img", "rerun")


class SdcliGroup(HelpGroup):
    """Turns every failure (our errors, Ctrl-C, even a bug of ours) into one line on stderr and a
    documented exit code. A reader that went away is the entry point's (sdcli.__main__)."""

    def _main_shell_completion(
        self, ctx_args: Any, prog_name: str, complete_var: str | None = None
    ) -> None:
        """Bash completions escaped: typer has its completion classes loaded by now (and it
        registers its own while building the app), so ours replaces its bash one here, on
        every run, at the cost of one subclass; typer itself tells a Tab press from a command."""
        from sdcli.cli.completion import quote_bash_completions

        quote_bash_completions()
        super()._main_shell_completion(ctx_args, prog_name, complete_var)

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        """The global options are parsed here, before invoke(): their usage errors too."""
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except Exception as exc:
            if _is_usage_error(exc):
                _report_usage_error(exc)
                raise typer.Exit(int(ExitCode.USAGE)) from None
            raise

    def invoke(self, ctx: Any) -> Any:
        words = [*getattr(ctx, "_protected_args", []), *ctx.args]  # the command, then its args
        try:
            return super().invoke(ctx)
        except SdcliError as exc:
            if _debug(ctx):
                _print_traceback()  # the details, but still the documented exit code
            render.failure(exc)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP
            signum, by = interruption(exc)
            if _debug(ctx):
                if signum == signal.SIGINT:
                    raise
                _print_traceback()
            render.error(f"interrupted{by}")
            raise typer.Exit(int(signal_exit_code(signum))) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if _is_usage_error(exc):  # a command's flags, or an unknown command
                _report_usage_error(exc, _command_path_of(self, ctx, words))
                raise typer.Exit(int(ExitCode.USAGE)) from None
            if _is_click_error(exc):
                raise
            # A bug of ours must still end in one line, not a traceback, for unattended scripts.
            debug = _debug(ctx)
            if debug:
                _print_traceback()
            more = "" if debug else ": run again with --debug for the traceback"
            render.error(f"unexpected {type(exc).__name__}: {exc} (a bug in sdcli{more})")
            raise typer.Exit(int(ExitCode.SERVER)) from None


def _print_traceback() -> None:
    """--debug's traceback; its messages may quote the server, so each line is made printable."""
    for line in traceback.format_exc().splitlines():
        sys.stderr.write(render.printable(line) + "\n")
    sys.stderr.flush()


def _command_path_of(group: Any, ctx: Any, words: list[str]) -> str:
    """`sdcli presets new`: the command the words name, as far as they name one."""
    path, command = [ctx.command_path], group
    for word in words:
        if word.startswith("-") or not hasattr(command, "get_command"):
            break
        command = command.get_command(ctx, word)
        if command is None:
            break
        path.append(word)
    return " ".join(path)


def _is_click_error(exc: Exception) -> bool:
    """Errors of the argument parser itself."""
    return hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int)


def _is_usage_error(exc: Exception) -> bool:
    """A bad option, value, argument or command; not the help a bare group shows instead."""
    return (
        _is_click_error(exc)
        and hasattr(exc, "format_message")
        and type(exc).__name__ != "NoArgsIsHelpError"
    )


def _report_usage_error(exc: Any, fallback: str = "sdcli") -> None:
    """The parser's complaint in sdcli's one error style (not a boxed panel), and where to look:
    `sdcli: error: …` then `see 'sdcli generate --help'`."""
    message = " ".join(str(exc.format_message()).split()).rstrip(".")
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    ctx = getattr(exc, "ctx", None)  # the parser leaves it out for an option missing its value
    path = getattr(ctx, "command_path", None) or fallback
    render.error(message)
    render.note(f"see '{path} --help'")


def _debug(ctx: Any) -> bool:
    state = ctx.obj
    if isinstance(state, AppState) and state.debug:
        return True
    from sdcli.config import debug_requested

    return debug_requested()


# The global options; commands are added per run (_app_for), and `app` (below) has them all.
root = typer.Typer(
    name="sdcli",
    cls=SdcliGroup,
    help=(
        "A fast, scriptable client for the Stable Diffusion web UI API "
        "(AUTOMATIC1111, Forge, reForge, SD.Next).\n\n"
        "Results (saved paths, JSON lines) go to stdout; progress and messages to stderr.\n\n"
        "[bold]Examples[/]\n\n"
        '  sdcli generate --preset chibi "1boy, solo, chibi"\n'
        "  sdcli set-model qteamixQ_gamma\n"
        '  printf "a cat\\na dog\\n" | sdcli generate -p draft -\n'
        "  sdcli info out/*.png"
    ),
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold --auth credentials
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)


def _version_callback(value: bool) -> None:
    if value:
        render.result(f"sdcli {__version__}")
        raise typer.Exit()


@root.callback()
def main_callback(
    ctx: typer.Context,
    url: Annotated[
        list[str] | None,
        typer.Option(
            "--url",
            metavar="URL",
            help="Web UI address, or the NAME of a \\[servers.NAME] table of the config file "
            "(env SDCLI_URL) \\[default: http://127.0.0.1:7860]. generate and img2img take it "
            "several times (or `all` for every table) to spread a run over several servers.",
        ),
    ] = None,
    auth: Annotated[
        str | None,
        typer.Option(
            "--auth",
            metavar="USER:PASS",
            help="USER:PASS for a web UI started with --api-auth; never shown. Prefer env "
            "SDCLI_AUTH or the config file: arguments are visible to all users in ps.",
        ),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",  # a number; read as text so that "none" works too
            help=(
                "Seconds to wait for a whole answer: a generation, a model load, a list "
                "(env SDCLI_TIMEOUT) \\[default: none = no limit for generations and loads]."
            ),
        ),
    ] = None,
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show tracebacks and HTTP details (env SDCLI_DEBUG=1)."),
    ] = False,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache",
            help="Ask the server for its lists instead of using the ones cached for a few "
            "minutes (env SDCLI_CACHE_TTL=0 turns the cache off).",
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    # Environment variables and the config file are resolved in sdcli.config, in one place.
    urls = list(url or [])
    if len(urls) > 1 and ctx.invoked_subcommand not in MANY_SERVER_COMMANDS:
        from sdcli.errors import UsageError

        command = f"sdcli {ctx.invoked_subcommand}" if ctx.invoked_subcommand else "this command"
        render.failure(
            UsageError(
                f"{command} talks to one server, but --url was given {len(urls)} times",
                hint="several servers are for " + ", ".join(MANY_SERVER_COMMANDS),
            )
        )
        raise typer.Exit(int(ExitCode.USAGE))
    state = AppState(url=urls or None, auth=auth, timeout=timeout, debug=debug, no_cache=no_cache)
    ctx.obj = state
    ctx.call_on_close(state.close)
    if _debug(ctx):
        ctx.call_on_close(_log_http_to_stderr())


def _log_http_to_stderr() -> Callable[[], None]:
    """--debug: one stderr line per HTTP exchange; returns how to stop it again."""
    import logging

    class StderrHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # escaped by note(), and written above a live bar, if any
            render.note(f"sdcli: debug: {record.getMessage()}")

    handler = StderrHandler()
    logger = logging.getLogger("sdcli")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    def stop() -> None:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)

    return stop


_GLOBAL_VALUE_OPTIONS = ("--url", "--auth", "--timeout")
_GLOBAL_FLAGS = ("--debug", "--no-cache")


def _after_global_options(args: list[str]) -> str | None:
    """The first word past the global options (and their values), if any."""
    words = iter(args)
    for arg in words:
        if arg in _GLOBAL_VALUE_OPTIONS:
            next(words, None)
        elif arg not in _GLOBAL_FLAGS and arg.partition("=")[0] not in _GLOBAL_VALUE_OPTIONS:
            return arg
    return None


def _command_word(args: list[str]) -> str | None:
    """The command a plain command line runs, past any global options; None when unsure."""
    word = _after_global_options(args)
    if word is None or word.startswith("-"):
        return None  # --help, --version, completion flags, typos: the full app decides
    return word


def _app_for(args: list[str]) -> typer.Typer:
    """The app a command line needs. typer builds every registered command's parser before it
    parses anything, and each command module costs its import: a plain command line gets its
    command alone, `sdcli --help` the listing alone (bench/RESULTS.md). Anything unusual
    (completion, a typo, an option before the command) gets every command, so help, errors,
    completions and suggestions are unchanged."""
    if not args:  # `sdcli` alone, or a shell asking for completions (its words are in variables)
        return full_app()
    name = _command_word(args)
    if name in commands.NAMES:
        return _with_commands([name])
    if _after_global_options(args) in ("-h", "--help"):
        listing = _with_commands([])
        commands.register_listing(listing)
        return listing
    return full_app()


def _with_commands(names: list[str] | None) -> typer.Typer:
    """A shallow copy of `root` with the commands called `names` (None: all) registered."""
    made = copy.copy(root)  # same callback and settings; `root` itself stays bare
    made.registered_commands, made.registered_groups = [], []
    if names != []:
        commands.register(made, names)
    return made


_full: typer.Typer | None = None


def full_app() -> typer.Typer:
    """Every command, registered once a process: for completion, typos, tests and tools."""
    global _full
    if _full is None:
        _full = _with_commands(None)
    return _full


def __getattr__(name: str) -> typer.Typer:
    """`from sdcli.cli.app import app`: the whole CLI, built when first asked for."""
    if name == "app":
        return full_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _terminate_like_ctrl_c() -> None:
    """SIGTERM and SIGHUP take Ctrl-C's path instead of killing sdcli mid-write (errors.Terminated).

    A signal someone chose to ignore stays ignored: `nohup sdcli …` must survive a hang-up.
    """

    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated(signum)

    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None and signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, raise_terminated)


def run() -> None:
    _terminate_like_ctrl_c()
    _app_for(sys.argv[1:])(prog_name="sdcli")

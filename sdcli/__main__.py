"""Entry point for the `sdcli` console script and `python -m sdcli`."""

from __future__ import annotations

import gc
import os
import sys


def main() -> None:
    """Run the CLI; `--version` alone answers before typer is even imported (loops pay start-up)."""
    if sys.argv[1:] == ["--version"]:
        from sdcli import __version__

        if sys.stdout is None:  # started with stdout closed (`>&-`)
            sys.exit(141)
        sys.stdout.write(f"sdcli {__version__}\n")
        return
    # Started with stdin or stderr closed (`<&-`, `2>&-`): Python leaves them None. Reading
    # nothing and saying nothing is what such a caller asked for; a crash is not.
    for name, mode in (("stdin", "r"), ("stderr", "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, mode, encoding="utf-8"))  # noqa: SIM115
    if sys.stdout is None:  # `>&-`: results have nowhere to go; render.result says so (141)
        from sdcli.cli import render

        render.stdout_closed = True
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    # Start-up and exit are paid on every call in a shell loop (bench/RESULTS.md). The collector
    # would scan the ~30k objects that importing typer creates, all still in use, several times
    # over, and again in the interpreter's teardown: ~70 ms of a ~450 ms one-image run here.
    # Freezing them keeps it on for the work itself, where cycles may hold large buffers.
    gc.disable()
    from sdcli.cli.app import run

    gc.freeze()
    gc.enable()
    try:
        run()
    except BrokenPipeError:
        # A reader such as `head -1` went away: stop quietly, like a Unix tool killed by SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(141)
    finally:
        gc.freeze()  # nothing left to collect for: teardown skips its passes over every object


if __name__ == "__main__":
    main()

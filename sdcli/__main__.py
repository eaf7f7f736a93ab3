"""Entry point for the `sdcli` console script and `python -m sdcli`."""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Run the CLI; `--version` alone answers before typer is even imported (loops pay start-up)."""
    if sys.argv[1:] == ["--version"]:
        from sdcli import __version__

        sys.stdout.write(f"sdcli {__version__}\n")
        return
    from sdcli.cli.app import run

    try:
        run()
    except BrokenPipeError:
        # A reader such as `head -1` went away: stop quietly, like a Unix tool killed by SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(141)


if __name__ == "__main__":
    main()

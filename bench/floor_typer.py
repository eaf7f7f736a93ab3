"""The floor with typer imported first: what any client parsing its command line with typer (the
design card's parser) pays before its own code. Figure l's reference for the 1.10× target.

    python bench/floor_typer.py URL OUTDIR PAYLOAD_JSON PROMPT...   (floor.py's arguments)
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import typer.main  # noqa: F401, TID251  (imported for its cost only)

sys.argv = [str(Path(__file__).with_name("floor.py")), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")

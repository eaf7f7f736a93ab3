"""Where sdcli keeps its files: one function per location, each overridable by the environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def config_dir() -> Path:
    """The user config directory: `SDCLI_HOME`, else the platform's usual place.

    Mirrors what typer.get_app_dir("sdcli") answers, without importing typer below the CLI layer.
    """
    home = os.environ.get("SDCLI_HOME")
    if home:
        return Path(home)
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / "sdcli"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "sdcli"
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return Path(xdg or Path.home() / ".config") / "sdcli"


def config_file() -> Path:
    """The TOML settings file: `SDCLI_CONFIG`, else `config.toml` in the config directory."""
    explicit = os.environ.get("SDCLI_CONFIG")
    return Path(explicit) if explicit else config_dir() / "config.toml"


def user_presets_dir() -> Path:
    """Presets the user wrote (`sdcli presets new`); searched after `SDCLI_PRESETS_PATH`."""
    return config_dir() / "presets"


def builtin_presets_dir() -> Path:
    """The presets shipped with sdcli: inside the wheel, or `presets/` in a source checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "builtin_presets"
    return packaged if packaged.is_dir() else here.parent / "presets"

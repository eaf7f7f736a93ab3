"""Settings resolved once per process: flag > environment > config file > built-in default; and
where sdcli keeps its files. The one module that reads the environment: sdcli's own variables
and the terminal's conventions (NO_COLOR, COLUMNS, EDITOR…) alike."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from sdcli.datatypes import frozen
from sdcli.errors import UsageError

DEFAULT_URL = "http://127.0.0.1:7860"
DEFAULT_CONNECT_TIMEOUT = 5.0
# The longest wait sdcli accepts: a week is longer than any job a web UI runs, so anything
# larger is a typo (1e10), and it stays far below what socket and thread timers can hold.
MAX_TIMEOUT = 7 * 24 * 3600.0
# How long the server's lists are trusted on disk: a shell loop's iterations share them, and a
# list changed on the server is still noticed (sdcli.listcache has the rules that keep it right).
DEFAULT_CACHE_TTL = 300.0

# config file key -> environment variable
ENV_VARS = {
    "url": "SDCLI_URL",
    "auth": "SDCLI_AUTH",
    "timeout": "SDCLI_TIMEOUT",
    "output_dir": "SDCLI_OUTPUT_DIR",
    "default_preset": "SDCLI_PRESET",
    "images": "SDCLI_IMAGES",
    "cache_ttl": "SDCLI_CACHE_TTL",
    "wildcards_dir": "SDCLI_WILDCARDS",
}
FILE_KEYS = frozenset(
    {
        *ENV_VARS,
        "connect_timeout",
        "thumbnails",
        "live_preview",
        "history",
        "history_file",
        "servers",
    }
)
# The keys of a `[servers.NAME]` table; `--url NAME` picks one, `--url all` every one.
SERVER_KEYS = ("url", "auth", "weight")
ALL_SERVERS = "all"
MAX_WEIGHT = 100
# How pictures are drawn: auto picks from the terminal (sdcli/cli/pictures.py), none draws none.
IMAGE_MODES = ("auto", "kitty", "iterm", "sixel", "blocks", "none")
HISTORY_FILE_NAME = "history.db"
RUNS_FILE_NAME = "runs.db"  # the run journal (sdcli.journal), beside the history
_OFF_WORDS = ("off", "0", "false", "no")


def config_dir() -> Path:
    """The user config directory: `SDCLI_HOME`, else the platform's usual place.

    Mirrors what typer.get_app_dir("sdcli") answers, without importing typer below the CLI layer.
    """
    return _user_dir("XDG_CONFIG_HOME", ".config", windows="APPDATA")


def data_dir() -> Path:
    """Where sdcli keeps what it records (the history): `SDCLI_HOME`, else the platform's
    user data directory (what platformdirs' user_data_dir answers, without the dependency)."""
    return _user_dir("XDG_DATA_HOME", ".local/share")


def runs_file() -> Path:
    """The run journal: `runs.db` in the data directory, beside the history."""
    return data_dir() / RUNS_FILE_NAME


def config_file() -> Path:
    """The TOML settings file: `SDCLI_CONFIG`, else `config.toml` in the config directory."""
    explicit = os.environ.get("SDCLI_CONFIG")
    return Path(explicit) if explicit else config_dir() / "config.toml"


def state_dir() -> Path:
    """What sdcli keeps between runs that is not a setting (interactive mode's input history):
    `SDCLI_HOME`, else the platform's place for state (XDG_STATE_HOME on Linux)."""
    return _user_dir("XDG_STATE_HOME", ".local/state")


def default_wildcards_dir() -> Path:
    """Where `__name__` in a dynamic prompt finds `name.txt` unless told otherwise."""
    return config_dir() / "wildcards"


def user_presets_dir() -> Path:
    """Presets the user wrote (`sdcli presets new`); searched after `SDCLI_PRESETS_PATH`."""
    return config_dir() / "presets"


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the server's lists are cached: `SDCLI_HOME/cache`, else the platform's cache dir."""
    return _user_dir(
        "XDG_CACHE_HOME", ".cache", mac="Caches", home_sub="cache", windows_sub="Cache", env=env
    )


def _user_dir(
    xdg: str,
    linux_default: str,
    *,
    windows: str = "LOCALAPPDATA",
    mac: str = "Application Support",
    home_sub: str = "",
    windows_sub: str = "",
    env: Mapping[str, str] | None = None,
) -> Path:
    """One of sdcli's directories: under `SDCLI_HOME` if set, else where the platform keeps
    that kind of file (`xdg` names the XDG variable, `linux_default` its fallback under ~)."""
    environ = os.environ if env is None else env
    home = environ.get("SDCLI_HOME")
    if home:
        return Path(home) / home_sub
    if sys.platform == "win32":
        local = "Roaming" if windows == "APPDATA" else "Local"
        base = environ.get(windows) or str(Path.home() / "AppData" / local)
        return Path(base) / "sdcli" / windows_sub
    if sys.platform == "darwin":
        return Path.home() / "Library" / mac / "sdcli"
    return Path(environ.get(xdg) or Path.home() / linux_default) / "sdcli"


def builtin_presets_dir() -> Path:
    """The presets shipped with sdcli: inside the wheel, or `presets/` in a source checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "builtin_presets"
    return packaged if packaged.is_dir() else here.parent / "presets"


@frozen
class Server:
    """One web UI a run may use: a `[servers.NAME]` table of the config file, or a URL.

    `weight`: when several servers are free at once, the next unit goes to the heaviest.
    """

    name: str  # the table's name, or the URL's host:port: safe to print
    url: str  # without credentials
    auth: tuple[str, str] | None = field(default=None, repr=False)
    weight: int = 1
    # (message, hint) if the host does not resolve: a bare word that may have meant a table
    unknown_host: tuple[str, str] | None = None


@frozen
class Settings:
    """Everything a command needs to know about where and how to talk to the web UI."""

    url: str  # base URL without credentials: safe to print
    auth: tuple[str, str] | None = field(default=None, repr=False)
    timeout: float | None = (
        None  # read timeout for slow calls (generation, model load); None = wait
    )
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    output_dir: Path = Path(".")
    default_preset: str | None = None
    debug: bool = False
    images: str = "auto"  # one of IMAGE_MODES
    thumbnails: bool = True  # a picture of each saved image under its path (config only)
    live_preview: bool = True  # the server's preview beside the progress bar (config only)
    url_source: str = "default"  # flag, env, config or default: shown by `sdcli info`
    cache_ttl: float = DEFAULT_CACHE_TTL  # seconds the server's lists are kept on disk; 0 = off
    warnings: tuple[str, ...] = ()
    history: Path | None = None  # the history database; None: recording is off
    history_path: Path | None = None  # where it is or would be, even when off
    # dynamic prompts: the directory of `__name__` wildcard files, and where that came from
    wildcards_dir: Path | None = None
    wildcards_source: str = "default"
    # A run over several servers (`--url` given more than once, a table name, `all`); the
    # first is `url` and `auth`. Empty or one: the one server `url`, as always.
    servers: tuple[Server, ...] = ()
    unknown_host: tuple[str, str] | None = None  # the first server's (Server.unknown_host)


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """`http://user:pass@host:7860/` -> (`http://host:7860`, (user, pass)); http:// if missing."""
    raw = url.strip()
    if "://" not in raw:
        raw = "http://" + raw
    try:
        parts = urlsplit(raw)
    except ValueError as exc:  # e.g. an unclosed "[" of an IPv6 address
        raise UsageError(f"invalid server URL {mask_url(url)!r}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"invalid server URL {mask_url(url)!r}", hint="expected e.g. http://127.0.0.1:7860"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise UsageError(f"invalid port in server URL {mask_url(url)!r}") from exc
    auth = None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        auth = (unquote(user), unquote(password))
    clean = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    if parts.path.strip("/"):  # rare (a proxy's sub-path): only then is the client imported
        from sdcli.client import API, api_root

        root = api_root(parts.path)
        if root is not None:  # `--url http://host:7860/sdapi/v1`: calls would go to …/v1/sdapi/v1
            suggestion = urlunsplit((parts.scheme, netloc, root, "", ""))
            raise UsageError(
                f"the server URL {mask_url(clean)!r} must be the web UI's root, not its API path",
                hint=f"use {mask_url(suggestion)}; sdcli adds {API} itself",
            )
    return clean, auth


def mask_url(url: str) -> str:
    """Hide a password embedded in a URL, for any message that must mention the URL."""
    if "@" not in url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, _, hostpart = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{hostpart}" if ":" in userinfo else url


def parse_auth(value: str, *, where: str) -> tuple[str, str]:
    """`USER:PASS` as the web UI's --api-auth takes it (the password may contain ':')."""
    user, sep, password = value.partition(":")
    if not sep or not user:
        raise UsageError(f"{where} must look like USER:PASS")
    return user, password


def parse_timeout(value: Any, *, where: str, allow_none: bool = True) -> float | None:
    """Seconds above 0, at most MAX_TIMEOUT; 'none' waits as long as it takes (`allow_none`).

    Checked before anything is sent: a timeout that cannot be honoured must not cost a job.
    """
    if allow_none and isinstance(value, str) and value.strip().lower() == "none":
        return None
    try:
        seconds = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError, OverflowError):
        seconds = float("nan")
    if not 0 < seconds <= MAX_TIMEOUT:  # also refuses nan and inf
        raise UsageError(
            f"{where} must be a number of seconds above 0 and at most {MAX_TIMEOUT:g} (a week), "
            f"not {value!r}",
            hint="'none' waits as long as the job takes" if allow_none else None,
        )
    return seconds


def parse_cache_ttl(value: Any, *, where: str) -> float:
    """Seconds the lists stay cached: 0 (off) up to a day; more would hide a changed server."""
    try:
        seconds = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError, OverflowError):
        seconds = float("nan")
    if not 0 <= seconds <= 24 * 3600:
        raise UsageError(
            f"{where} must be a number of seconds from 0 (no cache) to 86400, not {value!r}"
        )
    return seconds


def read_config_file(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The config file's table, plus warnings (e.g. credentials readable by others)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, []
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from exc
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - FILE_KEYS)
    if unknown:
        raise UsageError(
            f"config file {path}: unknown key {unknown[0]!r}",
            hint="known keys: " + ", ".join(sorted(FILE_KEYS)),
        )
    warnings: list[str] = []
    tables = data.get("servers")
    table_secret = isinstance(tables, dict) and any(
        isinstance(t, dict) and ("auth" in t or "@" in str(t.get("url", "")))
        for t in tables.values()
    )
    has_secret = "auth" in data or "@" in str(data.get("url", "")) or table_secret
    if has_secret and os.name == "posix":
        mode = path.stat().st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            warnings.append(
                f"config file {path} holds credentials and is readable by others "
                f"(run: chmod 600 {path})"
            )
    return data, warnings


def load_settings(
    *,
    url: str | Sequence[str] | None = None,
    auth: str | None = None,
    timeout: str | float | None = None,
    output_dir: Path | None = None,
    debug: bool = False,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve each setting from the first place that has it: flag, environment, file, default.

    `url`: one or several `--url` values, each a URL, a `[servers.NAME]` name or `all`.
    """
    environ = os.environ if env is None else env
    file_data, warnings = read_config_file(config_file())

    def pick(key: str, flag: Any) -> tuple[Any, str]:
        if flag is not None:
            return flag, "flag"
        env_value = environ.get(ENV_VARS[key]) if key in ENV_VARS else None
        if env_value:
            return env_value, "env"
        if key in file_data:
            return file_data[key], "config"
        return None, "default"

    flags = [url] if isinstance(url, str) else list(url or ())
    if any(not value.strip() for value in flags):
        # `--url "$HOST"` with HOST unset: never fall back to another server in silence.
        raise UsageError("--url is empty", hint="give a URL, a [servers.NAME] name or all")
    raw_url, url_source = pick("url", flags or None)
    raw_auth, auth_source = pick("auth", auth)
    global_auth = None
    if raw_auth:
        where = {"flag": "--auth", "env": "SDCLI_AUTH", "config": "config key 'auth'"}[auth_source]
        global_auth = parse_auth(str(raw_auth), where=where)
    tables = parse_servers(file_data.get("servers"))
    values = flags or [str(raw_url) if raw_url else DEFAULT_URL]
    servers = _servers(values, tables, global_auth)
    base_url, credentials = servers[0].url, servers[0].auth

    raw_timeout, timeout_source = pick("timeout", timeout)
    read_timeout = (
        parse_timeout(raw_timeout, where=_where("timeout", timeout_source))
        if raw_timeout is not None
        else None
    )
    raw_connect = file_data.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    connect = parse_timeout(raw_connect, where="config key 'connect_timeout'", allow_none=False)

    raw_out, _ = pick("output_dir", output_dir)
    raw_ttl, ttl_source = pick("cache_ttl", None)
    cache_ttl = (
        parse_cache_ttl(raw_ttl, where=_where("cache_ttl", ttl_source))
        if raw_ttl is not None
        else DEFAULT_CACHE_TTL
    )
    preset, _ = pick("default_preset", None)
    raw_images, images_source = pick("images", None)
    images = parse_images(raw_images, where=_where("images", images_source))

    history_path, history_on = _history(environ, file_data)
    raw_wildcards, wildcards_source = pick("wildcards_dir", None)
    if raw_wildcards is not None and not (isinstance(raw_wildcards, str) and raw_wildcards.strip()):
        raise UsageError(f"{_where('wildcards_dir', wildcards_source)} must be a directory path")
    wildcards = (
        Path(raw_wildcards).expanduser() if raw_wildcards is not None else default_wildcards_dir()
    )
    for server in servers:
        if server.auth and urlsplit(server.url).scheme == "http" and not _is_loopback(server.url):
            warnings.append(
                f"sending the password unencrypted over http:// to {server.url} "
                "(use https:// if you can)"
            )
    return Settings(
        url=base_url,
        auth=credentials,
        timeout=read_timeout,
        connect_timeout=connect or DEFAULT_CONNECT_TIMEOUT,  # never None: allow_none=False
        output_dir=Path(str(raw_out)).expanduser() if raw_out else Path("."),
        default_preset=str(preset) if preset else None,
        images=images,
        thumbnails=_flag(file_data, "thumbnails"),
        live_preview=_flag(file_data, "live_preview"),
        debug=debug or debug_requested(environ),
        url_source=url_source,
        cache_ttl=cache_ttl,
        warnings=tuple(warnings),
        history=history_path if history_on else None,
        history_path=history_path,
        wildcards_dir=wildcards,
        wildcards_source=wildcards_source,
        servers=tuple(servers) if len(servers) > 1 else (),
        unknown_host=servers[0].unknown_host,
    )


def parse_servers(raw: Any) -> dict[str, Server]:
    """The config file's `[servers.NAME]` tables (url, auth, weight), checked, in file order.

    A table's credentials are its own (`auth`, or the URL's `user:pass@`): the global `auth`
    is never sent to it.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UsageError("config key 'servers' must hold tables: [servers.NAME] with url = …")
    servers: dict[str, Server] = {}
    for name, table in raw.items():
        where = f"config table [servers.{name}]"
        if not isinstance(table, dict):
            raise UsageError(f"{where} must be a table with url = …")
        unknown = sorted(set(table) - set(SERVER_KEYS))
        if unknown:
            raise UsageError(
                f"{where}: unknown key {unknown[0]!r}", hint="known keys: " + ", ".join(SERVER_KEYS)
            )
        raw_url = table.get("url")
        if not isinstance(raw_url, str) or not raw_url.strip():
            raise UsageError(f'{where} needs url = "http://HOST:PORT"')
        url, auth = split_credentials(raw_url)
        if "auth" in table:
            if not isinstance(table["auth"], str):
                raise UsageError(f"{where}: auth must look like USER:PASS")
            auth = parse_auth(table["auth"], where=f"{where}: auth")
        weight = table.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= MAX_WEIGHT:
            raise UsageError(
                f"{where}: weight must be a whole number from 1 to {MAX_WEIGHT}, not {weight!r}"
            )
        servers[name] = Server(name, url, auth, weight)
    return servers


def _servers(
    values: Sequence[str], tables: Mapping[str, Server], global_auth: tuple[str, str] | None
) -> list[Server]:
    """What each `--url` value names: a table, every table (`all`) or a URL (which gets the
    global auth, else its own `user:pass@`); the same URL twice counts once."""
    found: list[Server] = []
    for value in values:
        if value == ALL_SERVERS:
            if not tables:
                raise UsageError(
                    "--url all: the config file has no [servers.NAME] tables",
                    hint=f"see {config_file()}",
                )
            found += tables.values()
        elif value in tables:
            found.append(tables[value])
        else:
            url, url_auth = split_credentials(value)
            host = urlsplit(url).netloc
            unknown = _not_a_table(value.strip(), tables)
            found.append(Server(host, url, global_auth or url_auth, unknown_host=unknown))
    unique: dict[str, Server] = {}
    for server in found:
        unique.setdefault(server.url, server)
    return list(unique.values())


def _not_a_table(word: str, tables: Mapping[str, Server]) -> tuple[str, str] | None:
    """What to say if `word` is no host either, when it reads like a table's name: a bare word
    (no scheme, dot, port, user or path) and the config file has tables. A LAN host can be a
    bare word, so it is still tried as one first; only a name that does not resolve says this."""
    if not tables or any(mark in word for mark in "/.:@[]"):
        return None
    import difflib  # only for a bare word that is not a table

    close = difflib.get_close_matches(word, list(tables), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "tables: " + ", ".join(tables)
    return f"no server table [servers.{word}] in {config_file()} and no host {word!r}", hint


def retry_backoff(env: Mapping[str, str] | None = None) -> float:
    """The first wait between retries: 1 s, or SDCLI_RETRY_BACKOFF (tests set 0)."""
    raw = (os.environ if env is None else env).get("SDCLI_RETRY_BACKOFF", "").strip()
    if not raw:
        return 1.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise UsageError(f"SDCLI_RETRY_BACKOFF must be a number of seconds, not {raw!r}")
    return seconds


def preset_path_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """The directories of SDCLI_PRESETS_PATH, searched before the user presets directory."""
    raw = (os.environ if env is None else env).get("SDCLI_PRESETS_PATH", "")
    return [Path(entry).expanduser() for entry in raw.split(os.pathsep) if entry.strip()]


def parse_images(value: Any, *, where: str) -> str:
    """An image mode, any case; the default `auto` when unset."""
    if value is None:
        return "auto"
    mode = str(value).strip().lower()
    if mode not in IMAGE_MODES:
        raise UsageError(f"{where} must be one of {', '.join(IMAGE_MODES)}, got {str(value)!r}")
    return mode


def _flag(file_data: Mapping[str, Any], key: str) -> bool:
    """A true/false config key (on by default)."""
    value = file_data.get(key, True)
    if not isinstance(value, bool):
        raise UsageError(f"config key {key!r} must be true or false, got {value!r}")
    return value


def _history(environ: Mapping[str, str], file_data: Mapping[str, Any]) -> tuple[Path, bool]:
    """The history database and whether to record: `SDCLI_HISTORY` (a path, or `off`), else the
    config keys `history_file` and `history` (true/false), else `history.db` in the data dir."""
    switch = file_data.get("history", True)
    if not isinstance(switch, bool):
        raise UsageError(f"config key 'history' must be true or false, not {switch!r}")
    raw = environ.get("SDCLI_HISTORY", "").strip()
    if raw.lower() in _OFF_WORDS:
        return data_dir() / HISTORY_FILE_NAME, False
    if raw:
        return Path(raw).expanduser(), True
    configured = file_data.get("history_file")
    if configured is not None:
        if not isinstance(configured, str) or not configured.strip():
            raise UsageError("config key 'history_file' must be a file path")
        return Path(configured).expanduser(), switch
    return data_dir() / HISTORY_FILE_NAME, switch


def _where(key: str, source: str) -> str:
    return {"flag": f"--{key}", "env": ENV_VARS.get(key, key)}.get(source, f"config key {key!r}")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def debug_requested(env: Mapping[str, str] | None = None) -> bool:
    """`SDCLI_DEBUG=1` (anything but empty or 0): read for the settings, and for a failure
    raised before the settings are (a bad `--url` still gets its traceback)."""
    return (os.environ if env is None else env).get("SDCLI_DEBUG", "") not in ("", "0")


# The terminal's and the desktop's own conventions, read here like sdcli's own variables, so
# that every variable sdcli reads is named in this one module.
TERMINAL_VARIABLES = (
    "TERM",
    "TERM_PROGRAM",
    "LC_TERMINAL",
    "KITTY_WINDOW_ID",
    "TMUX",
    # whether kitty can read a saved file itself (sdcli.cli.pictures.kitty_reads_files)
    "KITTY_PID",
    "SSH_CONNECTION",
    "SSH_CLIENT",
    "SSH_TTY",
    "container",
)


def terminal() -> dict[str, str]:
    """The variables that tell which terminal this is (pictures choose their protocol by them),
    as they are now: a terminal's variables can change under a test or a long session."""
    return {name: os.environ[name] for name in TERMINAL_VARIABLES if name in os.environ}


def dumb_terminal() -> bool:
    """`TERM=dumb`: a terminal that takes no escape sequences (Emacs' shell, some CI logs)."""
    return os.environ.get("TERM") == "dumb"


def color_choice() -> bool | None:
    """`NO_COLOR` (no-color.org) turns colour off, `FORCE_COLOR` on; None: the terminal decides."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return None


def columns_hint() -> int | None:
    """`COLUMNS`, for when stderr is not a terminal that can say its own width."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        return None
    return columns if columns > 0 else None


def editor() -> str:
    """The user's editor command line: `VISUAL`, else `EDITOR`, else vi."""
    return os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"

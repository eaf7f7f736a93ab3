"""A run over several servers (issue 17): `--url` repeated and `[servers.NAME]` tables; one queue
that every server pulls from; a server that goes away has its unit redone on another; names
resolved on each server before anything is generated."""

from __future__ import annotations

import json
import re
import select
import signal
import socket
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sdcli.config import load_settings
from sdcli.errors import UsageError
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import SdcliProcess, error_line, invoke, run_sdcli, warnings
from terminal_helpers import Terminal, leftover_bar

TXT2IMG = "/sdapi/v1/txt2img"
SD_MODELS = "/sdapi/v1/sd-models"
TINY = ("--steps", "3", "-W", "64", "-H", "64")
MakeFake = Callable[..., FakeWebUI]


def json_rows(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def run_many(
    spawn_sdcli: Callable[..., SdcliProcess], urls: list[str], out: Path, *args: str
) -> SdcliProcess:
    """`sdcli --url A --url B … generate --json -o OUT ARGS -`, prompts to be sent on stdin."""
    flags = [word for url in urls for word in ("--url", url)]
    return spawn_sdcli(*flags, "generate", *TINY, "--json", "-o", str(out), *args, "-")


def close_stdin(process: SdcliProcess) -> None:
    assert process.proc.stdin is not None
    process.proc.stdin.close()
    process.proc.stdin = None


# --- settings --------------------------------------------------------------------------------


def test_url_repeated_and_server_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[servers.gpu1]\nurl = "http://10.0.0.1:7860"\nauth = "me:s3cret"\nweight = 3\n'
        '[servers.gpu2]\nurl = "http://u:pw@10.0.0.2:7860"\n'
    )
    config.chmod(0o600)
    monkeypatch.setenv("SDCLI_CONFIG", str(config))
    s = load_settings(url=["gpu2", "http://127.0.0.1:9", "gpu2"], auth="g:lobal", env={})
    assert [(x.name, x.url, x.auth, x.weight) for x in s.servers] == [
        ("gpu2", "http://10.0.0.2:7860", ("u", "pw"), 1),
        ("127.0.0.1:9", "http://127.0.0.1:9", ("g", "lobal"), 1),  # a URL gets the global auth
    ]
    assert (s.url, s.auth) == ("http://10.0.0.2:7860", ("u", "pw"))  # the first one
    every = load_settings(url="all", env={})
    assert [x.name for x in every.servers] == ["gpu1", "gpu2"]
    assert every.servers[0].auth == ("me", "s3cret")
    assert "s3cret" not in repr(every) and "pw" not in repr(every.servers)
    one = load_settings(url="gpu1", env={})  # one server: as always
    assert one.servers == () and (one.url, one.auth) == ("http://10.0.0.1:7860", ("me", "s3cret"))
    assert load_settings(env={}).servers == ()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[servers.a]\nurl = "http://h:1"\nwieght = 2\n', "[servers.a]: unknown key 'wieght'"),
        ("[servers.a]\nweight = 2\n", "[servers.a] needs url ="),
        ('[servers.a]\nurl = "http://h:1"\nweight = 0\n', "weight must be a whole number"),
        ('[servers.a]\nurl = "http://h:1"\nauth = "nocolon"\n', "auth must look like USER:PASS"),
        ('servers = "http://h:1"\n', "config key 'servers' must hold tables"),
    ],
)
def test_bad_server_tables_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str, message: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(table)
    monkeypatch.setenv("SDCLI_CONFIG", str(config))
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_settings(env={})


def test_url_all_without_tables_is_refused(tmp_path: Path) -> None:
    r = run_sdcli("--url", "all", "generate", *TINY, "-o", str(tmp_path), "a cat")
    assert r.returncode == 2
    assert "--url all: the config file has no [servers.NAME] tables" in error_line(r.stderr)


def test_an_empty_url_is_refused_not_replaced_by_the_default(tmp_path: Path) -> None:
    r = run_sdcli("--url", "", "generate", *TINY, "-o", str(tmp_path), "a cat")
    assert r.returncode == 2
    assert error_line(r.stderr).startswith("sdcli: error: --url is empty (give a URL")
    assert list(tmp_path.iterdir()) == []


def test_a_one_server_command_refuses_several_urls(make_fake_webui: MakeFake) -> None:
    a, b = make_fake_webui(), make_fake_webui()
    r = run_sdcli("--url", a.url, "--url", b.url, "models")
    assert r.returncode == 2
    assert "sdcli models talks to one server, but --url was given 2 times" in error_line(r.stderr)
    assert a.requests == [] and b.requests == []


def _resolver(monkeypatch: pytest.MonkeyPatch, known: dict[str, int]) -> None:
    """Host names answered in process, so no packet leaves the machine: a name of `known` is
    127.0.0.1 at that port; any other bare word (no dot) does not resolve."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = str(host)
        if name in known:
            return real("127.0.0.1", known[name], *args, **kwargs)
        if "." not in name and ":" not in name and name != "localhost":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _two_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(f'[servers.gpu1]\nurl = "{url}"\n[servers.laptop]\nurl = "{url}"\n')
    monkeypatch.setenv("SDCLI_CONFIG", str(config))
    return config


def test_a_table_name_that_is_no_host_either_says_so(
    fake_webui: FakeWebUI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _resolver(monkeypatch, {"mybox": fake_webui.port})
    out = tmp_path / "out"
    r = invoke(["--url", "gpu2", "generate", *TINY, "-o", str(out), "a cat"])  # no tables yet
    assert r.exit_code == 3, r.stderr
    assert error_line(r.stderr).endswith(
        ": the host name 'gpu2' does not resolve (check --url or SDCLI_URL)"
    )
    config = _two_tables(tmp_path, monkeypatch, fake_webui.url)
    r = invoke(["--url", "gpu2", "generate", *TINY, "-o", str(out), "a cat"])
    assert r.exit_code == 3, r.stderr
    assert error_line(r.stderr) == (
        f"sdcli: error: no server table [servers.gpu2] in {config} and no host 'gpu2' "
        "(did you mean 'gpu1'?)"
    )
    r = invoke(["--url", "nosuch", "models"])  # a command of one server; nothing close
    assert r.exit_code == 3, r.stderr
    assert error_line(r.stderr) == (
        f"sdcli: error: no server table [servers.nosuch] in {config} and no host 'nosuch' "
        "(tables: gpu1, laptop)"
    )
    assert not out.exists() and fake_webui.requests == []
    # one of several servers: it leaves the run, saying why; the other makes the image
    both = ["--url", "gpu1", "--url", "gpu2", "generate", *TINY, "--sampler", "Euler a"]
    r = invoke([*both, "-o", str(out), "a cat"])  # a name: every server is asked first
    assert r.exit_code == 0, r.stderr
    [warning] = warnings(r.stderr)
    assert "left the run: no server table [servers.gpu2] in " in warning
    # a bare word that resolves is a host, tables or not (a LAN host, localhost)
    r = invoke(["--url", "mybox", "generate", *TINY, "-o", str(out), "a dog"])
    assert r.exit_code == 0, r.stderr
    assert len(list(out.iterdir())) == 2 and len(fake_webui.requests_to(TXT2IMG)) == 2


# --- the run ---------------------------------------------------------------------------------


def test_both_servers_work_at_once_and_json_says_which(
    make_fake_webui: MakeFake, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    a, b = make_fake_webui(), make_fake_webui()
    for fake in (a, b):
        fake.pause_at_step(1)  # each server's first job waits: both can only be seen paused
    run = run_many(spawn_sdcli, [a.url, b.url], tmp_path, "--seed", "7")  # if both run at once
    run.send("one", "two", "three", "four")
    close_stdin(run)
    assert a.wait_paused(30) and b.wait_paused(30)
    a.resume()
    b.resume()
    code, out, err = run.finish()
    assert code == 0, err
    rows = json_rows(out)
    assert sorted(r["prompt"] for r in rows) == ["four", "one", "three", "two"]
    made = Counter(r["server"] for r in rows)
    sent = {fake.url: len(fake.requests_to(TXT2IMG)) for fake in (a, b)}
    assert made == sent and min(sent.values()) >= 1 and sum(sent.values()) == 4
    assert len(list(tmp_path.iterdir())) == 4
    assert "done: 4 prompts · 4 images · 0 failed" in err
    assert "\x1b[" not in err and " done · " not in err  # no rows when stderr is no terminal


def test_a_server_stopped_mid_run_has_its_unit_redone_elsewhere(
    make_fake_webui: MakeFake, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    a, b = make_fake_webui(), make_fake_webui()
    a.pause_at_step(1)
    prompts = [f"prompt {n}" for n in range(6)]
    run = run_many(spawn_sdcli, [a.url, b.url], tmp_path, "--seed", "100", "-b", "2")
    run.send(*prompts)
    close_stdin(run)
    assert a.wait_paused(30)  # a has its first unit in hand …
    a_url = a.url
    a.stop()  # … and goes away: the connection drops mid-job
    code, out, err = run.finish()
    assert code == 0, err
    rows = json_rows(out)
    # every planned image saved exactly once, with its planned seeds
    assert sorted((r["prompt"], r["seed"]) for r in rows) == sorted(
        (p, seed) for p in prompts for seed in (100, 101)
    )
    assert len({r["path"] for r in rows}) == 12 and len(list(tmp_path.iterdir())) == 12
    assert {r["server"] for r in rows} == {b.url}
    assert len(a.requests_to(TXT2IMG)) == 1 and len(b.requests_to(TXT2IMG)) == 6
    (dropped,) = warnings(err)
    assert f"{a_url} left the run: " in dropped
    assert "its unit goes to another server (1 left)" in dropped


def test_the_run_ends_with_the_usual_error_when_no_server_is_left(
    make_fake_webui: MakeFake, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    a, b = make_fake_webui(), make_fake_webui()
    for fake in (a, b):
        fake.pause_at_step(1)
    run = run_many(spawn_sdcli, [a.url, b.url], tmp_path)
    run.send("one", "two", "three")
    close_stdin(run)
    assert a.wait_paused(30) and b.wait_paused(30)
    a.stop()
    b.stop()
    code, out, err = run.finish()
    assert code == 3, err
    assert out == "" and list(tmp_path.iterdir()) == []
    assert "cannot reach" in error_line(err) or "closed before" in error_line(err)
    assert len(warnings(err)) == 1  # the first one gone; the last one is the error


def test_the_heaviest_free_server_takes_the_unit(
    make_fake_webui: MakeFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    light, heavy = make_fake_webui(), make_fake_webui()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[servers.light]\nurl = "{light.url}"\n[servers.heavy]\nurl = "{heavy.url}"\nweight = 3\n'
    )
    monkeypatch.setenv("SDCLI_CONFIG", str(config))
    out = tmp_path / "out"
    r = run_sdcli("--url", "light", "--url", "heavy", "generate", *TINY, "-o", str(out), "x")
    assert r.returncode == 0, r.stderr
    assert len(heavy.requests_to(TXT2IMG)) == 1 and light.requests_to(TXT2IMG) == []


def test_a_model_missing_on_one_server_refuses_before_generating(
    make_fake_webui: MakeFake, tmp_path: Path
) -> None:
    a, b = make_fake_webui(), make_fake_webui()
    b.remove_checkpoint("qteamixQ_gamma")
    r = run_sdcli(
        "--url", a.url, "--url", b.url, "generate", *TINY, "--model", "qteamix",
        "-o", str(tmp_path), "a cat",
    )  # fmt: skip
    assert r.returncode == 2
    line = error_line(r.stderr)
    assert line.startswith(f"sdcli: error: on {b.url}: ") and "qteamix" in line
    assert a.requests_to(TXT2IMG) == [] and b.requests_to(TXT2IMG) == []
    assert r.stdout == "" and list(tmp_path.iterdir()) == []


def test_names_are_resolved_on_every_server_at_once_and_the_first_error_is_told(
    make_fake_webui: MakeFake, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    a, b = make_fake_webui(), make_fake_webui()
    a.fail(SD_MODELS, mode="hold")  # a slow server: its list waits until released
    out = tmp_path / "out"
    run = spawn_sdcli(
        "--url", a.url, "--url", b.url, "generate", *TINY, "--model", "nosuch",
        "-o", str(out), "a cat",
    )  # fmt: skip
    assert a.wait_for_request(SD_MODELS, timeout=30)
    # b is asked while a's list is still held: one thread per server, not one after another
    assert b.wait_for_request(SD_MODELS, timeout=30), "b was not asked while a was held"
    a.release_hangs()  # a answers after b: both lack the name
    code, stdout, err = run.finish()
    assert code == 2, err
    # both lack it: the error names the first server in order, whichever answered first
    assert error_line(err) == (
        f"sdcli: error: on {a.url}: no checkpoint matches 'nosuch' (run `sdcli models` to "
        "list them)"
    )
    assert stdout == "" and not out.exists()
    assert a.requests_to(TXT2IMG) == [] and b.requests_to(TXT2IMG) == []


def test_names_are_resolved_on_each_server(
    make_fake_webui: MakeFake,
    spawn_sdcli: Callable[..., SdcliProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = make_fake_webui(), make_fake_webui()
    b.move_checkpoint("qteamixQ_gamma", "anime/qteamixQ_gamma.safetensors")  # another title
    config = tmp_path / "config.toml"
    config.write_text(f'[servers.left]\nurl = "{a.url}"\n[servers.right]\nurl = "{b.url}"\n')
    monkeypatch.setenv("SDCLI_CONFIG", str(config))
    for fake in (a, b):
        fake.pause_at_step(1)
    out = tmp_path / "out"
    run = run_many(spawn_sdcli, ["all"], out, "--model", "qteamix")
    run.send("x", "y", "z")
    close_stdin(run)
    assert a.wait_paused(30) and b.wait_paused(30)
    a.resume()
    b.resume()
    code, stdout, err = run.finish()
    assert code == 0, err
    sent = {
        fake.url: {
            q.json["override_settings"]["sd_model_checkpoint"] for q in fake.requests_to(TXT2IMG)
        }
        for fake in (a, b)
    }
    assert sent == {
        a.url: {"qteamixQ_gamma.safetensors [58174ec2a4]"},
        b.url: {"anime/qteamixQ_gamma.safetensors [58174ec2a4]"},
    }
    assert len(json_rows(stdout)) == 3 and len(list(out.iterdir())) == 3


def test_dry_run_shows_the_request_for_every_server(
    make_fake_webui: MakeFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, _ = _left_and_right(make_fake_webui, tmp_path, monkeypatch, 0)
    args = ("--url", "all", "generate", *TINY, "--model", "qteamix", "--dry-run", "a cat")
    r = run_sdcli(*args)
    assert r.returncode == 0, r.stderr
    [body] = json_rows(r.stdout)  # the same for both: once, and stderr says for whom
    title = "qteamixQ_gamma.safetensors [58174ec2a4]"
    assert body["override_settings"]["sd_model_checkpoint"] == title
    assert r.stderr == f"the same request for every server: left ({a.url}), right ({b.url})\n"
    b.move_checkpoint("qteamixQ_gamma", "anime/qteamixQ_gamma.safetensors")  # another title
    r = run_sdcli(*args)
    assert r.returncode == 0, r.stderr
    sent = [row["override_settings"]["sd_model_checkpoint"] for row in json_rows(r.stdout)]
    assert sent == [title, f"anime/{title}"]  # each server's body, in the servers' order
    assert r.stderr.splitlines() == [
        f"the request for left ({a.url}):",
        f"the request for right ({b.url}):",
    ]
    for fake in (a, b):  # read-only: lists asked, nothing pinned, nothing generated
        assert fake.requests and all(q.method == "GET" for q in fake.requests)


def test_one_server_of_a_table_behaves_as_a_url(
    fake_webui: FakeWebUI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[servers.box]\nurl = "{fake_webui.url}"\n')
    monkeypatch.setenv("SDCLI_CONFIG", str(config))
    out = tmp_path / "out"
    r = run_sdcli("--url", "box", "generate", *TINY, "--json", "-o", str(out), "a cat")
    assert r.returncode == 0, r.stderr
    (row,) = json_rows(r.stdout)
    assert row["server"] == fake_webui.url and Path(row["path"]).parent == out


def test_ctrl_c_interrupts_every_server_and_keeps_what_they_made(
    make_fake_webui: MakeFake, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    a, b = make_fake_webui(), make_fake_webui()
    for fake in (a, b):
        fake.pause_at_step(1)
    run = run_many(spawn_sdcli, [a.url, b.url], tmp_path)
    run.send("one", "two", "three", "four")
    close_stdin(run)
    assert a.wait_paused(30) and b.wait_paused(30)
    run.proc.send_signal(signal.SIGINT)
    code, out, err = run.finish()
    assert code == 130, err
    for fake in (a, b):  # each server was asked to stop its job, and sent nothing more
        assert len(fake.requests_to("/sdapi/v1/interrupt")) >= 1
        assert len(fake.requests_to(TXT2IMG)) == 1
    rows = json_rows(out)
    assert len(rows) == 2 and all(row["interrupted"] for row in rows)
    assert {row["server"] for row in rows} == {a.url, b.url}
    assert error_line(err) == "sdcli: error: interrupted; kept 2 image(s) the servers had made"
    assert err.count("interrupting: waiting for the images made so far") == 1


def test_keep_going_fails_a_prompt_not_a_server(
    make_fake_webui: MakeFake, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    a, b = make_fake_webui(), make_fake_webui()
    a.fail(TXT2IMG, 422, {"detail": "steps: value is not a valid integer"})  # the unit's fault
    b.pause_at_step(1)
    run = run_many(spawn_sdcli, [a.url, b.url], tmp_path, "--keep-going")
    run.send("one", "two", "three", "four")
    close_stdin(run)
    assert b.wait_paused(30) and a.wait_for_request(TXT2IMG)
    b.resume()
    code, out, err = run.finish()
    assert code == 1, err
    assert len(json_rows(out)) == 3 and len(list(tmp_path.iterdir())) == 3
    assert err.splitlines()[-1] == "sdcli: error: 1 prompt failed, 3 image(s) saved"
    (failed,) = [line for line in err.splitlines() if line.startswith("sdcli: error: failed '")]
    assert "': the server refused the request (422)" in failed
    assert "left the run" not in err  # a 4xx is the request's fault: the server stays
    assert len(a.requests_to(TXT2IMG)) >= 2  # a went on with the next units


def test_plain_saved_lines_name_their_server_and_stdout_stays_paths(
    make_fake_webui: MakeFake,
    spawn_sdcli: Callable[..., SdcliProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b, prompts = _left_and_right(make_fake_webui, tmp_path, monkeypatch, 4)
    for fake in (a, b):
        fake.pause_at_step(1)  # each server's first job waits: both take a unit
    out = tmp_path / "out"
    run = spawn_sdcli(
        "--url", "left", "--url", "right", "generate", *TINY, "-o", str(out),
        "--prompts-file", str(prompts),
    )  # fmt: skip
    assert a.wait_paused(30) and b.wait_paused(30)
    a.resume()
    b.resume()
    code, stdout, err = run.finish()
    assert code == 0, err
    assert sorted(stdout.splitlines()) == sorted(str(p) for p in out.iterdir())  # paths only
    saved = [line for line in err.splitlines() if ": saved 1 image · seed " in line]
    by = Counter(line.rsplit(" · ", 1)[1] for line in saved)
    assert by == {"left": len(a.requests_to(TXT2IMG)), "right": len(b.requests_to(TXT2IMG))}
    one = run_sdcli("--url", "left", "generate", *TINY, "-o", str(out), "a cat")  # one server
    assert one.returncode == 0, one.stderr
    assert re.fullmatch(r"'a cat': saved 1 image · seed \d+ · [\d.]+ s\n", one.stderr)


# --- on a terminal -----------------------------------------------------------------------------


def _left_and_right(
    make_fake_webui: MakeFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prompts: int
) -> tuple[FakeWebUI, FakeWebUI, Path]:
    """Two fakes as config tables `left` and `right`, and a file of `prompts` prompts."""
    a, b = make_fake_webui(), make_fake_webui()
    config = tmp_path / "config.toml"
    config.write_text(f'[servers.left]\nurl = "{a.url}"\n[servers.right]\nurl = "{b.url}"\n')
    monkeypatch.setenv("SDCLI_CONFIG", str(config))
    path = tmp_path / "prompts.txt"
    path.write_text("".join(f"prompt number {n}\n" for n in range(prompts)))
    return a, b, path


def test_a_terminal_shows_a_row_per_server_and_the_run_then_only_the_results(
    make_fake_webui: MakeFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, prompts = _left_and_right(make_fake_webui, tmp_path, monkeypatch, 4)
    for fake in (a, b):
        fake.pause_at_step(2)
    term = Terminal(
        "--url", "left", "--url", "right", "generate", "--steps", "4", "-W", "64", "-H", "64",
        "--no-show", "-o", "out", "--prompts-file", str(prompts), columns=80, rows=24,
        cwd=tmp_path,
    )  # fmt: skip
    try:
        both = re.compile(r"^(left|right) +'prompt number \d' .* step 2/4$")
        term.wait_for(lambda t: sum(bool(both.match(row)) for row in t.lines()) == 2)
        rows = term.lines()
        assert rows[-3].startswith("left ") and rows[-2].startswith("right ")
        assert re.fullmatch(r"0/2\+ done · 0 images · 2 servers", rows[-1]), rows
        a.resume()
        b.resume()
        assert term.wait_exit() == 0, term.dump()
        final = term.lines()
    finally:
        term.close()
    paths = [row for row in final if row.startswith("out/") and row.endswith(".png")]
    saved = [row for row in final if ": saved 1 image · seed " in row]
    assert len(paths) == 4 and len(saved) == 4
    assert {row.rsplit(" · ", 1)[1] for row in saved} == {"left", "right"}
    assert re.fullmatch(r"done: 4 prompts · 4 images · 0 failed · [\d.]+ s", final[-1])
    assert len(final) == 9, final  # the results and the summary, no row left behind
    assert leftover_bar(final) == [] and not any(" done · " in row for row in final)


def test_a_prompt_that_cannot_be_planned_further_on_ends_the_run_with_exit_2(
    make_fake_webui: MakeFake, tmp_path: Path
) -> None:
    a, b = make_fake_webui(), make_fake_webui()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n{a|b|c|d} dog\n")  # 4 prompts: their seeds pass 2**32 - 1
    out = tmp_path / "out"
    r = run_sdcli(
        "--url", a.url, "--url", b.url, "generate", *TINY, "-o", str(out), "--combinatorial",
        "--seed", "4294967294", "--prompts-file", str(prompts),
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "exception in thread" not in r.stderr.lower()
    assert "4294967295" in error_line(r.stderr)
    assert len(r.stdout.splitlines()) == 1 and len(list(out.iterdir())) == 1  # 'a cat' is kept


def test_a_terminal_shows_a_server_gone_then_only_the_results(
    make_fake_webui: MakeFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, prompts = _left_and_right(make_fake_webui, tmp_path, monkeypatch, 3)
    for fake in (a, b):
        fake.pause_at_step(1)
    term = Terminal(
        "--url", "all", "generate", "--steps", "4", "-W", "64", "-H", "64", "--no-show",
        "-o", "out", "--prompts-file", str(prompts), columns=100, rows=30, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert a.wait_paused(30) and b.wait_paused(30)
        a.stop()  # left goes away mid-job; right still holds its job: the rows stay up
        term.wait_for(lambda t: any(row.startswith("left   gone: ") for row in t.lines()))
        assert term.lines()[-1].endswith("· 1 server (1 gone)"), term.dump()
        b.resume()
        assert term.wait_exit() == 0, term.dump()
        final = term.lines()
    finally:
        term.close()
    text = "\n".join(final)
    assert "sdcli: warning: left (http://127.0.0.1:" in text and "left the run" in text
    saved = [row for row in final if ": saved 1 image · seed " in row]
    assert len(saved) == 3 and all(row.endswith(" · right") for row in saved)
    assert re.fullmatch(r"done: 3 prompts · 3 images · 0 failed · [\d.]+ s", final[-1])
    assert "gone: " not in text and " done · " not in text and leftover_bar(final) == []


def test_dry_run_stops_where_a_run_would_stop_and_leaves_out_what_it_would_leave_out(
    make_fake_webui: MakeFake, closed_port: int, tmp_path: Path
) -> None:
    """A server that refuses access (401) stops a run, as it stops the dry run of it (the same
    line, exit 4); one that cannot be reached is left out of both."""
    a, locked = make_fake_webui(), make_fake_webui(auth=("me", "s3cret"))
    gone = f"http://127.0.0.1:{closed_port}"
    urls = ["--url", a.url, "--url", locked.url]
    args = ("generate", *TINY, "--model", "qteamix")
    dry = run_sdcli(*urls, *args, "--dry-run", "a cat")
    real = run_sdcli(*urls, *args, "-o", str(tmp_path), "a cat")
    assert (dry.returncode, real.returncode) == (4, 4), dry.stderr
    assert error_line(dry.stderr) == error_line(real.stderr)
    assert error_line(dry.stderr).startswith(f"sdcli: error: on {locked.url}: ")
    assert "refused access" in error_line(dry.stderr)
    assert dry.stdout == "" and "left out" not in dry.stderr
    dry = run_sdcli("--url", a.url, "--url", gone, *args, "--dry-run", "a cat")
    assert dry.returncode == 0, dry.stderr
    assert f"{gone} left out, as a run would leave it: " in dry.stderr
    assert json_rows(dry.stdout)[0]["prompt"] == "a cat"


def test_dry_run_reads_the_first_prompt_before_asking_and_prints_bodies_as_prompts_come(
    make_fake_webui: MakeFake, spawn_sdcli: Callable[..., SdcliProcess]
) -> None:
    """As a run does: no prompt is refused before any server is asked, and when every server
    gets the same request each body is printed once its prompt is read, not at the end."""
    a, b = make_fake_webui(), make_fake_webui()
    urls = ("--url", a.url, "--url", b.url)
    args = ("generate", *TINY, "--model", "qteamix", "--dry-run", "-")
    r = run_sdcli(*urls, *args, input="")
    assert r.returncode == 2, r.stderr
    assert a.requests == [] and b.requests == []  # refused before anything was asked
    dry = spawn_sdcli(*urls, *args)
    assert dry.proc.stdout is not None
    for prompt in ("one", "two"):
        dry.send(prompt)  # stdin stays open: the body comes before its end
        ready, _, _ = select.select([dry.proc.stdout], [], [], 60)  # a safety net, not a timing
        assert ready, f"no body for {prompt!r} before the end of stdin"
        assert json.loads(dry.read_stdout())["prompt"] == prompt
    close_stdin(dry)
    code, out, err = dry.finish()
    assert (code, out) == (0, ""), err
    assert err == f"the same request for every server: {a.url}, {b.url}\n"


def test_the_main_thread_waits_for_its_workers_in_one_way() -> None:
    """`on_each` and the Scheduler wait for their threads with the same `wait_until` (never
    Thread.join, see its doc): it returns once the event is set, by another thread."""
    import threading

    from sdcli.schedule import on_each, wait_until

    done = threading.Event()
    threading.Thread(target=done.set).start()
    wait_until(done)
    assert done.is_set()
    results = on_each([2, 0, 5], lambda n: 10 // n)
    assert results[0] == 5 and results[2] == 2 and isinstance(results[1], ZeroDivisionError)
    assert on_each([], lambda n: n) == []

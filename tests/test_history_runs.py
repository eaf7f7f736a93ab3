"""Runs recorded in the history, end to end over real HTTP against the fake web UI: ok, failed
and interrupted runs, re-runs that send the same body, two processes at once, and a database
that cannot be written (the run goes on)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from sdcli.history import store
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import error_line, invoke, run_sdcli, start_sdcli, warnings

TXT2IMG = "/sdapi/v1/txt2img"
TINY = ("--size", "64x64", "--steps", "2")


def history(home: Path) -> list[dict[str, Any]]:
    """Every recorded generation, oldest first, as `history --json` gives it."""
    r = run_sdcli("history", "-n", "0", "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in reversed(r.stdout.splitlines())]


def sent_bodies(fake: FakeWebUI) -> list[dict[str, Any]]:
    """txt2img bodies as the fake received them, without the per-request task id."""
    bodies = []
    for request in fake.requests_to(TXT2IMG):
        body = dict(request.json)
        body.pop("force_task_id", None)
        bodies.append(body)
    return bodies


def test_an_ok_run_is_recorded_with_its_body_images_and_command(
    make_fake_webui: Any, isolated_sdcli_home: Path, tmp_path: Path
) -> None:
    fake = make_fake_webui(auth=("alice", "s3cret"))
    url = fake.url.replace("http://", "http://alice:s3cret@")
    r = run_sdcli(
        "--auth", "alice:s3cret", "--url", url, "generate", "-q", "-p", "draft", *TINY,
        "--seed", "7", "-b", "2", "-o", str(tmp_path), "a red lighthouse",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    paths = r.stdout.splitlines()
    [gen] = history(isolated_sdcli_home)
    assert gen["outcome"] == "ok" and gen["error"] is None and gen["seconds"] >= 0
    assert gen["prompt"] == "a red lighthouse" and gen["presets"] == ["draft"]
    assert gen["request"] == sent_bodies(fake)[0]
    assert gen["server"] == fake.url  # never the credentials
    assert gen["flavour"] == "a1111" and gen["version"] == "v1.10.1"
    assert gen["model"] and gen["model_hash"]
    assert [(Path(i["path"]), i["seed"]) for i in gen["images"]] == [
        (Path(p).absolute(), s) for p, s in zip(paths, (7, 8), strict=True)
    ]
    import hashlib

    assert gen["images"][0]["sha256"] == hashlib.sha256(Path(paths[0]).read_bytes()).hexdigest()
    assert "s3cret" not in json.dumps(gen)
    assert gen["command"][:5] == ["sdcli", "--auth", "***", "--url", fake.url]
    raw = b"".join(p.read_bytes() for p in isolated_sdcli_home.glob("history.db*"))
    assert b"s3cret" not in raw


def test_a_failed_request_is_recorded_with_its_error(
    fake_webui: FakeWebUI, isolated_sdcli_home: Path, tmp_path: Path
) -> None:
    fake_webui.fail(TXT2IMG, status=500)
    r = run_sdcli(
        "--url", fake_webui.url, "generate", "-q", *TINY, "-o", str(tmp_path), "a cat"
    )  # fmt: skip
    assert r.returncode == 1
    [gen] = history(isolated_sdcli_home)
    assert gen["outcome"] == "failed" and gen["images"] == []
    assert gen["error"] and "500" in gen["error"]
    assert run_sdcli("history", "--failed").stdout.split("\t")[0] == str(gen["id"])


def test_a_request_that_never_left_is_recorded_as_failed(
    fake_webui: FakeWebUI, isolated_sdcli_home: Path, tmp_path: Path
) -> None:
    """The writer starts once a request is on its way; a run that ends before that (the server
    gone after the cache checked the names) still records the request it tried."""
    args = ("--url", fake_webui.url, "generate", "-q", *TINY, "-o", str(tmp_path), "a cat")
    assert run_sdcli(*args).returncode == 0  # fills the list cache: no list request next time
    fake_webui.stop()
    r = run_sdcli(*args)
    assert r.returncode == 3, r.stderr
    gens = history(isolated_sdcli_home)
    assert [g["outcome"] for g in gens] == ["ok", "failed"]
    assert gens[1]["images"] == [] and "cannot reach" in gens[1]["error"]


def test_keep_going_records_each_prompt_with_its_own_outcome(
    fake_webui: FakeWebUI, isolated_sdcli_home: Path, tmp_path: Path
) -> None:
    fake_webui.fail(TXT2IMG, status=500)
    r = run_sdcli(
        "--url", fake_webui.url, "generate", "-q", *TINY, "-o", str(tmp_path), "--keep-going",
        "-", input="first\nsecond\n",
    )  # fmt: skip
    assert r.returncode == 1
    assert [(g["prompt"], g["outcome"]) for g in history(isolated_sdcli_home)] == [
        ("first", "failed"),
        ("second", "ok"),
    ]


def test_ctrl_c_is_recorded_as_interrupted_with_the_partial_image(
    fake_webui: FakeWebUI, isolated_sdcli_home: Path, tmp_path: Path
) -> None:
    fake_webui.pause_at_step(3)
    proc = start_sdcli(
        "--url", fake_webui.url, "generate", "-q", "--size", "64x64", "--steps", "20",
        "-o", str(tmp_path), "a slow cat", stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert fake_webui.wait_paused(30)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    [gen] = history(isolated_sdcli_home)
    assert gen["outcome"] == "interrupted" and "interrupted" in gen["error"]
    assert [i["interrupted"] for i in gen["images"]] == [True]
    assert gen["images"][0]["path"] == str(Path(out.strip()).absolute())


def test_rerun_sends_the_recorded_body_again_and_links_the_runs(
    fake_webui: FakeWebUI, isolated_sdcli_home: Path, tmp_path: Path
) -> None:
    args = ("--url", fake_webui.url)
    r = run_sdcli(
        *args, "generate", "-q", "-p", "chibi", *TINY, "--seed", "-1", "--set", "tiling=true",
        "-o", str(tmp_path), "1boy, solo",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    [first] = history(isolated_sdcli_home)
    r = run_sdcli(*args, "rerun", str(first["id"]), "-q", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    before, again = sent_bodies(fake_webui)
    seed = first["images"][0]["seed"]
    assert again == {**before, "seed": seed}  # the seed the first image got, not -1 again
    assert before["seed"] == -1 and again["tiling"] is True
    # a flag after the ID changes the request; everything else stays
    r = run_sdcli(*args, "rerun", str(first["id"]), "-q", "--steps", "3", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert sent_bodies(fake_webui)[2] == {**again, "steps": 3}
    gens = history(isolated_sdcli_home)
    assert [g["rerun_of"] for g in gens] == [None, first["id"], first["id"]]


def test_rerun_of_a_fixed_seed_is_the_same_body_exactly(
    fake_webui: FakeWebUI, isolated_sdcli_home: Path, tmp_path: Path
) -> None:
    args = ("--url", fake_webui.url)
    r = run_sdcli(
        *args, "generate", "-q", *TINY, "--seed", "11", "--clip-skip", "2",
        "--sampler", "DPM++ 2M Karras", "--model", "counterfeit", "-o", str(tmp_path), "a cat",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    [gen] = history(isolated_sdcli_home)
    assert gen["model"] == "anime/counterfeitV30_v30.safetensors [cbfba64e66]"  # the full title
    assert gen["model_hash"] == "cbfba64e66"
    r = run_sdcli(*args, "rerun", "1", "-q", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    before, again = sent_bodies(fake_webui)
    assert again == before


def test_a_rerun_that_fails_exits_as_generate_would(
    fake_webui: FakeWebUI, isolated_sdcli_home: Path, tmp_path: Path
) -> None:
    args = ("--url", fake_webui.url)
    assert run_sdcli(*args, "generate", "-q", *TINY, "-o", str(tmp_path), "a cat").returncode == 0
    fake_webui.fail(TXT2IMG, status=500)
    r = run_sdcli(*args, "rerun", "1", "-q", "--keep-going", "-o", str(tmp_path))
    assert r.returncode == 1 and "1 prompt failed" in r.stderr
    r = run_sdcli(*args, "rerun", "1", "--steps", "many")
    assert r.returncode == 2 and "see 'sdcli rerun --help'" in r.stderr
    assert [g["outcome"] for g in history(isolated_sdcli_home)] == ["ok", "failed"]


def test_rerun_of_an_image_file_finds_its_generation(
    fake_webui: FakeWebUI, isolated_sdcli_home: Path, tmp_path: Path
) -> None:
    args = ("--url", fake_webui.url)
    r = run_sdcli(*args, "generate", "-q", *TINY, "--seed", "5", "-o", str(tmp_path), "a cat")
    image = r.stdout.strip()
    r = run_sdcli(*args, "rerun", image, "-q", "-o", str(tmp_path / "again"))
    assert r.returncode == 0, r.stderr
    first, second = history(isolated_sdcli_home)
    assert second["rerun_of"] == first["id"] and second["prompt"] == "a cat"
    assert sent_bodies(fake_webui)[1]["seed"] == 5
    copy = tmp_path / "copy.png"  # another name, the same bytes: found by its sha256
    copy.write_bytes(Path(image).read_bytes())
    assert run_sdcli(*args, "rerun", str(copy), "-q", "-o", str(tmp_path)).returncode == 0
    assert history(isolated_sdcli_home)[-1]["rerun_of"] == first["id"]
    other = tmp_path / "x.png"
    other.write_bytes(b"not a png")
    r = run_sdcli(*args, "rerun", str(other))
    assert r.returncode == 2 and "x.png" in error_line(r.stderr)
    r = run_sdcli(*args, "rerun", str(tmp_path / "missing.png"))
    assert r.returncode == 2 and "neither a generation ID nor an image" in error_line(r.stderr)


def test_two_processes_at_once_are_both_recorded(
    fake_webui: FakeWebUI, isolated_sdcli_home: Path, tmp_path: Path
) -> None:
    fake_webui.pause_at_step(1)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sdcli",
                "--url",
                fake_webui.url,
                "generate",
                "-q",
                *TINY,
                "-o",
                str(tmp_path),
                f"prompt {n}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (1, 2)
    ]
    # both have sent their request (so both opened the database and wrote their first row)
    # before either gets an answer
    assert fake_webui.wait_paused(30) and fake_webui.wait_for_request(TXT2IMG, count=2, timeout=30)
    fake_webui.resume()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "warning" not in err
    gens = history(isolated_sdcli_home)
    assert sorted(g["prompt"] for g in gens) == ["prompt 1", "prompt 2"]
    assert all(g["outcome"] == "ok" and len(g["images"]) == 1 for g in gens)


def test_an_unwritable_history_warns_once_and_the_run_goes_on(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the history's folder should be\n")
    env = {"SDCLI_HISTORY": str(blocker / "history.db")}
    r = run_sdcli(
        "--url", fake_webui.url, "generate", *TINY, "-c", "2", "-o", str(tmp_path), "a cat",
        env=env,
    )  # fmt: skip
    assert r.returncode == 0
    assert len(r.stdout.splitlines()) == 2  # both images saved
    [warning] = warnings(r.stderr)
    assert "not (fully) recorded" in warning


def test_a_locked_history_warns_once_and_the_run_goes_on(
    fake_webui: FakeWebUI, isolated_sdcli_home: Path, tmp_path: Path
) -> None:
    path = isolated_sdcli_home / "history.db"
    store.connect(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # e.g. a long write by another program
    try:
        r = run_sdcli(
            "--url", fake_webui.url, "generate", *TINY, "-o", str(tmp_path), "a cat",
        )  # fmt: skip
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1
    [warning] = warnings(r.stderr)
    assert "locked" in warning


def test_a_read_only_history_directory_as_nobody(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    """Root ignores permission bits: the run is forked as `nobody` (see test_limits)."""
    import importlib

    from test_limits import run_forked_as_nobody

    # Everything a run imports is loaded before the fork: `nobody` may not be able to read the
    # interpreter's files. A run in this process (as root, not recorded) loads it.
    args = ["--url", fake_webui.url, "generate", *TINY, "-o", str(tmp_path / "warm"), "a cat"]
    assert invoke([*args, "--no-history"]).exit_code == 0
    for module in ("sdcli.history.recorder", "sdcli.history.store"):
        importlib.import_module(module)

    tmp_path.chmod(0o755)
    (tmp_path / "home").mkdir(mode=0o755)  # sdcli's home, owned by root: nobody cannot write it
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    code, stdout, stderr = run_forked_as_nobody(
        tmp_path, ["--url", fake_webui.url, "generate", *TINY, "-o", "out", "a cat"]
    )
    assert code == 0, stderr
    assert (tmp_path / stdout.strip()).is_file()
    if os.geteuid() == 0:
        assert not (tmp_path / "home" / "history.db").exists()
        [warning] = warnings(stderr)
        assert "cannot open the history" in warning


def test_no_history_and_history_off_record_nothing(
    fake_webui: FakeWebUI, isolated_sdcli_home: Path, tmp_path: Path
) -> None:
    base = ("--url", fake_webui.url, "generate", "-q", *TINY, "-o", str(tmp_path), "a cat")
    assert run_sdcli(*base, "--no-history").returncode == 0
    assert run_sdcli(*base, env={"SDCLI_HISTORY": "off"}).returncode == 0
    (isolated_sdcli_home / "config.toml").write_text("history = false\n")
    assert run_sdcli(*base).returncode == 0
    assert not (isolated_sdcli_home / "history.db").exists()
    assert len(list(tmp_path.glob("*.png"))) == 3

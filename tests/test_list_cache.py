"""The server's lists cached on disk (sdcli.listcache): one request per batch once warm, and never
a wrong answer because of the cache. Real sdcli runs over loopback HTTP against the fake."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from sdcli import __version__
from sdcli.config import cache_dir
from sdcli.listcache import ListCache, file_name
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import SdcliProcess, error_line, generate, run_sdcli, sdcli, warnings

MakeFake = Callable[..., FakeWebUI]
TXT2IMG = "/sdapi/v1/txt2img"
SAMPLERS = "/sdapi/v1/samplers"
LISTS = (SAMPLERS, "/sdapi/v1/schedulers", "/sdapi/v1/version", "/sdapi/v1/sd-models")


def cache_file(fake: FakeWebUI) -> Path:
    return cache_dir() / file_name(fake.url)


def warm(fake: FakeWebUI, out: Path, *args: str) -> None:
    """One run that fills the cache, then a clean request log."""
    r = generate(fake, out, *args, "a cat")
    assert r.exit_code == 0, r.stderr
    assert cache_file(fake).is_file()
    fake.clear_requests()


def paths(fake: FakeWebUI) -> list[str]:
    return [f"{r.method} {r.path}" for r in fake.requests]


def test_a_warm_cache_sends_one_request_per_batch(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    # chibi checks a sampler and a scheduler and overrides clip skip (a pinned option)
    warm(fake_webui, tmp_path, "-p", "chibi")
    r = run_sdcli(
        "--url", fake_webui.url, "generate", "-p", "chibi", "--count", "2", "-o",
        str(tmp_path), "a dog",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert paths(fake_webui) == [f"POST {TXT2IMG}"] * 2
    body = fake_webui.requests_to(TXT2IMG)[0].json
    assert (body["sampler_name"], body["scheduler"]) == ("DPM++ 2M", "Karras")


def test_a_cold_run_asks_the_lists_and_pins_once(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    r = generate(fake_webui, tmp_path, "-p", "chibi", "a cat")
    assert r.exit_code == 0, r.stderr
    asked = paths(fake_webui)
    assert f"GET {SAMPLERS}" in asked and asked.count("POST /sdapi/v1/options") == 1
    saved = json.loads(cache_file(fake_webui).read_text())
    assert saved["url"] == fake_webui.url and saved["sdcli"] == __version__
    assert {"samplers", "schedulers", "sdnext", "held"} <= set(saved["lists"])
    assert "options" not in saved["lists"]  # never cached: other clients change it


def test_a_cold_run_asks_for_its_lists_at_once(
    fake_webui: FakeWebUI, spawn_sdcli: Callable[..., SdcliProcess], tmp_path: Path
) -> None:
    """Without the cache, the lists a run is sure to need go out together, not one after
    another; every name is still checked before anything is generated, and a list that fails
    stops the run as it would have alone."""
    fake_webui.fail(SAMPLERS, mode="hang")
    p = spawn_sdcli(
        "--url", fake_webui.url, "generate", "--sampler", "Euler a", "--negative", "EasyNegative",
        "-o", str(tmp_path), "a cat",
    )  # fmt: skip
    # while the samplers are held: the flavour, then the schedulers (no SD.Next), the embeddings
    assert fake_webui.wait_for_request("/sdapi/v1/schedulers", timeout=30)
    assert fake_webui.wait_for_request("/sdapi/v1/embeddings", timeout=30)
    assert fake_webui.requests_to("/sdapi/v1/version")
    fake_webui.release_hangs()  # the held request's connection closes unanswered
    code, stdout, stderr = p.finish()
    assert (code, stdout) == (3, "")
    assert SAMPLERS in error_line(stderr)
    assert not fake_webui.requests_to(TXT2IMG)
    assert [r.path for r in fake_webui.requests].count(SAMPLERS) == 1


def test_a_sampler_new_since_the_cache_is_fetched_before_any_error(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    warm(fake_webui, tmp_path, "--sampler", "Euler a")
    fake_webui.rename_sampler("Euler a", "Euler Ancestral")
    r = generate(fake_webui, tmp_path, "--sampler", "Euler Ancestral", "a cat")
    assert r.exit_code == 0, r.stderr
    assert paths(fake_webui).count(f"GET {SAMPLERS}") == 1
    assert fake_webui.requests_to(TXT2IMG)[0].json["sampler_name"] == "Euler Ancestral"
    names = [
        s["name"]
        for s in json.loads(cache_file(fake_webui).read_text())["lists"]["samplers"]["value"]
    ]
    assert "Euler Ancestral" in names and "Euler a" not in names


def test_a_stale_sampler_the_server_ignored_drops_the_cache(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    warm(fake_webui, tmp_path, "--sampler", "Euler a")
    fake_webui.rename_sampler("Euler a", "Euler Ancestral")
    # still in the cache: sent, and 1.10.1 silently makes it with its first sampler
    r = generate(fake_webui, tmp_path, "--sampler", "Euler a", "a cat")
    assert r.exit_code == 0, r.stderr
    assert warnings(r.stderr) == [
        "sdcli: warning: the server used sampler 'DPM++ 2M' instead of 'Euler a'"
    ]
    assert not cache_file(fake_webui).exists()
    # the next run asks the server, which no longer knows the name: an error before any job
    fake_webui.clear_requests()
    r = generate(fake_webui, tmp_path, "--sampler", "Euler a", "a cat")
    assert r.exit_code == 2
    assert "Euler a" in error_line(r.stderr)
    assert f"GET {SAMPLERS}" in paths(fake_webui) and not fake_webui.requests_to(TXT2IMG)


def test_an_unknown_name_is_asked_once_and_then_an_error(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    warm(fake_webui, tmp_path, "--sampler", "Euler a")
    r = generate(fake_webui, tmp_path, "--sampler", "No Such Sampler", "a cat")
    assert r.exit_code == 2, r.stderr
    assert paths(fake_webui).count(f"GET {SAMPLERS}") == 1
    assert not fake_webui.requests_to(TXT2IMG)


def test_a_model_another_client_selected_on_forge_is_not_taken_from_the_cache(
    make_fake_webui: MakeFake, tmp_path: Path
) -> None:
    fake = make_fake_webui(profile="forge")
    warm(fake, tmp_path, "--sampler", "Euler a")
    # another client selects another checkpoint; Forge loads it with the next job
    other = "anime/counterfeitV30_v30.safetensors [cbfba64e66]"
    requests.post(fake.url + "/sdapi/v1/options", json={"sd_model_checkpoint": other}, timeout=30)
    fake.clear_requests()
    r = generate(fake, tmp_path, "--sampler", "Euler a", "a cat")
    assert r.exit_code == 0, r.stderr
    assert warnings(r.stderr) == []  # the selection is read afresh: no false "fell back"
    assert fake.current_model == other


def test_a_model_asked_by_name_after_another_client_switched(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    warm(fake_webui, tmp_path, "--model", "qteamixQ_gamma")
    fake_webui.current_model = "counterfeitV30_v30"  # another client's set-model
    r = generate(fake_webui, tmp_path, "--model", "qteamixQ_gamma", "a cat")
    assert r.exit_code == 0, r.stderr
    assert paths(fake_webui) == [f"POST {TXT2IMG}"]
    body = fake_webui.requests_to(TXT2IMG)[0].json
    assert body["override_settings"]["sd_model_checkpoint"].startswith("qteamixQ_gamma")
    assert warnings(r.stderr) == []


def test_an_answer_with_another_model_drops_the_cache(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    warm(fake_webui, tmp_path, "--model", "qteamixQ_gamma")
    saved = json.loads(cache_file(fake_webui).read_text())
    for model in saved["lists"]["models"]["value"]:  # a checkpoint replaced on disk: a new hash
        if model["model_name"] == "qteamixQ_gamma":
            model["hash"], model["title"] = "0123456789", "qteamixQ_gamma.safetensors [0123456789]"
    cache_file(fake_webui).write_text(json.dumps(saved))
    r = generate(fake_webui, tmp_path, "--model", "qteamixQ_gamma", "a cat")
    assert r.exit_code == 0, r.stderr
    assert any("instead of 'qteamixQ_gamma.safetensors [0123456789]'" in w
               for w in warnings(r.stderr)), r.stderr  # fmt: skip
    assert not cache_file(fake_webui).exists()


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"[]",
        json.dumps({"format": 1, "sdcli": "0.0.1-old", "url": "X", "lists": {}}).encode(),
        json.dumps({"format": 999, "sdcli": __version__, "url": "X", "lists": {}}).encode(),
    ],
    ids=["corrupt", "binary", "not-an-object", "other-version", "other-format"],
)
def test_a_bad_cache_file_is_ignored_and_rewritten(
    fake_webui: FakeWebUI, tmp_path: Path, content: bytes
) -> None:
    warm(fake_webui, tmp_path, "--sampler", "Euler a")
    path = cache_file(fake_webui)
    if b'"url": "X"' in content:
        content = content.replace(b'"url": "X"', json.dumps({"url": fake_webui.url})[1:-1].encode())
    path.write_bytes(content)
    r = generate(fake_webui, tmp_path, "--sampler", "Euler a", "a cat")
    assert r.exit_code == 0, r.stderr
    assert f"GET {SAMPLERS}" in paths(fake_webui)
    saved = json.loads(path.read_text())
    assert saved["sdcli"] == __version__ and "samplers" in saved["lists"]


def test_an_unreadable_cache_is_ignored(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    cache_file(fake_webui).mkdir(parents=True)  # a directory where the file should be
    for _ in range(2):
        r = generate(fake_webui, tmp_path, "--sampler", "Euler a", "a cat")
        assert r.exit_code == 0, r.stderr
        assert warnings(r.stderr) == []
    assert paths(fake_webui).count(f"GET {SAMPLERS}") == 2


def test_an_expired_list_is_fetched_again(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    warm(fake_webui, tmp_path, "--sampler", "Euler a")
    saved = json.loads(cache_file(fake_webui).read_text())
    saved["lists"]["samplers"]["at"] -= 301  # older than the default life of 300 s
    cache_file(fake_webui).write_text(json.dumps(saved))
    r = generate(fake_webui, tmp_path, "--sampler", "Euler a", "a cat")
    assert r.exit_code == 0, r.stderr
    assert paths(fake_webui) == [f"GET {SAMPLERS}", f"POST {TXT2IMG}"]


def test_no_cache_flag_asks_the_server_and_renews_the_file(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    warm(fake_webui, tmp_path, "--sampler", "Euler a")
    before = json.loads(cache_file(fake_webui).read_text())["lists"]["samplers"]["at"]
    r = sdcli(fake_webui, "--no-cache", "generate", "--sampler", "Euler a", "-o", str(tmp_path),
              "a cat")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert {f"GET {p}" for p in LISTS[:3]} <= set(paths(fake_webui))
    after = json.loads(cache_file(fake_webui).read_text())["lists"]["samplers"]["at"]
    assert after > before


def test_a_cache_life_of_zero_turns_it_off(
    fake_webui: FakeWebUI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SDCLI_CACHE_TTL", "0")
    for _ in range(2):
        r = generate(fake_webui, tmp_path, "--sampler", "Euler a", "a cat")
        assert r.exit_code == 0, r.stderr
    assert paths(fake_webui).count(f"GET {SAMPLERS}") == 2
    assert not cache_file(fake_webui).exists()


@pytest.mark.parametrize("value", ["-1", "soon", "nan", "86401"])
def test_a_bad_cache_life_is_a_usage_error(
    fake_webui: FakeWebUI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SDCLI_CACHE_TTL", value)
    r = generate(fake_webui, tmp_path, "a cat")
    assert r.exit_code == 2
    assert "SDCLI_CACHE_TTL" in error_line(r.stderr, alone=True)
    assert not fake_webui.requests_to(TXT2IMG)


def test_set_model_reads_the_servers_list_not_the_cache(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    warm(fake_webui, tmp_path, "--model", "qteamixQ_gamma")
    saved = json.loads(cache_file(fake_webui).read_text())
    saved["lists"]["models"]["value"].append(
        {"title": "ghost.safetensors", "model_name": "ghost", "filename": "", "hash": None,
         "sha256": None, "config": None}
    )  # fmt: skip
    cache_file(fake_webui).write_text(json.dumps(saved))
    r = sdcli(fake_webui, "set-model", "ghost")
    assert r.exit_code == 2, r.stderr
    assert "ghost" in error_line(r.stderr)
    models = json.loads(cache_file(fake_webui).read_text())["lists"]["models"]["value"]
    assert "ghost" not in {m["model_name"] for m in models}  # the server's list replaced it


def test_credentials_never_reach_the_cache(make_fake_webui: MakeFake, tmp_path: Path) -> None:
    fake = make_fake_webui(auth=("alice", "s3cr3t-pw"))
    host = fake.url.split("://", 1)[1]
    r = generate(f"http://alice:s3cr3t-pw@{host}", tmp_path, "--sampler", "Euler a", "a cat")
    assert r.exit_code == 0, r.stderr
    files = list(cache_dir().rglob("*"))
    assert [f.name for f in files] == [file_name(fake.url)]
    for f in files:
        text = f.read_bytes()
        assert b"alice" not in text and b"s3cr3t" not in text
        assert "alice" not in f.name
    assert oct(files[0].stat().st_mode & 0o777) == oct(0o600)


def test_writers_at_once_never_leave_a_torn_file(tmp_path: Path) -> None:
    """Threads writing and reading one server's file: every read is a whole file."""
    url = "http://127.0.0.1:1"
    big: list[Any] = [f"upscaler {i:05d}" for i in range(20_000)]  # ~0.4 MB: many write calls
    stop = threading.Event()
    torn: list[str] = []

    def write(n: int) -> None:
        cache = ListCache(tmp_path, url, 300.0)
        for i in range(15):
            cache.put("upscalers", [*big, f"writer {n} round {i}"])

    def read() -> None:
        path = tmp_path / file_name(url)
        while not stop.is_set():
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            try:
                json.loads(data)
            except ValueError as exc:
                torn.append(str(exc))

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert torn == []
    found, value = ListCache(tmp_path, url, 300.0).get("upscalers")
    assert found and value[:-1] == big
    assert [p.name for p in tmp_path.iterdir()] == [file_name(url)]  # no temporary file left


def test_a_warm_run_imports_nothing_the_cache_answered(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    """Nothing generate does not use: the flavour probe's module (`sdcli.serverinfo`) is not
    loaded when the cache knows, nor the types of the lists generate never reads."""
    import os
    import subprocess
    import sys

    warm(fake_webui, tmp_path, "-p", "chibi")
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sdcli", "--url", fake_webui.url, "generate",
         "-p", "chibi", "-o", str(tmp_path), "a dog"],
        capture_output=True, text=True, env=os.environ.copy(), timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines() if "|" in line}
    assert "sdcli.run" in imported and "sdcli.listcache" in imported
    assert "sdcli.serverinfo" not in imported
    assert "sdcli.listtypes" not in imported  # the other lists' types: not generate's
    assert paths(fake_webui) == [f"POST {TXT2IMG}"]


def test_refresh_drops_the_cache(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    warm(fake_webui, tmp_path, "--sampler", "Euler a")
    r = sdcli(fake_webui, "refresh", "checkpoints")
    assert r.exit_code == 0, r.stderr
    assert not cache_file(fake_webui).exists()
    r = generate(fake_webui, tmp_path, "--sampler", "Euler a", "a cat")
    assert r.exit_code == 0, r.stderr
    assert f"GET {SAMPLERS}" in paths(fake_webui)


def test_on_a_terminal_a_warm_run_adds_only_progress_polls(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    """(Live previews add one GET /options, the server's preview settings: never cached.)"""
    from terminal_helpers import Terminal, run_on_terminal

    warm(fake_webui, tmp_path, "-p", "chibi")
    fake_webui.pause_at_step(3)

    def at_step_3(term: Terminal) -> None:
        fake_webui.resume()

    screen = run_on_terminal(
        "--url", fake_webui.url, "generate", "-p", "chibi", "--no-preview", "a dog", "-o", "out",
        cwd=tmp_path, until="step 3/27", then=at_step_3,
    )  # fmt: skip
    assert screen.exit_code == 0, screen.text
    assert any("saved 1 image" in line for line in screen.lines), screen.text
    polls = ("/internal/progress", "/sdapi/v1/progress")
    others = [p for p in paths(fake_webui) if p.split(" ", 1)[1] not in polls]
    assert others == [f"POST {TXT2IMG}"]
    assert len(paths(fake_webui)) > 1  # the bar did poll


def test_a_style_and_a_lora_new_since_the_cache_are_fetched_before_any_error(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    style = {"name": "cinematic", "prompt": "{prompt}, film still", "negative_prompt": ""}
    lora = {"name": "add_detail", "alias": "add_detail", "path": "/m/Lora/a.safetensors"}
    fake_webui.serve_list("prompt-styles", [style])
    fake_webui.serve_list("loras", [lora])
    warm(fake_webui, tmp_path, "--style", "cinematic", "<lora:add_detail:0.5> x")
    assert {"styles", "loras"} <= set(json.loads(cache_file(fake_webui).read_text())["lists"])
    fake_webui.serve_list("prompt-styles", [style, {**style, "name": "noir"}])
    fake_webui.serve_list("loras", [lora, {**lora, "name": "more_light"}])
    r = generate(fake_webui, tmp_path, "--style", "noir", "<lora:more_light:0.5> x")
    assert r.exit_code == 0, r.stderr
    asked = paths(fake_webui)
    assert asked.count("GET /sdapi/v1/prompt-styles") == 1, asked
    assert asked.count("GET /sdapi/v1/loras") == 1, asked
    assert fake_webui.requests_to(TXT2IMG)[0].json["styles"] == ["noir"]
    # and warm again: nothing but the generation
    fake_webui.clear_requests()
    r = generate(fake_webui, tmp_path, "--style", "noir", "<lora:more_light:0.5> x")
    assert r.exit_code == 0, r.stderr
    assert paths(fake_webui) == [f"POST {TXT2IMG}"]


def test_a_warm_run_decodes_each_cached_list_once(
    fake_webui: FakeWebUI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether a list is cached is asked without decoding it (hundreds of checkpoints): a warm
    run with a sampler, a model and a name-like negative prompt decodes each list it uses once,
    and builds no body to find the lists a cold run would ask for at once."""
    from sdcli import listcache, plan

    args = ("--sampler", "Euler a", "--model", "random-sd15", "--negative", "EasyNegative")
    warm(fake_webui, tmp_path, *args)
    decoded: list[str] = []
    for key, decode in listcache.DECODERS.items():

        def counted(raw: Any, key: str = key, decode: Callable[[Any], Any] = decode) -> Any:
            decoded.append(key)
            return decode(raw)

        monkeypatch.setitem(listcache.DECODERS, key, counted)
    built_by: list[str] = []
    real_job_body = plan.job_body

    def job_body(*args: Any, **kwargs: Any) -> Any:
        built_by.append(sys._getframe(1).f_code.co_name)
        return real_job_body(*args, **kwargs)

    monkeypatch.setattr(plan, "job_body", job_body)
    r = generate(fake_webui, tmp_path, *args, "a dog")
    assert r.exit_code == 0, r.stderr
    assert paths(fake_webui) == [f"POST {TXT2IMG}"]
    assert {"samplers", "models", "sdnext", "embeddings"} <= set(decoded)
    assert sorted(decoded) == sorted(set(decoded))  # none twice
    assert "lists_needed" not in built_by and "check_job" in built_by

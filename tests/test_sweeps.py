"""Prompt sweeps end to end against the fake web UI: dynamic prompts (variants, wildcard files,
random or --combinatorial) and X/Y/Z plots with their labelled grid image (README "Prompt
sweeps"). What the fake received is what is checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from sdcli.sweeps import parse_axis
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import error_line, generate, loaded_by, run_sdcli, sdcli, start_sdcli

TXT2IMG = "/sdapi/v1/txt2img"
SMALL = ("--steps", "2", "-W", "64", "-H", "64")


def sent(fake: FakeWebUI) -> list[dict[str, Any]]:
    return [r.json for r in fake.requests_to(TXT2IMG)]


def json_lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture
def wildcards(tmp_path: Path) -> Path:
    folder = tmp_path / "wildcards"
    (folder / "art").mkdir(parents=True)
    (folder / "colours.txt").write_text("red\n# a comment\n\nblue\ngreen\n", encoding="utf-8")
    (folder / "art" / "styles.txt").write_text("oil painting\nwatercolor\n", encoding="utf-8")
    return folder


# --- dynamic prompts ------------------------------------------------------------------------


def test_combinatorial_prompts_from_wildcard_files_expand_as_documented(
    fake_webui: FakeWebUI, tmp_path: Path, wildcards: Path
) -> None:
    result = generate(
        fake_webui, tmp_path / "out", *SMALL, "--seed", "10", "--combinatorial",
        "--wildcards", str(wildcards), "--json", "a __colours__ {cat|dog}, __art/styles__",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    prompts = [body["prompt"] for body in sent(fake_webui)]
    # wildcard values sorted, comments and blank lines skipped; the last choice varies fastest
    assert prompts == [
        f"a {colour} {animal}, {style}"
        for colour in ("blue", "green", "red")
        for animal in ("cat", "dog")
        for style in ("oil painting", "watercolor")
    ]
    # like the Dynamic Prompts extension: the images of one template take seed, seed+1, …
    assert [body["seed"] for body in sent(fake_webui)] == list(range(10, 22))
    lines = json_lines(result.stdout)
    assert [line["prompt"] for line in lines] == prompts  # the prompt sent, per image
    assert {line["template"] for line in lines} == {"a __colours__ {cat|dog}, __art/styles__"}


def test_random_variants_with_a_fixed_seed_come_again(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    template = "a {red|green|blue|black} {cat|dog|fox} on a {hill|boat}"
    args = (*SMALL, "--variants", "5", "--json", template)
    first = generate(fake_webui, tmp_path / "a", "--seed", "100", *args)
    again = generate(fake_webui, tmp_path / "b", "--seed", "100", *args)
    other = generate(fake_webui, tmp_path / "c", "--seed", "300", *args)
    for result in (first, again, other):
        assert result.exit_code == 0, result.stderr
    bodies = sent(fake_webui)
    assert len(bodies) == 15
    runs = [[str(b["prompt"]) for b in bodies[n : n + 5]] for n in (0, 5, 10)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert all("{" not in p and "|" not in p for p in runs[0])
    assert [b["seed"] for b in bodies[:5]] == [100, 101, 102, 103, 104]
    assert [line["prompt"] for line in json_lines(first.stdout)] == runs[0]


def test_a_dynamic_negative_prompt_is_drawn_too(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    every = generate(
        fake_webui, tmp_path / "a", *SMALL, "--combinatorial", "-n", "{blurry|lowres}",
        "a {cat|dog}",
    )  # fmt: skip
    assert every.exit_code == 0, every.stderr
    assert [(b["prompt"], b["negative_prompt"]) for b in sent(fake_webui)] == [
        ("a cat", "blurry"),
        ("a cat", "lowres"),
        ("a dog", "blurry"),
        ("a dog", "lowres"),
    ]
    fake_webui.clear_requests()
    args = (*SMALL, "--seed", "4", "--variants", "6", "-n", "{a|b|c|d|e|f|g|h}", "a cat")
    first = generate(fake_webui, tmp_path / "b", *args)
    again = generate(fake_webui, tmp_path / "c", *args)
    assert first.exit_code == 0 and again.exit_code == 0, first.stderr + again.stderr
    negatives = [b["negative_prompt"] for b in sent(fake_webui)]
    assert negatives[:6] == negatives[6:] and len(set(negatives)) > 1
    assert {b["prompt"] for b in sent(fake_webui)} == {"a cat"}


def test_the_web_uis_own_syntax_is_sent_as_typed(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    prompt = "(masterpiece:1.2), [cat|dog], {best quality}, a__b"
    result = generate(fake_webui, tmp_path, *SMALL, prompt)
    assert result.exit_code == 0, result.stderr
    assert [b["prompt"] for b in sent(fake_webui)] == [prompt]


def test_no_dynamic_sends_a_template_as_typed(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    result = generate(fake_webui, tmp_path, *SMALL, "--no-dynamic", "{a|b} __x__")
    assert result.exit_code == 0, result.stderr
    assert [b["prompt"] for b in sent(fake_webui)] == ["{a|b} __x__"]


DIGITS = "{0|1|2|3|4|5|6|7|8|9}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["a {cat|dog"], "the prompt 'a {cat|dog' is not a valid dynamic prompt at column 3"),
        (["a __nowhere__ cat"], "no wildcard file for __nowhere__ in"),
        ([DIGITS * 3 + "{0|1}"], "gives more than 1000 prompts with --combinatorial"),
        (["-n", "a {b|c", "a cat"], "the negative prompt 'a {b|c' is not a valid dynamic prompt"),
        (["-n", "x{a|b}", DIGITS * 3], "give 2000 pairs with --combinatorial, more than 1000"),
    ],
)
def test_a_bad_template_is_refused_before_anything_is_sent(
    fake_webui: FakeWebUI, tmp_path: Path, wildcards: Path, args: list[str], expected: str
) -> None:
    result = generate(fake_webui, tmp_path, "--wildcards", str(wildcards), "--combinatorial", *args)
    assert result.exit_code == 2
    assert expected in error_line(result.stderr)
    assert fake_webui.requests == []


def test_a_bad_line_of_a_prompts_file_stops_there(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("{a|b} cat\n__missing__ dog\n", encoding="utf-8")
    result = generate(fake_webui, tmp_path, *SMALL, "--seed", "1", "--prompts-file", str(prompts))
    assert result.exit_code == 2
    assert "no wildcard file for __missing__" in error_line(result.stderr)
    assert len(sent(fake_webui)) == 1  # the first line's request only


def test_the_wildcards_directory_comes_from_the_environment_or_the_config(
    fake_webui: FakeWebUI, tmp_path: Path, wildcards: Path, isolated_sdcli_home: Path
) -> None:
    by_env = run_sdcli(
        "--url", fake_webui.url, "generate", "--dry-run", "--seed", "1", "__colours__",
        env={"SDCLI_WILDCARDS": str(wildcards)},
    )  # fmt: skip
    assert by_env.returncode == 0, by_env.stderr
    assert json.loads(by_env.stdout)["prompt"] in ("red", "green", "blue")
    (isolated_sdcli_home / "config.toml").write_text(
        f"wildcards_dir = {json.dumps(str(wildcards))}\n", encoding="utf-8"
    )
    by_config = run_sdcli("--url", fake_webui.url, "generate", "--dry-run", "__colours__")
    assert by_config.returncode == 0, by_config.stderr
    (wildcards.parent / "default").mkdir()
    missing = run_sdcli(
        "--url", fake_webui.url, "generate", "--dry-run", "__colours__",
        env={"SDCLI_WILDCARDS": str(wildcards.parent / "nothing")},
    )  # fmt: skip
    assert missing.returncode == 2
    assert "is not a directory" in error_line(missing.stderr)


def test_the_history_keeps_the_prompt_sent_and_its_template(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    result = generate(fake_webui, tmp_path, *SMALL, "--seed", "5", "a {cat|dog}")
    assert result.exit_code == 0, result.stderr
    shown = run_sdcli("history", "--json")
    assert shown.returncode == 0, shown.stderr
    (row,) = json_lines(shown.stdout)
    assert row["prompt"] == sent(fake_webui)[0]["prompt"]
    assert row["prompt"] in ("a cat", "a dog")
    assert row["template"] == "a {cat|dog}"


@pytest.mark.parametrize(("prompt", "loaded"), [("a cat", False), ("a {cat|dog}", True)])
def test_the_library_is_imported_only_for_a_template(prompt: str, loaded: bool) -> None:
    _, modules = loaded_by(
        "generate",
        "--dry-run",
        prompt,
        env={"SDCLI_URL": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin"},
    )
    lazy = {"dynamicprompts", "pyparsing", "PIL", "sdcli.sweeps", "sdcli.grid"}
    assert sorted(modules & lazy) == (["dynamicprompts", "pyparsing"] if loaded else [])


# --- X/Y/Z plots ----------------------------------------------------------------------------


def test_an_xy_plot_sends_each_cell_and_saves_a_labelled_grid(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = generate(
        fake_webui, out, "-W", "64", "-H", "64", "--xy", "steps=2,3", "--xy", "cfg=5,7.5",
        "--json", "a cat",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    bodies = sent(fake_webui)
    assert [(b["steps"], b["cfg_scale"]) for b in bodies] == [(2, 5), (3, 5), (2, 7.5), (3, 7.5)]
    seeds = {b["seed"] for b in bodies}
    (seed,) = seeds  # one seed drawn for every cell
    assert isinstance(seed, int) and seed >= 0
    *images, grid = json_lines(result.stdout)
    assert len(images) == 4 and all(Path(str(i["path"])).is_file() for i in images)
    assert [i["xyz"] for i in images][1] == {"steps": 3, "cfg_scale": 5}
    assert grid["grid"] is True and grid["cells"] == 4 and grid["missing"] == 0
    assert "-grid-" in Path(str(grid["path"])).name
    assert sorted(p.name for p in out.iterdir()) == sorted(
        Path(str(x["path"])).name for x in [*images, grid]
    )
    with Image.open(str(grid["path"])) as picture:
        picture.load()
        assert "Steps 2, 3" in picture.text["parameters"]
        width, height = picture.size
        left, top = width - 2 * 64, height - 2 * 64
        assert left > 0 and top > 0  # label margins on the left (Y) and on top (X)
        rgb = picture.convert("RGB")
        top_band = rgb.crop((left, 0, width, top))
        left_band = rgb.crop((0, top, left, height))
        for band in (top_band, left_band):  # labels are drawn: not all background
            assert band.getextrema() != ((255, 255), (255, 255), (255, 255))
        with Image.open(str(images[0]["path"])) as first:
            assert (
                rgb.crop((left, top, left + 64, top + 64)).tobytes()
                == first.convert("RGB").tobytes()
            )


def test_a_failed_cell_stays_blank_and_the_grid_is_still_saved(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    fake_webui.pause_at_step(1)
    proc = start_sdcli(
        "--url", fake_webui.url, "generate", "-o", str(tmp_path), "-W", "64", "-H", "64",
        "--xy", "steps=2,3", "--xy", "cfg=5,7", "a cat",
    )  # fmt: skip
    try:
        assert fake_webui.wait_paused(30)
        fake_webui.fail(TXT2IMG, 500)  # the next cell fails; the run stops there
        fake_webui.resume()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    image, grid = out.splitlines()
    assert grid.endswith(".png") and "-grid-" in grid
    assert "3 of 4 cells left blank" in err
    with Image.open(grid) as picture:
        rgb = picture.convert("RGB")
    left, top = rgb.width - 128, rgb.height - 128
    with Image.open(image) as first:
        assert (
            rgb.crop((left, top, left + 64, top + 64)).tobytes() == first.convert("RGB").tobytes()
        )
    blank = rgb.crop((left + 64, top, left + 128, top + 64))
    assert blank.getextrema() == ((224, 224), (224, 224), (224, 224))


def test_with_keep_going_the_other_cells_are_made_around_a_failed_one(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    fake_webui.pause_at_step(1)
    proc = start_sdcli(
        "--url", fake_webui.url, "generate", "-o", str(tmp_path), "-W", "64", "-H", "64",
        "--keep-going", "--xy", "steps=2,3", "--xy", "cfg=5,7", "a cat",
    )  # fmt: skip
    try:
        assert fake_webui.wait_paused(30)
        fake_webui.fail(TXT2IMG, 422)  # the second cell is refused; the others go on
        fake_webui.resume()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    *images, grid = out.splitlines()
    assert len(images) == 3 and "-grid-" in grid
    assert "1 of 4 cells left blank" in err
    assert len(sent(fake_webui)) == 4
    with Image.open(grid) as picture:
        rgb = picture.convert("RGB")
    left, top = rgb.width - 128, rgb.height - 128
    blank = rgb.crop((left + 64, top, left + 128, top + 64))  # X = steps 3, Y = cfg 5
    assert blank.getextrema() == ((224, 224), (224, 224), (224, 224))
    for x, y in ((0, 0), (0, 64), (64, 64)):
        cell = rgb.crop((left + x, top + y, left + x + 64, top + y + 64))
        assert cell.getextrema() != ((224, 224), (224, 224), (224, 224))


def test_name_axes_are_resolved_per_cell(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    result = generate(
        fake_webui, tmp_path, *SMALL, "--xy", "sampler=euler a,dpm++ 2m karras", "a cat"
    )
    assert result.exit_code == 0, result.stderr
    bodies = sent(fake_webui)
    assert [(b["sampler_name"], b.get("scheduler")) for b in bodies] == [
        ("Euler a", None),
        ("DPM++ 2M", "Karras"),
    ]


@pytest.mark.parametrize(
    ("axis", "expected"),
    [
        ("stepz=1,2", "--xy stepz: 'stepz' is no setting (did you mean 'steps'?)"),
        ("steps=2,500", "--xy steps must be between 1 and 150, got 500"),
        ("cfg=5,high", "--xy cfg: 'high' is not a number"),
        ("size=64x64,big", "must look like WIDTHxHEIGHT"),
        ("batch_size=1,2", "'batch_size' cannot be an axis"),
        ("steps", "must look like KEY=V1,V2"),
        ("params.steps=1,2", "--xy params.steps: sdcli sets 'steps' by name"),
        ("params.eta=0.5,NaN", "not a finite number"),
    ],
)
def test_a_bad_axis_is_refused_before_any_request(
    fake_webui: FakeWebUI, tmp_path: Path, axis: str, expected: str
) -> None:
    result = generate(fake_webui, tmp_path, "--xy", axis, "a cat")
    assert result.exit_code == 2
    assert expected in error_line(result.stderr)
    assert fake_webui.requests == []


def test_any_request_field_can_be_an_axis(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    result = generate(
        fake_webui, tmp_path, *SMALL, "--set", "eta=0.2", "--json",
        "--xy", "params.s_noise=1,0.5",
        "--xy", "params.override_settings.eta_noise_seed_delta=0,31337", "a cat",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    bodies = sent(fake_webui)
    assert [(b["s_noise"], b["override_settings"]["eta_noise_seed_delta"]) for b in bodies] == [
        (1, 0),
        (0.5, 0),
        (1, 31337),
        (0.5, 31337),
    ]
    assert {b["eta"] for b in bodies} == {0.2}  # --set of another field stays
    assert json_lines(result.stdout)[3]["xyz"] == {
        "s_noise": 0.5,
        "override_settings": {"eta_noise_seed_delta": 31337},
    }


def test_an_unknown_name_in_any_cell_stops_the_run_before_generating(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    result = generate(fake_webui, tmp_path, "--xy", "sampler=Euler,Eulr", "a cat")
    assert result.exit_code == 2
    assert "no sampler 'Eulr'" in error_line(result.stderr)
    assert sent(fake_webui) == []


def test_dry_run_shows_every_expanded_body(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    result = generate(
        fake_webui, tmp_path, "--dry-run", "--seed", "3", "--combinatorial",
        "--xy", "prompt=cat,dog", "--xy", "size=64x64,128x64", "a {red|blue} cat",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    bodies = json_lines(result.stdout)
    assert [(b["prompt"], b["width"], b["seed"]) for b in bodies] == [
        ("a red cat", 64, 3),
        ("a red dog", 64, 3),
        ("a red cat", 128, 3),
        ("a red dog", 128, 3),
        ("a blue cat", 64, 4),
        ("a blue dog", 64, 4),
        ("a blue cat", 128, 4),
        ("a blue dog", 128, 4),
    ]
    assert sent(fake_webui) == []


def test_a_prompt_axis_needs_its_text_in_the_prompt(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    result = generate(fake_webui, tmp_path, "--xy", "prompt=cat,dog", "a bird")
    assert result.exit_code == 2
    assert "'cat' is not in the prompt 'a bird'" in error_line(result.stderr)
    assert sent(fake_webui) == []


@pytest.mark.parametrize(
    ("item", "texts"),
    [
        ("steps=10-30 (+10)", ("10", "20", "30")),
        ("steps=1-4", ("1", "2", "3", "4")),
        ("cfg=5-9 [3]", ("5", "7", "9")),
        ("cfg=4-5 (+0.5)", ("4", "4.5", "5")),
        ('sampler="DPM++ 2M, Karras",Euler', ("DPM++ 2M, Karras", "Euler")),
        ("seed=-1,42", ("-1", "42")),
    ],
)
def test_axis_values_and_ranges(item: str, texts: tuple[str, ...]) -> None:
    assert parse_axis(item).texts == texts


def test_on_a_terminal_the_grid_path_stands_after_the_cells(
    fake_webui: FakeWebUI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from terminal_helpers import leftover_bar, run_on_terminal

    monkeypatch.setenv("SDCLI_IMAGES", "none")  # rows of text only: paths, summaries
    screen = run_on_terminal(
        "--url", fake_webui.url, "generate", "--steps", "3", "-W", "64", "-H", "64",
        "--xy", "cfg=5,7", "--seed", "9", "a {cat|dog}", "-o", "out",
        columns=80, rows=30, cwd=tmp_path,
    )  # fmt: skip
    assert screen.exit_code == 0, screen.lines
    assert leftover_bar(screen.lines) == [], screen.lines
    paths = [row for row in screen.lines if row.startswith("out/")]
    names = sorted(f"out/{p.name}" for p in (tmp_path / "out").iterdir())
    assert sorted(paths) == names and len(names) == 3
    assert "-grid-" in paths[-1]  # the grid comes last, once its cells are saved
    drawn = [str(b["prompt"]) for b in sent(fake_webui)]
    assert len(set(drawn)) == 1 and drawn[0] in ("a cat", "a dog")
    assert sum(f"'{drawn[0]}': saved 1 image · seed 9" in row for row in screen.lines) == 2


def test_each_variant_gets_its_own_grid_even_with_the_same_prompt(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    result = generate(
        fake_webui, tmp_path, *SMALL, "--seed", "20", "--variants", "2", "--xy", "cfg=5,7",
        "--json", "a {cat|cat}",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert [(b["prompt"], b["seed"], b["cfg_scale"]) for b in sent(fake_webui)] == [
        ("a cat", 20, 5),
        ("a cat", 20, 7),
        ("a cat", 21, 5),
        ("a cat", 21, 7),
    ]
    lines = json_lines(result.stdout)
    grids = [line for line in lines if line.get("grid")]
    assert len(grids) == 2 and all(g["missing"] == 0 for g in grids)
    for grid, seed in zip(grids, (20, 21), strict=True):
        with Image.open(str(grid["path"])) as picture:
            assert f"Seed: {seed}," in picture.text["parameters"]


def test_an_xy_plot_over_two_servers_keeps_going_around_a_failed_cell(
    make_fake_webui: Any, tmp_path: Path
) -> None:
    first, second = make_fake_webui(), make_fake_webui()
    first.fail(TXT2IMG, 422)  # the first cell sent to this server is refused
    result = sdcli(
        first, "--url", second.url, "generate", "-o", str(tmp_path), *SMALL, "--keep-going",
        "--json", "--xy", "steps=2,3", "--xy", "cfg=5,7", "a cat",
    )  # fmt: skip
    assert result.exit_code == 1, result.stderr
    assert sent(first) and sent(second)  # both servers had cells
    assert len(sent(first)) + len(sent(second)) == 4
    *images, grid = json_lines(result.stdout)
    assert len(images) == 3 and grid["grid"] is True and grid["missing"] == 1

"""Embedding names in prompts: a near miss or an embedding the loaded model skips is a warning
(the server would read either as plain words); an ordinary word is never one, nor an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sdcli.names.embeddings import embeddings_used, near_misses, pieces
from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import invoke, warnings

V1 = "/sdapi/v1"
TINY = ("--steps", "2", "-W", "64", "-H", "64")
NAMES = ["EasyNegative", "bad-hands-5", "ziprealism_neg"]


def _item(shape: int) -> dict[str, Any]:
    return {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": shape}


# The API's shape (modules/api/api.py get_embeddings); the captured server had none
# (fixtures/extra/embeddings.json: both tables empty). On an SD 1.5 model an SDXL embedding
# (clip_l + clip_g: 2048 wide) is skipped.
EMBEDDINGS = {
    "loaded": {
        "EasyNegative": {**_item(768), "vectors": 8},
        "bad-hands-5": {**_item(768), "vectors": 6},
    },
    "skipped": {"ziprealism_neg": {**_item(2048), "vectors": 4}},
}


# --- how the web UI finds an embedding in a prompt ---------------------------------------------


def test_pieces_cut_like_clips_pre_tokenizer() -> None:
    assert pieces("EasyNegative, bad-hands-5") == [
        "easynegative", ",", "bad", "-", "hands", "-", "5"
    ]  # fmt: skip
    assert pieces("easy_negative") == ["easy", "_", "negative"]


@pytest.mark.parametrize(
    ("prompt", "used"),
    [
        ("EasyNegative, worst quality", ["EasyNegative"]),
        ("(easynegative:1.2), bad-hands-5", ["EasyNegative", "bad-hands-5"]),  # case aside
        ("[EasyNegative]", ["EasyNegative"]),
        ("easy negative, bad hands 5", []),  # other pieces: plain words
        ("EasyNegativeV2", []),  # a longer word
        ("<lora:EasyNegative:1>", []),  # a LoRA tag is no text
    ],
)
def test_embeddings_used_as_the_web_ui_finds_them(prompt: str, used: list[str]) -> None:
    assert embeddings_used([prompt], NAMES) == used


def test_near_misses_are_other_separators_or_misspelt_names() -> None:
    misses = near_misses(["easy_negative, EasyNegativ, bad_hands_5, bad anatomy"], NAMES)
    assert [(m.word, m.name, m.same_letters) for m in misses] == [
        ("easy_negative", "EasyNegative", True),
        ("EasyNegativ", "EasyNegative", False),
        ("bad_hands_5", "bad-hands-5", True),
    ]


def test_ordinary_words_are_never_taken_for_misspelt_names() -> None:
    prompt = "negative space, easy, easynegativ, hands, bad, five, realism, zip"
    assert near_misses([prompt], NAMES) == []
    assert near_misses(["EasyNegative, (bad-hands-5:0.8)"], NAMES) == []  # used, not missed


# --- end to end over the fake --------------------------------------------------------------------


def run(fake: FakeWebUI, out: Path, *args: str) -> Any:
    return invoke(["--url", fake.url, "generate", *TINY, "-o", str(out), *args])


def test_a_near_miss_is_a_warning_and_the_request_goes_as_typed(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    fake_webui.serve_list("embeddings", EMBEDDINGS)
    negative = "easy_negative, EasyNegativ, bad anatomy"
    r = run(fake_webui, tmp_path, "-n", negative, "a cat")
    assert r.exit_code == 0, r.stderr
    assert warnings(r.stderr) == [
        "sdcli: warning: 'easy_negative' in the negative prompt names no embedding, so the "
        "server reads it as plain words; the embedding is 'EasyNegative' (the web UI matches "
        "an embedding by its name as written, case aside)",
        "sdcli: warning: 'EasyNegativ' in the negative prompt names no embedding, so the "
        "server reads it as plain words; the embedding is 'EasyNegative' (did you mean it?)",
    ]
    (request,) = fake_webui.requests_to(f"{V1}/txt2img")
    assert request.json["negative_prompt"] == negative
    assert len(list(tmp_path.iterdir())) == 1


def test_embeddings_used_rightly_give_no_warning(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    fake_webui.serve_list("embeddings", EMBEDDINGS)
    r = run(fake_webui, tmp_path, "-n", "(easynegative:1.2), bad-hands-5", "a cat, EasyNegative")
    assert r.exit_code == 0, r.stderr
    assert warnings(r.stderr) == []


def test_a_skipped_embedding_is_a_warning(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    fake_webui.serve_list("embeddings", EMBEDDINGS)
    r = run(fake_webui, tmp_path, "-n", "ziprealism_neg, EasyNegative", "a cat")
    assert r.exit_code == 0, r.stderr
    assert warnings(r.stderr) == [
        "sdcli: warning: the server skips the embedding 'ziprealism_neg' for the loaded model "
        "(it was made for another architecture): the prompt's words read as plain words"
    ]


def test_with_a_model_for_the_request_skipped_ones_are_not_guessed(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    """The server's skipped list is the loaded model's; the request's model may take them."""
    fake_webui.serve_list("embeddings", EMBEDDINGS)
    r = run(fake_webui, tmp_path, "--model", "qteamixQ_gamma", "-n", "ziprealism_neg", "a cat")
    assert r.exit_code == 0, r.stderr
    assert warnings(r.stderr) == []


def test_each_warning_is_said_once_a_run(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    fake_webui.serve_list("embeddings", EMBEDDINGS)
    negative = ("-n", "easy_negative, ziprealism_neg")
    args = ["--url", fake_webui.url, "generate", *TINY, "-c", "2", *negative, "-o", str(tmp_path)]
    r = invoke([*args, "-"], input="a cat\na dog\n")
    assert r.exit_code == 0, r.stderr
    assert len(warnings(r.stderr)) == 2
    assert len(fake_webui.requests_to(f"{V1}/txt2img")) == 4
    assert len(fake_webui.requests_to(f"{V1}/embeddings")) <= 2  # the names, the skipped ones


def test_a_server_without_the_list_gives_no_warning(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    fake_webui.fail(f"{V1}/embeddings", 404, times=None)
    r = run(fake_webui, tmp_path, "-n", "easy_negative", "a cat")
    assert r.exit_code == 0, r.stderr
    assert warnings(r.stderr) == []
    assert len(fake_webui.requests_to(f"{V1}/txt2img")) == 1


def test_a_failing_list_gives_no_warning_and_no_failure(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    fake_webui.fail(f"{V1}/embeddings", 500, times=None)
    r = run(fake_webui, tmp_path, "-n", "easy_negative", "a cat")
    assert r.exit_code == 0, r.stderr
    assert len(fake_webui.requests_to(f"{V1}/txt2img")) == 1


def test_plain_words_cost_no_request(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    fake_webui.serve_list("embeddings", EMBEDDINGS)
    r = run(fake_webui, tmp_path, "-n", "easy negative, blurry", "a cat on a mat")
    assert r.exit_code == 0, r.stderr
    assert fake_webui.requests_to(f"{V1}/embeddings") == []

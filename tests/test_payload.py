"""Unit tests for the pure request builder."""

from __future__ import annotations

import pytest

from sdcli.errors import UsageError
from sdcli.payload import apply_template, build_payload, merge_values, parse_set


def test_merge_later_layers_win_and_params_merge_key_by_key() -> None:
    merged = merge_values(
        [
            {"steps": 20, "params": {"tiling": True, "override_settings": {"a": 1}}},
            {"steps": 30, "seed": None, "params": {"override_settings": {"b": 2}}},
        ]
    )
    assert merged == {
        "steps": 30,
        "params": {"tiling": True, "override_settings": {"a": 1, "b": 2}},
    }


def test_template_wraps_prompt_and_leaves_other_braces() -> None:
    assert apply_template("masterpiece, {prompt}, best", "a {cat}") == "masterpiece, a {cat}, best"
    assert apply_template(None, "x") == "x"


def test_clip_skip_travels_as_override_setting_not_as_a_field() -> None:
    body = build_payload({"clip_skip": 2}, "a cat")
    assert "clip_skip" not in body
    assert body["override_settings"] == {"CLIP_stop_at_last_layers": 2}
    assert body["override_settings_restore_afterwards"] is True


def test_model_title_goes_to_override_settings() -> None:
    body = build_payload({}, "a cat", model_title="m.safetensors [abc]")
    assert body["override_settings"]["sd_model_checkpoint"] == "m.safetensors [abc]"


def test_set_wins_over_everything_and_dotted_keys_nest() -> None:
    sets = parse_set(["steps=5", "override_settings.sd_vae=auto", 'styles=["a"]', "tiling=true"])
    body = build_payload({"steps": 27, "clip_skip": 2}, "p", sets=sets)
    assert body["steps"] == 5
    assert body["styles"] == ["a"]
    assert body["tiling"] is True
    assert body["override_settings"] == {"CLIP_stop_at_last_layers": 2, "sd_vae": "auto"}


def test_set_plain_text_value_is_a_string() -> None:
    assert parse_set(["hr_upscaler=R-ESRGAN 4x+"]) == {"hr_upscaler": "R-ESRGAN 4x+"}


@pytest.mark.parametrize("bad", ["novalue", "=3", "a..b=1", "x=null"])
def test_set_rejects_malformed_items(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_set([bad])


def test_no_nulls_are_ever_sent() -> None:
    body = build_payload({"steps": None, "params": {"eta": None}}, "p")
    assert body == {"prompt": "p"}


def test_named_settings_beat_the_same_field_in_params() -> None:
    values = {
        "steps": 5,
        "clip_skip": 2,
        "params": {"steps": 30, "sampler_name": "Euler", "override_settings": {"sd_vae": "x"}},
    }
    body = build_payload(values, "p", sampler_name="DPM++ 2M", model_title="m [1]")
    assert body["steps"] == 5
    assert body["sampler_name"] == "DPM++ 2M"
    assert body["override_settings"] == {
        "sd_vae": "x",
        "CLIP_stop_at_last_layers": 2,
        "sd_model_checkpoint": "m [1]",
    }
    params_clip = {"clip_skip": 2, "params": {"override_settings": {"CLIP_stop_at_last_layers": 1}}}
    assert build_payload(params_clip, "p")["override_settings"]["CLIP_stop_at_last_layers"] == 2

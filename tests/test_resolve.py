"""Name resolution for checkpoints, samplers and schedulers (pure)."""

from __future__ import annotations

import pytest

from sdcli.apitypes import Sampler, Scheduler, SdModel
from sdcli.errors import NotFoundError
from sdcli.names.lookup import resolve_model, resolve_sampler

MODELS = [
    SdModel("qteamixQ_gamma.safetensors [58174ec2a4]", "qteamixQ_gamma", hash="58174ec2a4"),
    SdModel(
        "anime/counterfeitV30_v30.safetensors [cbfba64e66]",
        "anime_counterfeitV30_v30",
        hash="cbfba64e66",
        sha256="cbfba64e66" + "0" * 54,
    ),
    SdModel(
        "v1-5-pruned-emaonly.safetensors [6ce0161689]", "v1-5-pruned-emaonly", hash="6ce0161689"
    ),
    SdModel("v1-5-inpainting.safetensors", "v1-5-inpainting"),
]
SAMPLERS = [
    Sampler("DPM++ 2M", ("k_dpmpp_2m",)),
    Sampler("Euler a", ("k_euler_a", "k_euler_ancestral")),
    Sampler("Euler", ("k_euler",)),
]
SCHEDULERS = [
    Scheduler("automatic", "Automatic"),
    Scheduler("karras", "Karras"),
    Scheduler("sgm_uniform", "SGM Uniform", ("SGMUniform",)),
]


@pytest.mark.parametrize(
    ("typed", "title"),
    [
        ("qteamixQ_gamma", "qteamixQ_gamma.safetensors [58174ec2a4]"),
        ("qteamixQ_gamma.safetensors [58174ec2a4]", "qteamixQ_gamma.safetensors [58174ec2a4]"),
        ("QTEAMIXQ_GAMMA", "qteamixQ_gamma.safetensors [58174ec2a4]"),
        ("counterfeit", "anime/counterfeitV30_v30.safetensors [cbfba64e66]"),
        ("cbfba64e66", "anime/counterfeitV30_v30.safetensors [cbfba64e66]"),
        ("counterfeitV30_v30.safetensors", "anime/counterfeitV30_v30.safetensors [cbfba64e66]"),
        ("v1-5-inpainting", "v1-5-inpainting.safetensors"),
    ],
)
def test_model_names_resolve_as_a_person_types_them(typed: str, title: str) -> None:
    assert resolve_model(typed, MODELS).title == title


def test_ambiguous_model_lists_candidates() -> None:
    with pytest.raises(NotFoundError) as err:
        resolve_model("v1-5", MODELS)
    assert len(err.value.candidates) == 2
    assert "several" in str(err.value)


def test_unknown_model_suggests() -> None:
    with pytest.raises(NotFoundError) as err:
        resolve_model("qteamix_gama", MODELS)
    assert "did you mean" in str(err.value)


def test_combined_sampler_name_is_split_on_new_servers() -> None:
    assert resolve_sampler("DPM++ 2M Karras", None, SAMPLERS, SCHEDULERS) == ("DPM++ 2M", "Karras")


def test_aliases_and_case_are_accepted() -> None:
    assert resolve_sampler("k_euler_a", "sgmuniform", SAMPLERS, SCHEDULERS) == (
        "Euler a",
        "SGM Uniform",
    )
    assert resolve_sampler("euler A", None, SAMPLERS, SCHEDULERS) == ("Euler a", None)


def test_unknown_sampler_and_scheduler_fail_with_suggestions() -> None:
    with pytest.raises(NotFoundError, match="did you mean 'Euler a'"):
        resolve_sampler("Euler b", None, SAMPLERS, SCHEDULERS)
    with pytest.raises(NotFoundError, match="scheduler"):
        resolve_sampler("Euler", "Karas2000", SAMPLERS, SCHEDULERS)


def test_old_servers_keep_combined_names() -> None:
    old = [Sampler("DPM++ 2M Karras"), Sampler("Euler a")]
    assert resolve_sampler("DPM++ 2M Karras", None, old, None) == ("DPM++ 2M Karras", None)
    assert resolve_sampler("DPM++ 2M", "Karras", old, None) == ("DPM++ 2M Karras", None)
    with pytest.raises(NotFoundError):
        resolve_sampler("DPM++ 2M", None, old, None)

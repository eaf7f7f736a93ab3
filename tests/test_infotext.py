"""Infotext parsing and writing against real captures, hand-written edge cases and properties."""

from __future__ import annotations

import ast
import json
import operator
import re
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sdcli.errors import UsageError
from sdcli.infotext import (
    Infotext,
    format_infotext,
    parse_infotext,
    request_fields,
    webui_parameters,
)

FIXTURES = Path(__file__).parent / "fixtures" / "infotext"
CAPTURED: list[dict[str, str]] = json.loads((FIXTURES / "captured.json").read_text("utf-8"))
TRICKY: list[dict[str, Any]] = json.loads((FIXTURES / "tricky.json").read_text("utf-8"))
PNG_INFO: dict[str, Any] = json.loads((FIXTURES / "png-info.json").read_text("utf-8"))
SAMPLE_TEXT: str = ast.literal_eval((FIXTURES / "sample-png-info.txt").read_text("utf-8"))[
    "parameters"
]
# What the web UI's png-info adds to `parameters` when a key is absent (webui-api.md §8.2 step 6).
WEBUI_DEFAULTS = {
    "Clip skip",
    "Hires resize-1",
    "Hires resize-2",
    "Hires sampler",
    "Hires schedule type",
    "Hires checkpoint",
    "Hires prompt",
    "Hires negative prompt",
    "Mask mode",
    "Masked content",
    "Inpaint area",
    "Masked area padding",
    "RNG",
    "Schedule type",
    "Schedule max sigma",
    "Schedule min sigma",
    "Schedule rho",
    "VAE Encoder",
    "VAE Decoder",
    "FP8 weight",
    "Refiner switch by sampling steps",
    "Emphasis",
}


def ordered(info: Infotext) -> tuple[str, str, list[tuple[str, str]]]:
    """Infotext equality that also checks the order of the params (dict == ignores order)."""
    return info.prompt, info.negative_prompt, list(info.params.items())


# --- real captures -----------------------------------------------------------------------------


def test_captures_cover_every_fixture_source() -> None:
    assert len(CAPTURED) >= 10
    assert any("Negative prompt:" in c["text"] for c in CAPTURED)
    assert any(c["text"].startswith("Steps:") for c in CAPTURED)  # the empty-prompt capture


@pytest.mark.parametrize("text", [c["text"] for c in CAPTURED], ids=[c["source"] for c in CAPTURED])
def test_captured_infotext_round_trips_byte_for_byte(text: str) -> None:
    info = parse_infotext(text)
    assert format_infotext(info) == text
    assert info.params["Version"] == "v1.10.1"
    assert info.steps is not None and info.seed is not None


def test_sample_png_text_parses_to_its_fields() -> None:
    info = parse_infotext(SAMPLE_TEXT)
    assert ordered(info) == (
        "a cat",
        "",
        [
            ("Steps", "2"),
            ("Sampler", "Euler a"),
            ("Schedule type", "Automatic"),
            ("CFG scale", "7.0"),
            ("Seed", "634212383"),
            ("Size", "64x64"),
            ("Model hash", "6d338e2388"),
            ("Model", "random-sd15"),
            ("Clip skip", "2"),
            ("Version", "v1.10.1"),
        ],
    )
    assert (info.width, info.height, info.seed, info.steps) == (64, 64, 634212383, 2)
    assert (info.cfg_scale, info.clip_skip, info.sampler, info.scheduler) == (
        7.0,
        2,
        "Euler a",
        "Automatic",
    )
    assert (info.model, info.model_hash) == ("random-sd15", "6d338e2388")


@pytest.mark.parametrize("variant", sorted(PNG_INFO))
def test_webui_parameters_match_the_servers_png_info(variant: str) -> None:
    body = PNG_INFO[variant]["body"]
    expected: dict[str, Any] = body["parameters"]
    ours = webui_parameters(parse_infotext(body["info"]))
    assert {key: expected[key] for key in ours if key in expected} == ours
    assert list(ours) == [key for key in expected if key in ours]  # same order too
    missing = set(expected) - set(ours)
    assert missing <= WEBUI_DEFAULTS, "only the server's default-filling may be missing"


# --- hand-written edge cases --------------------------------------------------------------------


@pytest.mark.parametrize("case", TRICKY, ids=[c["name"] for c in TRICKY])
def test_tricky_infotext(case: dict[str, Any]) -> None:
    info = parse_infotext(case["text"])
    expected_params = [(key, value) for key, value in case["params"]]
    assert ordered(info) == (case["prompt"], case["negative_prompt"], expected_params)
    canonical = case["canonical"] if case["canonical"] is not None else case["text"]
    assert format_infotext(info) == canonical
    assert parse_infotext(canonical) == info
    if "webui" in case:
        assert webui_parameters(info) == case["webui"]
        assert list(webui_parameters(info)) == list(case["webui"])
    if "request" in case:
        assert request_fields(info) == case["request"]


def test_format_quotes_exactly_commas_colons_and_newlines() -> None:
    info = Infotext(
        prompt="p",
        params={
            "Comma": "a, b",
            "Colon": "a: b",
            "Newline": "a\nb",
            "Quote only": 'say "hi"',
            "Unicode": "猫, 🐱",
        },
    )
    assert format_infotext(info) == (
        'p\nComma: "a, b", Colon: "a: b", Newline: "a\\nb", Quote only: say "hi", Unicode: "猫, 🐱"'
    )


def test_format_writes_flags_once_and_omits_empty_negative_prompt() -> None:
    info = Infotext(prompt="a", negative_prompt="", params={"Steps": "2", "Tiling": "Tiling"})
    assert format_infotext(info) == "a\nSteps: 2, Tiling"
    assert format_infotext(Infotext()) == ""


def test_accessors_are_none_when_absent_or_unusable() -> None:
    empty = Infotext()
    assert [empty.width, empty.seed, empty.cfg_scale, empty.sampler, empty.model] == [None] * 5
    odd = Infotext(params={"Size": "large", "Steps": "many", "CFG scale": "nan", "Seed": "7.0"})
    assert (odd.width, odd.height, odd.steps, odd.cfg_scale) == (None, None, None, None)
    assert odd.seed == 7


def test_request_fields_omit_automatic_scheduler_and_keep_named_one() -> None:
    automatic = request_fields(parse_infotext(SAMPLE_TEXT))
    assert "scheduler" not in automatic
    assert automatic == {
        "prompt": "a cat",
        "negative_prompt": "",
        "seed": 634212383,
        "sampler_name": "Euler a",
        "steps": 2,
        "cfg_scale": 7.0,
        "clip_skip": 2,
        "width": 64,
        "height": 64,
        "model": "random-sd15",
    }
    karras = next(c["text"] for c in CAPTURED if "Karras" in c["text"])
    assert request_fields(parse_infotext(karras))["scheduler"] == "Karras"


def test_request_fields_types_and_hires_placeholders() -> None:
    info = Infotext(
        params={
            "Steps": "20",
            "CFG scale": "7",
            "Seed": "1",
            "Hires sampler": "Use same sampler",
            "Hires checkpoint": "other.safetensors",
            "Variation seed": "5",
            "Variation seed strength": "0.25",
        }
    )
    fields = request_fields(info)
    assert fields == {
        "prompt": "",
        "negative_prompt": "",
        "steps": 20,
        "cfg_scale": 7.0,
        "seed": 1,
        "hr_checkpoint_name": "other.safetensors",
        "subseed": 5,
        "subseed_strength": 0.25,
    }
    assert isinstance(fields["cfg_scale"], float) and isinstance(fields["steps"], int)


@pytest.mark.parametrize(
    ("key", "value"), [("Steps", "twenty"), ("CFG scale", "x"), ("Size", "big"), ("Seed", "1.5")]
)
def test_request_fields_reject_unusable_values(key: str, value: str) -> None:
    with pytest.raises(UsageError, match=re.escape(key)):
        request_fields(Infotext(params={key: value}))


# --- properties ---------------------------------------------------------------------------------
#
# The web UI's format is ambiguous for some values, so generation stays inside the domain where a
# text written by format_infotext reads back unchanged (webui-api.md §8):
# - prompt and negative-prompt lines carry no leading/trailing whitespace (the reader strips each
#   line), none starts with "Negative prompt:", and the first and last line are not empty (the whole
#   text is stripped, and an empty first negative line is swallowed);
# - params have >= 3 pairs whose value differs from the key (a line with fewer scanner matches is
#   prompt text); keys follow the web UI's key grammar `\w[\w \-/]+`, and flag keys (key == value)
#   do not end in whitespace;
# - a value that is written unquoted (no `,` `:` or newline) has no surrounding whitespace and does
#   not start with `"` (the reader would eat the whitespace or try to read it as a JSON string);
# - with no params, the text's last line must not itself scan as a params line.

_PARAM_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_KEY_GRAMMAR = re.compile(r"\w[\w \-/]+")
_SPECIAL = [*",:\"\\ \t{}[]()<>|/-_=+*#@!?.;'`~^%$&", "猫", "耳", "🐱", "✨", "é", "ß", "\u3000"]
_CHARS = st.one_of(st.sampled_from(_SPECIAL), st.characters())
_LINE_CHARS = st.one_of(st.sampled_from(_SPECIAL), st.characters(exclude_characters="\n"))
_KNOWN_KEYS = ["Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model hash"]
_KNOWN_KEYS += ["Model", "Lora hashes", "Hires prompt", "Version", "TI hashes", "Clip skip"]


def _needs_quote(value: str) -> bool:
    return any(c in value for c in ",:\n")


_line = (
    st.text(_LINE_CHARS, min_size=1, max_size=15)
    .map(str.strip)
    .filter(lambda s: s != "" and not s.startswith("Negative prompt:"))
)
_prompt = st.one_of(
    st.just(""),
    st.lists(st.one_of(_line, st.just("")), min_size=1, max_size=4)
    .filter(lambda lines: lines[0] != "" and lines[-1] != "")
    .map("\n".join),
)
_word_char = st.one_of(
    st.sampled_from([*"abcXYZ_09", "猫", "ß", "é"]),
    st.characters(categories=["L", "N"]).filter(re.compile(r"\w").fullmatch),
)
_key = st.one_of(
    st.sampled_from(_KNOWN_KEYS),
    st.tuples(_word_char, st.text(st.one_of(_word_char, st.sampled_from(" -/")), min_size=1))
    .map("".join)
    .filter(_KEY_GRAMMAR.fullmatch),
)
_text = st.text(_CHARS, max_size=8)
_value = st.one_of(
    st.text(_CHARS, max_size=15),
    st.tuples(_text, st.sampled_from([", ", ": ", ",", ":", "\n"]), _text).map("".join),
).filter(lambda v: _needs_quote(v) or (v == v.strip() and not v.startswith('"')))


@st.composite
def _params(draw: st.DrawFn) -> dict[str, str]:
    pair_keys = draw(st.lists(_key, min_size=3, max_size=6, unique=True))
    flags = st.lists(_key.filter(lambda k: k == k.rstrip() and k not in pair_keys), max_size=2)
    flag_keys = draw(flags.map(lambda keys: list(dict.fromkeys(keys))))
    params: dict[str, str] = {}
    for key in draw(st.permutations(pair_keys + flag_keys)):
        # A flag is written once (`Tiling`); a pair's value must then differ from its key.
        flag = key in flag_keys
        params[key] = key if flag else draw(_value.filter(partial(operator.ne, key)))
    return params


@st.composite
def _infotexts(draw: st.DrawFn) -> Infotext:
    info = Infotext(
        prompt=draw(_prompt),
        negative_prompt=draw(_prompt),
        params=draw(st.one_of(st.just({}), _params(), _params())),
    )
    if not info.params:
        last_line = format_infotext(info).split("\n")[-1]
        assume(len(_PARAM_RE.findall(last_line)) < 3)
    return info


@given(_infotexts())
def test_parse_inverts_format(info: Infotext) -> None:
    parsed = parse_infotext(format_infotext(info))
    assert ordered(parsed) == ordered(info)


_FRAGMENTS = ["Steps", "Size", "ab", ": ", ":", ", ", ",", '"', "\\", "\\n", "\n", " ", "\r", "1"]
_FRAGMENTS += ["512x768", "Negative prompt:", "猫", "🐱", "Tiling", "\u2028", "-", "/"]
_fuzz = st.one_of(st.text(_CHARS), st.lists(st.sampled_from(_FRAGMENTS)).map("".join))


@given(_fuzz)
def test_parse_never_raises_on_any_text(text: str) -> None:
    # No round-trip claim here: outside the domain above the web UI's format itself is lossy, e.g.
    # `AA: "\\"x", BB: ", q"` reads AA as `"x`, which is then written unquoted and misread.
    info = parse_infotext(text)
    assert all(_KEY_GRAMMAR.fullmatch(key) for key in info.params)
    for part in (info.prompt, info.negative_prompt):
        assert all(line == line.strip() for line in part.split("\n"))
    assert webui_parameters(info)["Negative prompt"] == info.negative_prompt
    try:
        request_fields(info)
    except UsageError as exc:
        assert "parameters" in str(exc)

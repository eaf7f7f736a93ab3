"""Interactive mode's `/` commands, session state and completion, without a terminal or server."""

from __future__ import annotations

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from sdcli.errors import UsageError
from sdcli.interactive.commands import Command, Prompt, parse_line
from sdcli.interactive.completion import InteractiveCompleter
from sdcli.interactive.lists import ServerLists
from sdcli.interactive.session import RunOptions, Session


def test_lines_are_prompts_commands_or_nothing() -> None:
    assert parse_line("a cat on a mat") == Prompt("a cat on a mat")
    assert parse_line("  /preset   chibi  ") == Command("preset", "chibi")
    assert parse_line("/SEED 42") == Command("seed", "42")
    assert parse_line("/exit") == Command("quit", "")
    assert parse_line("//etc/passwd as a prompt") == Prompt("/etc/passwd as a prompt")
    assert parse_line("   ") is None
    assert parse_line("# a comment") is None


def test_an_unknown_command_suggests_the_closest() -> None:
    with pytest.raises(UsageError, match=r"unknown command /presett \(did you mean 'preset'\?\)"):
        parse_line("/presett chibi")
    with pytest.raises(UsageError, match=r"unknown command /zzz \(/help lists"):
        parse_line("/zzz")


def _session() -> Session:
    return Session.start([], {}, [], RunOptions(), labels={})


def test_preset_is_loaded_when_added_and_can_be_removed() -> None:
    session = _session()
    session.add_preset("chibi")
    session.add_preset("draft")
    session.add_preset("chibi")  # moved to the end: it wins again
    assert session.presets == ["draft", "chibi"]
    session.remove_preset("draft")
    assert session.presets == ["chibi"]
    with pytest.raises(UsageError, match="not in use"):
        session.remove_preset("draft")
    with pytest.raises(UsageError, match="chbi"):
        session.add_preset("chbi")
    assert session.presets == ["chibi"]  # a refused command changes nothing


def test_values_are_checked_as_generate_checks_them() -> None:
    session = _session()
    session.set_seed("42")
    session.set_size("640x448")
    session.set_steps("12")
    assert session.flags == {"seed": 42, "width": 640, "height": 448, "steps": 12}
    assert session.seed_mode == "42"
    session.set_seed("random")
    assert session.seed_mode == "random" and "seed" not in session.flags
    with pytest.raises(UsageError, match="/steps"):
        session.set_steps("1000")
    with pytest.raises(UsageError, match="WIDTHxHEIGHT"):
        session.set_size("big")
    with pytest.raises(UsageError, match="/seed"):
        session.set_seed("lucky")
    assert session.flags == {"width": 640, "height": 448, "steps": 12}


def test_set_takes_what_set_takes_and_removes_with_an_empty_value() -> None:
    session = _session()
    session.set_item("enable_hr=true")
    session.set_item("denoising_strength=0.4")
    session.set_item("enable_hr=false")
    assert list(session.sets.values()) == ["enable_hr=false", "denoising_strength=0.4"]
    session.set_item("enable_hr=")
    assert list(session.sets) == ["denoising_strength"]
    with pytest.raises(UsageError):
        session.set_item("=3")


def test_current_settings_make_one_preset() -> None:
    session = _session()
    session.add_preset("chibi")
    session.set_steps("9")
    session.set_item("enable_hr=true")
    values = session.preset_values()
    assert values["steps"] == 9
    assert values["sampler"] == "DPM++ 2M"  # from chibi
    assert values["params"] == {"enable_hr": True}


LISTS = ServerLists(
    models=["anime/counterfeitV30_v30", "qteamixQ_gamma"],
    samplers=["Euler a", "DPM++ 2M"],
    schedulers=["Karras"],
    loras=["detail tweaker", "add_detail"],
    embeddings=["EasyNegative", "badhandv4"],
)


def _complete(text: str, in_use: list[str] | None = None) -> list[str]:
    completer = InteractiveCompleter(
        lambda: LISTS, lambda: ["chibi", "draft", "sd15"], lambda: in_use or []
    )
    document = Document(text, len(text))
    return [
        document.text[: len(text) + c.start_position] + c.text
        for c in completer.get_completions(document, CompleteEvent(completion_requested=True))
    ]


def test_completion_of_commands_and_their_names() -> None:
    assert _complete("/pre") == ["/preset "]
    assert _complete("/preset ch") == ["/preset chibi"]
    assert _complete("/preset draft -", in_use=["draft"]) == ["/preset draft -draft"]
    assert _complete("/model qtea") == ["/model qteamixQ_gamma"]
    assert _complete("/model counter") == ["/model anime/counterfeitV30_v30"]  # part of a name
    assert _complete("/set sampler_name=eul") == ["/set sampler_name=Euler a"]


def test_completion_inside_a_prompt_loras_and_embeddings() -> None:
    # a name with a space goes in whole; names holding what was typed come after the prefix hits
    assert _complete("a cat <lora:det") == [
        "a cat <lora:detail tweaker:1>",
        "a cat <lora:add_detail:1>",
    ]
    assert _complete("a cat, Easy") == ["a cat, EasyNegative"]
    assert _complete("a cat, E") == []  # one letter is not enough to offer names

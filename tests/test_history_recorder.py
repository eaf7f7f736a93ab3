"""What the history recorder keeps out (credentials, images) and what it reads from an image's
own parameters (model, flavour, version)."""

from __future__ import annotations

import pytest

from sdcli.history.recorder import scrub_command, scrub_url, server_facts, stored_body


@pytest.mark.parametrize(
    ("argv", "kept"),
    [
        (["--auth", "u:p", "models"], ["--auth", "***", "models"]),
        (["--auth=u:p", "models"], ["--auth=***", "models"]),
        (["--url", "http://u:p@h:7860", "generate"], ["--url", "http://h:7860", "generate"]),
        (["--url=https://u:p@h/", "x"], ["--url=https://h/", "x"]),
        (["generate", "mail me@home.example"], ["generate", "mail me@home.example"]),
        (["generate", "a=b@c"], ["generate", "a=b@c"]),  # no URL: a prompt stays as typed
    ],
)
def test_the_command_line_is_stored_without_credentials(argv: list[str], kept: list[str]) -> None:
    assert scrub_command(argv) == kept


def test_urls_lose_user_and_password() -> None:
    assert scrub_url("http://alice:s3cret@127.0.0.1:7860") == "http://127.0.0.1:7860"
    assert scrub_url("http://127.0.0.1:7860") == "http://127.0.0.1:7860"


def test_images_sent_are_left_out_of_the_stored_body() -> None:
    body = {"prompt": "x", "init_images": ["QUJD" * 1000], "mask": "QUJD", "steps": 3}
    kept = stored_body(body)
    assert kept["init_images"] == ["<image: 4000 characters left out>"]
    assert kept["mask"] == "<image: 4 characters left out>"
    assert kept["steps"] == 3 and body["mask"] == "QUJD"  # the body sent is not changed


@pytest.mark.parametrize(
    ("line", "facts"),
    [
        (
            "Steps: 2, Seed: 1, Model hash: 6d338e2388, Model: random-sd15, Version: v1.10.1",
            {
                "model": "random-sd15",
                "model_hash": "6d338e2388",
                "version": "v1.10.1",
                "flavour": "a1111",
            },
        ),
        (
            "Steps: 2, Seed: 1, Model: sdxl, Version: f2.0.1v1.10.1",
            {"model": "sdxl", "version": "f2.0.1v1.10.1", "flavour": "forge"},
        ),
        (
            "Steps: 2, Seed: 1, App: SD.Next, Version: unknown, Model: randomSD15",
            {"model": "randomSD15", "version": "unknown", "flavour": "sdnext"},
        ),
    ],
)
def test_model_flavour_and_version_come_from_the_image(line: str, facts: dict[str, str]) -> None:
    assert server_facts(f"a cat\nNegative prompt: ugly\n{line}") == facts
    assert server_facts(None) == {}

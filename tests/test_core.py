"""A second front end: one generation through the core alone, in a dozen lines, without Typer or
Rich (issue 12). Interactive mode and the queue build on these same calls."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sdcli.testing.fake_webui import FakeWebUI

FRONT_END = """
import sys
from pathlib import Path
from sdcli.client import WebUIClient
from sdcli.config import load_settings
from sdcli.events import ImageSaved
from sdcli.plan import JobRequest, plan_job
from sdcli.run import Runner, run_job
settings = load_settings(url=sys.argv[1])
job = plan_job(JobRequest(words=["a cat"], presets=["draft"], flags={"steps": 3},
                          output_dir=Path(sys.argv[2])), settings)
show = lambda e: isinstance(e, ImageSaved) and print(e.image.path)  # a sink: any callable
with WebUIClient.from_settings(settings) as client:
    summary = run_job(job, Runner(client, show))
assert not summary.failures and "typer" not in sys.modules and "rich" not in sys.modules
"""


def test_a_front_end_without_typer_runs_a_generation_with_core_calls(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-c", FRONT_END, fake_webui.url, str(out)],
        capture_output=True,
        text=True,
        timeout=120,  # a safety net against a hung test, not a timing assertion
        check=False,
    )
    assert r.returncode == 0, r.stderr
    (line,) = r.stdout.splitlines()
    assert Path(line).parent == out and Path(line).is_file()
    (request,) = fake_webui.requests_to("/sdapi/v1/txt2img")
    assert request.json["steps"] == 3
    assert request.json["prompt"].startswith("a cat")


def test_a_long_run_keeps_a_count_not_every_image(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    """Memory stays flat over 10,000 prompts: the summary counts images and keeps only the last
    few (every image went to the sinks as an ImageSaved event)."""
    from sdcli.client import WebUIClient
    from sdcli.config import load_settings
    from sdcli.plan import JobRequest, plan_job
    from sdcli.run import Runner, SavedTally, run_job

    prompts = tmp_path / "prompts.txt"
    total = SavedTally.RECENT + 6
    prompts.write_text("".join(f"prompt {n}\n" for n in range(total)))
    settings = load_settings(url=fake_webui.url)
    request = JobRequest(words=[], prompts_file=prompts, flags={"steps": 1}, output_dir=tmp_path)
    job = plan_job(request, settings)
    with WebUIClient.from_settings(settings) as client:
        summary = run_job(job, Runner(client, lambda event: None))
    assert len(summary.saved) == total
    assert len(summary.saved.recent) == SavedTally.RECENT
    assert summary.saved.recent[-1].prompt == f"prompt {total - 1}"
    assert len(list(tmp_path.glob("*.png"))) == total


class GettingReady:
    """A sink with a `prepare` step that notes what it saw when called: the server holds the
    job (paused at its first step), so no answer can have come yet."""

    def __init__(self, fake: FakeWebUI) -> None:
        self.fake = fake
        self.events: list[str] = []
        self.prepared: list[tuple[bool, list[str]]] = []

    def __call__(self, event: object) -> None:
        self.events.append(type(event).__name__)

    def prepare(self) -> None:
        self.prepared.append((self.fake.wait_paused(timeout=30), list(self.events)))
        self.fake.resume()


def test_sinks_get_ready_while_the_first_request_is_on_its_way(
    fake_webui: FakeWebUI, tmp_path: Path
) -> None:
    """Runner calls a sink's `prepare` once, while the server works on the first request (not
    before it is sent, not after the answer, not again for the next one)."""
    from sdcli.client import WebUIClient
    from sdcli.events import fanout
    from sdcli.job import Job
    from sdcli.run import Runner, run_job

    job = Job(
        mode="txt2img", values={"steps": 4, "width": 64, "height": 64}, sets={},
        prompts=["a cat"], batches=2, output_dir=tmp_path, name_template="{index}",
    )  # fmt: skip
    sink = GettingReady(fake_webui)
    fake_webui.pause_at_step(1)
    with WebUIClient(fake_webui.url, timeout=30) as client:
        summary = run_job(job, Runner(client, fanout(lambda event: None, sink), progress=False))
    assert len(summary.saved) == 2 and len(fake_webui.requests_to("/sdapi/v1/txt2img")) == 2
    assert sink.prepared == [(True, ["UnitStarted"])]
    assert sink.events.count("ImageSaved") == 2

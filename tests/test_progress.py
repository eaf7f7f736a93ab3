"""Live progress from the generate use case: our own task's state, step by step, and queueing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import requests

from sdcli.client import WebUIClient
from sdcli.events import Event, ImageSaved, Progressed, ProgressSnapshot
from sdcli.job import Job
from sdcli.run import Runner, RunSummary, run_job
from sdcli.save import SavedImage
from sdcli.testing.fake_webui import FakeWebUI


class Recorder:
    """A sink that keeps what it is told and lets a test wait for a given snapshot."""

    def __init__(self, until: Callable[[ProgressSnapshot], bool]) -> None:
        self.snapshots: list[ProgressSnapshot] = []
        self.saved: list[SavedImage] = []
        self.seen = threading.Event()
        self.until = until

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progressed):
            self.snapshots.append(event.snapshot)
            if self.until(event.snapshot):
                self.seen.set()
        elif isinstance(event, ImageSaved):
            self.saved.append(event.image)


def start_run(
    fake: FakeWebUI, recorder: Recorder, tmp_path: Path, **values: object
) -> tuple[threading.Thread, list[RunSummary]]:
    job = Job(
        mode="txt2img",
        values={"steps": 6, "width": 64, "height": 64, **values},
        sets={},
        prompts=["a cat"],
        output_dir=tmp_path,
        name_template="{index}",
    )
    out: list[RunSummary] = []
    client = WebUIClient(fake.url, timeout=30)
    runner = Runner(client, recorder, poll_interval=0.02)

    def target() -> None:
        try:
            out.append(run_job(job, runner))
        finally:
            client.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def test_progress_reports_steps_of_our_job(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    fake_webui.pause_at_step(3)
    recorder = Recorder(lambda s: s.step == 3)
    thread, out = start_run(fake_webui, recorder, tmp_path)
    assert recorder.seen.wait(10)
    fake_webui.resume()
    thread.join(30)
    snap = next(s for s in recorder.snapshots if s.step == 3)
    assert (snap.queued, snap.steps) == (False, 6)
    assert 0.0 < snap.fraction < 1.0
    assert len(out[0].saved) == 1 and out[0].saved[0].path.is_file()
    # The bar asked about our own task id first (UI mode has /internal/progress).
    asked = {r.json["id_task"] for r in fake_webui.requests_to("/internal/progress")}
    sent = fake_webui.requests_to("/sdapi/v1/txt2img")[0].json["force_task_id"]
    assert asked == {sent}


def test_queued_state_while_another_clients_job_runs(fake_webui: FakeWebUI, tmp_path: Path) -> None:
    fake_webui.pause_at_step(1)
    other = threading.Thread(
        target=lambda: requests.post(
            fake_webui.url + "/sdapi/v1/txt2img", json={"prompt": "theirs", "steps": 2}, timeout=30
        ),
        daemon=True,
    )
    other.start()
    assert fake_webui.wait_paused()
    recorder = Recorder(lambda s: s.queued)
    thread, out = start_run(fake_webui, recorder, tmp_path)
    assert recorder.seen.wait(10)
    fake_webui.resume()
    other.join(30)
    thread.join(30)
    assert any(s.queued for s in recorder.snapshots)
    assert [p.prompt for p in out[0].saved] == ["a cat"]


def test_falls_back_to_global_progress_without_internal_routes(
    make_fake_webui: Callable[..., FakeWebUI], tmp_path: Path
) -> None:
    fake = make_fake_webui(profile="a1111-nowebui")
    fake.pause_at_step(2)
    recorder = Recorder(lambda s: s.step == 2)
    thread, out = start_run(fake, recorder, tmp_path)
    assert recorder.seen.wait(10)
    fake.resume()
    thread.join(30)
    assert len(fake.requests_to("/internal/progress")) == 1  # probed once, then never again
    assert fake.requests_to("/sdapi/v1/progress")
    assert len(out[0].saved) == 1

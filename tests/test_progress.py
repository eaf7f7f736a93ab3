"""Live progress from the generate use case: our own task's state, step by step, and queueing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import requests

from sdcli.testing.fake_webui import FakeWebUI

from cli_helpers import Recorder, start_run


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
    assert len(out[0].saved) == 1 and out[0].saved.recent[0].path.is_file()
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
    assert [p.prompt for p in out[0].saved.recent] == ["a cat"]


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

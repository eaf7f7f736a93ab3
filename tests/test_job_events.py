"""The pure parts of the run core: a job's units and seeds, fanning events out, the heap sink."""

from __future__ import annotations

from pathlib import Path

import pytest

import sdcli.heap
from sdcli.events import Event, ImageSaved, UnitStarted, Warned, fanout
from sdcli.heap import KeepHeap
from sdcli.job import Job, Unit, unit_values, units
from sdcli.save import SavedImage


def _job(batches: int, **values: object) -> Job:
    return Job(mode="txt2img", values=values, sets={}, prompts=["a cat"], batches=batches)


def test_units_give_the_seeds_the_web_ui_batch_count_would() -> None:
    job = _job(3, seed=10, batch_size=2)
    got = units(job, "a cat")
    assert [(u.batch, u.batches, u.seed) for u in got] == [(1, 3, 10), (2, 3, 12), (3, 3, 14)]
    assert unit_values(job, got[2])["seed"] == 14 and job.values["seed"] == 10


@pytest.mark.parametrize("seed", [-1, None])
def test_a_random_seed_stays_random_in_every_unit(seed: int | None) -> None:
    job = _job(2, seed=seed)
    assert [u.seed for u in units(job, "p")] == [seed, seed]
    assert unit_values(job, units(job, "p")[1]).get("seed") == seed


def test_fanout_hands_each_event_to_every_sink_in_order() -> None:
    seen: list[tuple[str, Event]] = []
    sink = fanout(lambda e: seen.append(("a", e)), lambda e: seen.append(("b", e)))
    first, second = Warned("one"), Warned("two")
    sink(first)
    sink(second)
    assert seen == [("a", first), ("b", first), ("a", second), ("b", second)]


def test_keep_heap_acts_from_the_first_request_after_an_image(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(sdcli.heap, "keep_freed_heap", lambda: calls.append(1))
    unit = Unit("p", 1, 1, None)
    image = SavedImage(Path("x.png"), None, "p", "", None, None, 1, 1)
    sink = KeepHeap()
    sink(UnitStarted(unit, "http://127.0.0.1:1"))
    assert calls == []  # one image per process never pays for it
    sink(ImageSaved(unit, "http://127.0.0.1:1", image))
    sink(UnitStarted(unit, "http://127.0.0.1:1"))
    assert calls == [1]

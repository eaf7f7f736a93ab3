"""A run over several servers: one queue of units, one worker thread per server pulling from it.

A free server takes the next unit at once (no fixed split); when several are free, the
heaviest (`Runner.weight`) goes first. A server that fails after its retries (connection lost,
a timeout, a 5xx) leaves the run and its unit goes back to the front of the queue for another
one; the run ends when every unit is done or no server is left. Prompts are read as units are
needed, so a long `generate -` keeps nothing but the units in flight.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import field
from typing import TypeVar

from sdcli.catalog import SETTLE_SECONDS
from sdcli.datatypes import mutable
from sdcli.errors import (
    ApiError,
    AuthError,
    ConnectionFailed,
    Interrupted,
    SdcliError,
    UsageError,
    interruption,
)
from sdcli.events import Queued, ServerDropped, UnitFailed, Warned, serialised
from sdcli.job import Job, Unit, units
from sdcli.plan import check_job, first_prompt
from sdcli.run import Failure, Runner, RunSummary, kept_message
from sdcli.save import Saver

JOIN_POLL = 0.2  # the main thread wakes this often while the workers run (Ctrl-C lands there)
T = TypeVar("T")
Item = TypeVar("Item")  # what on_each works on: a Runner, a client


def wait_until(done: threading.Event) -> None:
    """The main thread waits for its worker threads: until `done` is set, waking every JOIN_POLL
    (Ctrl-C lands there). Not Thread.join: a Ctrl-C that lands inside join() can leave a running
    thread marked as ended (CPython's tstate lock)."""
    while not done.wait(JOIN_POLL):
        pass


def server_failed(error: BaseException) -> bool:
    """An error that says the server, not the unit, is the trouble: it leaves the run."""
    if isinstance(error, ConnectionFailed):  # refused, lost, timed out (after the retries)
        return True
    return isinstance(error, ApiError) and error.status is not None and error.status >= 500


@mutable(eq=False)
class _Worker:
    runner: Runner
    order: int
    gone: bool = False


@mutable(eq=False)
class _Item:
    """A unit in the queue, with the number of its prompt (the same text may come twice)."""

    prompt_no: int
    unit: Unit


@mutable
class _State:
    pending: deque[_Item] = field(default_factory=deque)
    running: int = 0
    exhausted: bool = False  # every prompt has been read
    stopping: bool = False  # an error, Ctrl-C or the last server gone: hand out nothing more
    fatal: BaseException | None = None
    failed_prompts: set[int] = field(default_factory=set)
    planned: int = 0  # units known so far (Queued)


class Scheduler:
    """Hands a job's units to the Runners, each in a thread of its own (see the module doc)."""

    def __init__(
        self,
        job: Job,
        runners: Sequence[Runner],
        saver: Saver,
        summary: RunSummary,
        plan: Callable[[Job, str], Sequence[Unit]] = units,
    ):
        self.job = job
        self.plan = plan  # a prompt's units (a run journal's leave out those done)
        self.saver = saver
        self.summary = summary
        self.workers = [_Worker(runner, n) for n, runner in enumerate(runners)]
        sink = serialised(runners[0].sink)  # one event at a time, whichever thread sends it
        for runner in runners:
            runner.sink = sink
        self.emit = sink
        self.cv = threading.Condition()
        self.state = _State()
        self._prompts: Iterator[str] = iter(())
        self._idle: list[_Worker] = []
        self._live = 0  # worker threads still running
        self._arrived: set[int] = set()  # workers that have asked for a unit at least once
        self._finished = threading.Event()

    # --- before anything is sent -------------------------------------------------------------

    def prepare(self) -> None:
        """Resolve the names on every server first, all at once (a thread each): a name one of
        them lacks stops the run before any image is asked for, and says where (the first
        such server in order, whichever answered first); a server that cannot be reached is
        left out (with a warning) as long as another one answers."""
        self._prompts = first_prompt(self.job)
        check_job(self.job)
        self.saver.check()
        runners = [worker.runner for worker in self.workers]
        outcomes = on_each(runners, lambda r: r.prepare(self.job), lambda r, cause: r.stop(cause))
        last: SdcliError | None = None
        for worker, outcome in zip(self.workers, outcomes, strict=True):
            if not isinstance(outcome, BaseException):
                continue
            if not isinstance(outcome, SdcliError):
                raise outcome  # a bug, told as one (the CLI's last resort)
            if not server_failed(outcome):
                outcome.message = f"on {worker.runner.label}: {outcome.message}"
                raise outcome
            last = outcome
            worker.gone = True
            self._dropped(worker, outcome, None)
        if last is not None and all(w.gone for w in self.workers):
            raise last

    # --- the run -------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        threads = [
            threading.Thread(
                target=self._work, args=(w,), name=f"sdcli-{w.runner.name}", daemon=True
            )
            for w in self.workers
            if not w.gone
        ]
        self._live = len(threads)
        for thread in threads:
            thread.start()
        try:
            wait_until(self._finished)  # every worker has ended
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: every server stops
            self._interrupt(exc)
        if self.state.fatal is not None:
            raise self.state.fatal
        return self.summary

    def _interrupt(self, cause: KeyboardInterrupt) -> None:
        """Each server is asked to stop and what it returned is saved; a second Ctrl-C while
        waiting for them leaves at once."""
        before = len(self.summary.saved)
        with self.cv:
            self.state.stopping = True
            self.cv.notify_all()
        for worker in self.workers:
            worker.runner.stop(cause)
        wait_until(self._finished)  # every worker has ended
        signum, by = interruption(cause)
        total = len(self.summary.saved)
        if not total:
            raise Interrupted(
                f"interrupted{by} before the servers returned any image", signum=signum
            ) from None
        message = kept_message(by, total, total - before, "the servers")
        raise Interrupted(message, signum=signum) from None

    def _work(self, worker: _Worker) -> None:
        try:
            self._pull(worker)
        finally:
            with self.cv:
                self._live -= 1
                self.cv.notify_all()
                if not self._live:
                    self._finished.set()

    def _pull(self, worker: _Worker) -> None:
        while True:
            try:
                item = self._take(worker)
            except BaseException as exc:  # a bug: the run ends with it, never a lost thread
                with self.cv:
                    if self.state.fatal is None:
                        self.state.fatal = exc
                    self.state.stopping = True
                    self.cv.notify_all()
                return
            if item is None:
                return
            try:
                worker.runner.run_unit(self.job, item.unit, self.saver, into=self.summary.saved)
            except Interrupted:
                self._done(worker, item, None)
                return
            except BaseException as exc:  # every ending is the run's to judge
                self._done(worker, item, exc)
            else:
                self._done(worker, item, None)

    def _take(self, worker: _Worker) -> _Item | None:
        """The next unit for `worker`, once it is the heaviest free server; None: no more."""
        with self.cv:
            self._idle.append(worker)
            self._arrived.add(worker.order)
            try:
                while True:
                    state = self.state
                    if state.stopping or worker.gone:
                        return None
                    if len(self._arrived) < self._live:
                        self.cv.wait()  # the first units wait for every server: weight decides
                        continue
                    if not state.pending and not state.exhausted:
                        self._read_prompt()
                        self.cv.notify_all()
                        continue
                    if state.pending:
                        if self._first_free() is worker:
                            state.running += 1
                            return state.pending.popleft()
                    elif state.running == 0:
                        return None  # all done: nothing queued, nothing that may come back
                    self.cv.wait()
            finally:
                self._idle.remove(worker)
                self.cv.notify_all()

    def _first_free(self) -> _Worker:
        return max(self._idle, key=lambda w: (w.runner.weight, -w.order))

    def _read_prompt(self) -> None:
        """Queue the next prompt's units (called with the lock held: the sink never takes it)."""
        state = self.state
        try:
            prompt = next(self._prompts, None)
            made = self.plan(self.job, prompt) if prompt is not None else []
        except SdcliError as exc:  # a bad line or template further on: what came before is done
            state.fatal, state.stopping = exc, True
            return
        if prompt is None:
            state.exhausted = True
            self.emit(Queued(state.planned, True))
            return
        self.summary.prompts += 1
        items = [_Item(self.summary.prompts, u) for u in made]
        state.pending.extend(items)
        state.planned += len(items)
        self.emit(Queued(state.planned, False))

    def _done(self, worker: _Worker, item: _Item, error: BaseException | None) -> None:
        """Account for a unit that ended: done, back in the queue, or the run's end."""
        event = None
        with self.cv:
            state = self.state
            state.running -= 1
            self.cv.notify_all()
            if error is None:
                return
            if server_failed(error) and not state.stopping:
                worker.gone = True
                state.pending.appendleft(item)
                if all(w.gone for w in self.workers):
                    state.fatal, state.stopping = error, True
                dropped = True
            else:
                dropped = False
                keep_going = self.job.keep_going and isinstance(error, SdcliError)
                if keep_going and not isinstance(error, (UsageError, AuthError, Interrupted)):
                    assert isinstance(error, SdcliError)
                    if item.prompt_no not in state.failed_prompts:
                        state.failed_prompts.add(item.prompt_no)
                        self.summary.failures.append(Failure(item.unit.prompt, error))
                        event = UnitFailed(item.unit, worker.runner.server, error)
                    elif item.unit.cell:  # each failed X/Y/Z cell is told: a blank in its grid
                        event = UnitFailed(item.unit, worker.runner.server, error)
                    if not item.unit.cell:  # the prompt's other units are not sent (as on one
                        # server); an X/Y/Z plot's other cells are, around the blank one
                        pending = (i for i in state.pending if i.prompt_no != item.prompt_no)
                        state.pending = deque(pending)
                elif state.fatal is None:
                    state.fatal, state.stopping = error, True
        if dropped:
            assert isinstance(error, SdcliError)
            self._dropped(worker, error, item.unit)
        elif event is not None:
            self.emit(event)

    def _dropped(self, worker: _Worker, error: SdcliError, unit: Unit | None) -> None:
        left = sum(1 for w in self.workers if not w.gone)
        self.emit(ServerDropped(worker.runner.server, error, unit, left))
        if left:
            again = "; its unit goes to another server" if unit is not None else ""
            message = f"{worker.runner.label} left the run: {error}{again} ({left} left)"
            self.emit(Warned(message, unit, worker.runner.server))


def on_each(
    items: Sequence[Item],
    call: Callable[[Item], T],
    stop: Callable[[Item, KeyboardInterrupt], None] | None = None,
) -> list[T | BaseException]:
    """`call(item)` for every item (a server's Runner or client) at once, a thread each; what
    each returned or raised, in the items' order. Ctrl-C while they work calls `stop` on each
    (a Runner's retries stop waiting) and goes on up at once."""
    results: list[T | BaseException] = [RuntimeError("not run")] * len(items)
    left = [len(items)]
    lock = threading.Lock()
    finished = threading.Event()

    def work(index: int) -> None:
        try:
            results[index] = call(items[index])
        except BaseException as exc:  # the caller judges every ending
            results[index] = exc
        finally:
            with lock:
                left[0] -= 1
                if not left[0]:
                    finished.set()

    threads = [
        threading.Thread(target=work, args=(index,), name=f"sdcli-each-{index}", daemon=True)
        for index in range(len(items))
    ]
    for thread in threads:
        thread.start()
    try:
        if items:
            wait_until(finished)
    except KeyboardInterrupt as exc:
        if stop is not None:
            for item in items:
                stop(item, exc)
        # told to stop, they end soon: not while the interpreter shuts down (--debug's logging)
        deadline = time.monotonic() + SETTLE_SECONDS
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        raise
    return results


def run_on_servers(
    job: Job,
    runners: Sequence[Runner],
    *,
    saver: Saver,
    summary: RunSummary,
    plan: Callable[[Job, str], Sequence[Unit]] = units,
) -> RunSummary:
    """`run_job` over several servers (see the module doc)."""
    scheduler = Scheduler(job, runners, saver, summary, plan)
    scheduler.prepare()
    return scheduler.run()

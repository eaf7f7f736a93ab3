"""Stopping the server's running job: `sdcli interrupt` and `sdcli skip`.

The server's own answers say nothing useful (`{}` to interrupt, `null` to skip, job or no job:
fixtures/forge/interrupt.json, fixtures/more/queue-skip-pending.json), so the progress is read
first: that tells whether a job was running, and a request is sent only if one was (an interrupt
sent to an idle server would wait for nothing, and could hit a job that starts a moment later).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from sdcli.datatypes import frozen

if TYPE_CHECKING:
    from sdcli.client import WebUIClient

Action = Literal["interrupt", "skip"]

STILL_GENERATING = "the server is still generating (`sdcli interrupt` stops it)"


@frozen
class StopOutcome:
    """What was running when asked; `running` False: nothing was sent."""

    running: bool
    job: str = ""
    step: int = 0
    steps: int = 0

    def describe(self) -> str:
        """E.g. "Batch 1 out of 2, step 3/20"; empty when the server tells nothing."""
        parts = [self.job] if self.job and not self.job.startswith("scripts_") else []
        if self.steps > 0:
            parts.append(f"step {self.step}/{self.steps}")
        return ", ".join(parts)


def stop_job(client: WebUIClient, action: Action) -> StopOutcome:
    """Interrupt (end the whole job) or skip (end the current image, go on with the next)."""
    state = client.progress(skip_current_image=True)
    if state.idle:
        return StopOutcome(running=False)
    if action == "interrupt":
        client.interrupt()
    else:
        client.skip()
    return StopOutcome(
        running=True, job=state.job, step=state.sampling_step, steps=state.sampling_steps
    )

"""Leave the server's options as they were found, although `override_settings` can leak.

The web UI (A1111 1.10.1, and Forge, whose `process_images` is the same) restores after a job
only the overridden keys its `opts.data` already held: what its config.json held at start-up and
what was set since. An override of any other key sticks for every later job of every user, and
the next `POST /options` writes it into config.json (fixtures/more/override-settings-leak.json).

So before the first job, each overridden key the server may not hold is pinned: `POST /options`
with the value `GET /options` shows, which is the value it has anyway. That puts the key into
`opts.data`, so the server itself restores it after the job: also after an interrupt, a failure,
or a timeout that leaves the job running. Pinning once per process is enough: a held key stays
held. The cost: one `GET /options` per process when an override is sent, one `POST` the first
time a key is not held yet; nothing for a run without overrides.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("sdcli.options")

# Always held: the server writes it at every model load. A POST of it could start a load, or
# fail on Forge, whose option may name a title that matches no checkpoint.
NEVER_PIN = frozenset({"sd_model_checkpoint"})
# Integer options with a non-zero default: GET shows an int (the raw default) when the server
# does not hold them, a float (`1.0`) when it does, so these need a pin only when not a float.
INT_OPTIONS = frozenset({"CLIP_stop_at_last_layers"})


def pins_needed(overrides: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The keys to pin, with the values to pin them to (their current values)."""
    pins: dict[str, Any] = {}
    for key, wanted in overrides.items():
        if key in NEVER_PIN or key not in options:
            continue  # a key the server lacks fails the job (KeyError), and a POST of it too
        current = options[key]
        if current is None:
            log.debug("override_settings: %s is null on the server and cannot be pinned", key)
            continue
        if key in INT_OPTIONS and isinstance(current, float):
            log.debug("override_settings: %s is held (%r): the server restores it", key, current)
            continue
        if current == wanted:
            continue  # the job sets the value it already has: nothing to restore
        pins[key] = current
    return pins


def known_held(overrides: Mapping[str, Any], options: Mapping[str, Any]) -> set[str]:
    """The overridden keys `options` shows the server holds (worth remembering: a held key
    stays held, as the server writes what it holds into its config.json)."""
    return {key for key in overrides if key in INT_OPTIONS and isinstance(options.get(key), float)}


def restore_after(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The overrides the request asks the server to undo after the job (none when told not to)."""
    overrides = body.get("override_settings")
    if (
        not isinstance(overrides, Mapping)
        or body.get("override_settings_restore_afterwards") is False
    ):
        return {}
    return overrides

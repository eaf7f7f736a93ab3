"""The server's lists, fetched once per process (or read from `sdcli.listcache`), and the hires
fix fields its API leaves without a usable default (names are checked in `sdcli.names.request`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from sdcli.apitypes import Sampler, Scheduler, SdModel
from sdcli.errors import ApiError

T = TypeVar("T")
SETTLE_SECONDS = 2.0  # how long a failed run waits for the lists still being fetched ahead

if TYPE_CHECKING:
    from sdcli.client import WebUIClient
    from sdcli.listcache import ListCache


class Catalog:
    """The server's lists, fetched at most once per process and only when a name needs them.

    With a `cache`, a list younger than its life on disk is not fetched at all; `refetch()`
    forgets what came from the cache, so a name it lacks is looked up on the server first.
    """

    def __init__(self, client: WebUIClient, cache: ListCache | None = None) -> None:
        self.client = client
        self.cache = cache
        self.from_cache: set[str] = set()  # lists (and facts) this process took from the cache
        # How each list is fetched: a generator puts its --retries here.
        self.fetch: Callable[[Callable[[], Any]], Any] = _once
        self._samplers: list[Sampler] | None = None
        self._schedulers: list[Scheduler] | None = None
        self._schedulers_known = False
        self._models: list[SdModel] | None = None
        self._upscalers: list[str] | None = None
        self._options: dict[str, Any] | None = None
        self._sdnext: bool | None = None
        self._loras: list[str] | None = None
        self._loras_known = False
        self._named: dict[str, list[str] | None] = {}  # vaes, styles, extras upscalers…
        self._forge: bool | None = None
        self.broken: dict[str, ApiError] = {}  # list endpoints that failed (5xx): not checked
        self._asked: dict[str, _Asked] = {}  # lists being fetched ahead (prefetch)
        self._threads: list[threading.Thread] = []  # prefetch's, joined by settle()

    def _cached(self, key: str, fetch: Callable[[], Any]) -> Any:
        """The cache's answer for `key` if fresh, else `fetch()` through `self.fetch`, kept."""
        if self.cache is not None:
            found, value = self.cache.get(key)
            if found:
                self.from_cache.add(key)
                return value
        asked = self._asked.pop(key, None)
        value = self.fetch(fetch if asked is None else asked.first_try(fetch))
        self.remember(key, value)
        return value

    def _unless_failing(self, key: str, ask: Callable[[], T]) -> T | None:
        """`ask()`, or None when the server fails to answer it (recorded in `broken`): a list
        some checks can do without. Refused credentials or no server at all still raise."""
        try:
            return ask()
        except ApiError as exc:
            if not _server_fault(exc):
                raise
            self.broken[key] = exc
            return None

    def prefetch(self, keys: Iterable[str]) -> None:
        """Ask the server at once, each in a thread of its own, for the lists among `keys` that
        are neither known nor cached (and that this catalog's own methods will ask for): a
        first run, or `--no-cache`, then waits one round trip for them instead of one each.

        Nothing changes but the timing: each list is still taken, checked and cached when a
        method first asks for it, in the same order, with the answer (or the error) of its
        request here as its first try (retries, if any, follow as usual). `schedulers` waits
        for the flavour (SD.Next is never asked for them).
        """
        wanted = [k for k in dict.fromkeys(keys) if k in _PREFETCH and not self._known(k)]
        schedulers = "schedulers" in wanted and "sdnext" in wanted
        if len(wanted) - schedulers < 2:
            return  # one request (or a chain of them): nothing to wait for at once
        _ = self.client.session  # made here: the threads share it (one HTTP session per server)
        asked = {key: _Asked(getattr(self, _PREFETCH[key])) for key in wanted}
        self._asked.update(asked)
        for key, first in asked.items():
            if key == "schedulers" and schedulers:
                continue  # asked by the flavour's thread, once it knows it is no SD.Next
            then = asked["schedulers"] if key == "sdnext" and schedulers else None
            thread = threading.Thread(
                target=first.run, args=(then,), name=f"sdcli-list-{key}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def settle(self, timeout: float = SETTLE_SECONDS) -> None:
        """Wait (at most `timeout` seconds in all) for the lists still being fetched ahead: a run
        that fails on one list must not exit with the others' requests in flight (a daemon
        thread logging to stderr with --debug as the interpreter shuts down is a fatal error)."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [thread for thread in self._threads if thread.is_alive()]

    def _known(self, key: str) -> bool:
        """Whether asking for `key` needs no request: known in this process, or cached."""
        if key == "sdnext":
            known = self._sdnext is not None
        elif key == "schedulers":  # never asked of SD.Next
            known = self._schedulers_known or self._sdnext is True
            # a cached flavour is read (and kept) now: it is needed next anyway
            known = known or (
                self.cache is not None and self.cache.fresh("sdnext") and self.is_sdnext()
            )
        elif key == "embeddings":
            known = key in self._named
        else:
            known = getattr(self, "_" + key) is not None
        return known or (self.cache is not None and self.cache.fresh(key))

    def asks(self, key: str) -> bool:
        """Whether the list `key` would be asked of the server (neither known nor cached)."""
        return not self._known(key)

    def _ask_sdnext(self) -> bool:
        return is_sdnext(self.client)

    def _ask_samplers(self) -> list[Sampler]:
        return self.client.samplers()

    def _ask_schedulers(self) -> list[Scheduler] | None:
        return self.client.schedulers()

    def _ask_models(self) -> list[SdModel]:
        return self.client.sd_models()

    def remember(self, key: str, value: Any) -> None:
        if self.cache is not None:
            self.cache.put(key, value)

    def refetch(self) -> bool:
        """Forget every list taken from the cache and read the server from now on; False when
        nothing came from the cache (a fresh fetch would tell nothing new)."""
        if not self.from_cache:
            if self.cache is not None:
                self.cache.read = False
            return False
        for key in self.from_cache:
            if key in self._named:
                self._named.pop(key, None)
            else:
                setattr(self, "_" + key, None)
        self._schedulers_known = self._schedulers_known and "schedulers" not in self.from_cache
        self._loras_known = self._loras_known and "loras" not in self.from_cache
        self.from_cache.clear()
        if self.cache is not None:
            self.cache.read = False
        return True

    def distrust(self) -> None:
        """An answer differed from the request: the cached lists may be why, so drop them."""
        if self.cache is not None:
            self.cache.drop()

    def samplers(self) -> list[Sampler]:
        if self._samplers is None:
            self._samplers = self._cached("samplers", self._ask_samplers)
        return self._samplers

    def samplers_or_none(self) -> list[Sampler] | None:
        """The samplers, or None when the server fails to list them (recorded in `broken`)."""
        return self._unless_failing("samplers", self.samplers)

    def schedulers(self) -> list[Scheduler] | None:
        """None where there is no list: before 1.9.1, on SD.Next, or when it fails (`broken`)."""
        if not self._schedulers_known:
            if self.is_sdnext():
                # SD.Next has no per-request schedule; its /schedulers fails its own response model
                self._schedulers = None
            else:
                self._schedulers = self._unless_failing(
                    "schedulers", lambda: self._cached("schedulers", self._ask_schedulers)
                )
            self._schedulers_known = True
        return self._schedulers

    def models(self) -> list[SdModel]:
        if self._models is None:
            self._models = self._cached("models", self._ask_models)
        return self._models

    def upscalers(self) -> list[str]:
        """Hires upscalers: /upscalers plus /latent-upscale-modes (absent on some forks)."""
        if self._upscalers is None:
            self._upscalers = self._cached("upscalers", self.client.upscalers)
        return self._upscalers

    def loras(self) -> list[str] | None:
        """LoRA names (what `<lora:NAME:w>` takes); None where the Lora extension has no route
        or the server fails to list them (recorded in `broken`): then prompts go as typed."""
        if not self._loras_known:
            self._loras = self._unless_failing(
                "loras", lambda: self._cached("loras", self._ask_loras)
            )
            self._loras_known = True
        return self._loras

    def _ask_loras(self) -> list[str] | None:
        found = self.client.loras()
        return None if found is None else [lora.name for lora in found]

    def vaes(self) -> list[str] | None:
        """VAE names a request may ask for (with Automatic and None); None where there is no
        /sd-vae (Forge): then the name goes as typed."""
        if "vaes" not in self._named:
            self._named["vaes"] = self._cached("vaes", self._ask_vaes)
        return self._named["vaes"]

    def _ask_vaes(self) -> list[str] | None:
        found = self.client.sd_vaes()
        return None if found is None else ["Automatic", "None", *(v.name for v in found)]

    def styles(self) -> list[str]:
        if "styles" not in self._named:
            self._named["styles"] = self._cached(
                "styles", lambda: [s.name for s in self.client.prompt_styles()]
            )
        return self._named["styles"] or []

    def extras_upscalers(self) -> list[str]:
        """What /extra-single-image takes (`--upscale`): /upscalers alone, no latent modes."""
        if "extras_upscalers" not in self._named:
            self._named["extras_upscalers"] = self._cached(
                "extras_upscalers", lambda: [u.name for u in self.client.upscaler_list()]
            )
        return self._named["extras_upscalers"] or []

    def embeddings(self) -> list[str] | None:
        """Every embedding's name, loaded or skipped: which ones the loaded model skips changes
        with the model, the names do not (so they may come from the cache). None where the
        server cannot say (no such route, or it fails): then prompts go unchecked."""
        if "embeddings" not in self._named:
            self._named["embeddings"] = self._unless_failing(
                "embeddings", lambda: self._cached("embeddings", self._ask_embeddings)
            )
        return self._named["embeddings"]

    def _ask_embeddings(self) -> list[str] | None:
        try:
            return [e.name for e in self.client.embeddings()]
        except ApiError as exc:
            if exc.status == 404:  # a fork without the route
                return None
            raise

    def skipped_embeddings(self) -> list[str]:
        """The embeddings the loaded model skips (another architecture's), asked afresh once:
        never from the cache, as they change with the loaded model."""
        if "skipped_embeddings" not in self._named:
            ask = self.client.embeddings
            found = self._unless_failing("skipped_embeddings", lambda: self.fetch(ask)) or []
            self._named["skipped_embeddings"] = [e.name for e in found if not e.loaded]
        return self._named["skipped_embeddings"] or []

    def options(self) -> dict[str, Any]:
        """GET /options as the process first saw it: asked only for hires fix or an override.

        Never cached: the loaded model and the values change under other clients."""
        if self._options is None:
            self._options = self.fetch(self.client.get_options)
        return self._options

    def is_forge(self) -> bool:
        """Forge: its own `forge_*` settings (webui-api.md §9)."""
        if self._forge is None:
            self._forge = bool(self._cached("forge", lambda: is_forge_options(self.options())))
        return self._forge

    def is_sdnext(self) -> bool:
        """SD.Next (by GET /sdapi/v1/version): clip skip is a request field; no per-request
        schedule, no task ids, its own hires fields."""
        if self._sdnext is None:
            self._sdnext = bool(self._cached("sdnext", self._ask_sdnext))
        return self._sdnext

    def held_options(self) -> frozenset[str]:
        """Options the server is known to hold (sdcli.pinning): they stay held, as the server
        writes them into its config.json."""
        if self.cache is not None:
            found, value = self.cache.get("held")
            if found:
                return frozenset(value)
        return frozenset()

    def remember_held(self, keys: set[str]) -> None:
        if keys and self.cache is not None:
            self.remember("held", sorted(keys | self.held_options()))

    @property
    def known_sdnext(self) -> bool:
        """Whether this is SD.Next as far as already asked (never sends a request)."""
        return self._sdnext is True


# What prefetch may ask ahead, and how (the method each list's own accessor calls).
_PREFETCH = {
    "sdnext": "_ask_sdnext",
    "samplers": "_ask_samplers",
    "schedulers": "_ask_schedulers",
    "models": "_ask_models",
    "embeddings": "_ask_embeddings",
}


class _Asked:
    """One list asked for in a thread of its own: its answer (or error) is the first try of
    the catalog's fetch; a second try (a retry) asks the server again."""

    def __init__(self, ask: Callable[[], Any]) -> None:
        self.ask = ask
        self.done = threading.Event()
        self.value: Any = None
        self.error: Exception | None = None
        self.skipped = False  # the list it waited for said it is not needed (SD.Next)
        self.used = False

    def run(self, then: _Asked | None = None) -> None:
        try:
            self.value = self.ask()
        except Exception as exc:  # raised where the catalog asks for it, as its own would be
            self.error = exc
        finally:
            self.done.set()
        if then is not None:
            if self.error is None and self.value is False:
                then.run()
            else:
                then.skipped = True
                then.done.set()

    def first_try(self, fetch: Callable[[], Any]) -> Callable[[], Any]:
        def attempt() -> Any:
            if self.used:
                return fetch()
            self.used = True
            self.done.wait()
            if self.skipped:
                return fetch()
            if self.error is not None:
                raise self.error
            return self.value

        return attempt


def is_sdnext(client: WebUIClient) -> bool:
    """SD.Next is the flavour with GET /sdapi/v1/version (one GET, asked once per client)."""
    return isinstance(client.probe("version"), dict)


def is_forge_options(options: Mapping[str, Any]) -> bool:
    """Forge has its own `forge_*` settings (reForge's are `reforge_*`)."""
    return any(str(key).startswith("forge_") for key in options)


def _once(call: Callable[[], Any]) -> Any:
    return call()


# The web UI's own hires fix default, which its API lacks (a 500 after the first pass without it).
HIRES_DENOISING = 0.7
FORGE_HR_MODULES = ["Use same choices"]  # Forge's UI default; its API has none (a 500 without)


# SD.Next's upscaler that matches A1111's default hires upscaler "Latent" (bilinear)
SDNEXT_HIRES_UPSCALER = "Latent Bilinear"


def hires_defaults(body: Mapping[str, Any], catalog: Catalog) -> tuple[dict[str, Any], list[str]]:
    """Hires fix fields the API leaves without a usable default, filled as the web UI's form does.

    A1111 and Forge fail with a 500 after the whole first pass without `denoising_strength`;
    Forge also without `hr_additional_modules`, and its `hr_cfg` defaults to 1.0, which drops the
    negative prompt from the hires pass (fixtures/forge/txt2img-hires.json).
    """
    defaults: dict[str, Any] = {}
    why: list[str] = []
    if "denoising_strength" not in body and not catalog.is_sdnext():
        defaults["denoising_strength"] = HIRES_DENOISING
        why.append(
            f"hires fix without denoising_strength: sending the web UI's default "
            f"{HIRES_DENOISING} (the API has none and fails after the first pass)"
        )
    if catalog.is_sdnext():
        defaults.update(_sdnext_hires(body))
        if defaults:
            shown = ", ".join(f"{k} {v!r}" for k, v in defaults.items())
            why.append(f"SD.Next: sending {shown} (its hires fix does nothing without them)")
        return defaults, why
    if not catalog.is_forge():
        return defaults, why
    if "hr_additional_modules" not in body:
        defaults["hr_additional_modules"] = list(FORGE_HR_MODULES)
        why.append(
            'Forge: sending hr_additional_modules ["Use same choices"] (its API has no default)'
        )
    if "hr_cfg" not in body:
        cfg = body.get("cfg_scale", 7.0)
        defaults["hr_cfg"] = cfg
        shown = f"{cfg:g}" if isinstance(cfg, float) else str(cfg)
        why.append(f"Forge: sending hr_cfg {shown} like cfg_scale (its API defaults it to 1.0)")
    return defaults, why


def _sdnext_hires(body: Mapping[str, Any]) -> dict[str, Any]:
    """SD.Next runs no hires pass on `enable_hr` + `hr_scale` alone: it needs a resize mode > 0
    and an upscaler (captured: without them the image keeps the first pass's size)."""
    fields: dict[str, Any] = {}
    if "hr_resize_mode" not in body:
        fields["hr_resize_mode"] = 1
    if not body.get("hr_upscaler"):
        fields["hr_upscaler"] = SDNEXT_HIRES_UPSCALER
    return fields


def _server_fault(exc: ApiError) -> bool:
    """A list the server fails to build (a 500: SD.Next's /schedulers) will not get better, so a
    run goes on without it; 502/503/504 mean the server is away (retried, or stop)."""
    return exc.status is not None and exc.status >= 500 and exc.status not in (502, 503, 504)

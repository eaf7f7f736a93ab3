"""Routing for the fake: route table, FastAPI's order of checks, Basic auth, error bodies."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sdcli.testing import fake_endpoints as ep
from sdcli.testing.fake_data import endpoint_data, load_json, openapi
from sdcli.testing.fake_engine import Engine, HTTPFailure, ServerCrash
from sdcli.testing.fake_http import Call, Reply, json_reply
from sdcli.testing.fake_validate import Invalid, json_decode_error

Handler = Callable[["Api", Call], Any]
_V = "/sdapi/v1/"
_STATIC = (
    "upscalers",
    "latent-upscale-modes",
    "sd-vae",
    "hypernetworks",
    "face-restorers",
    "realesrgan-models",
    "prompt-styles",
    "embeddings",
    "scripts",
    "extensions",
    "memory",
)
_CREATE_INFO = {
    "create/embedding": "create embedding filename: /home/user/embeddings/new.pt",
    "create/hypernetwork": "create hypernetwork filename: /home/user/hypernetworks/new.pt",
    "train/embedding": "train embedding complete: filename: None error: None",
    "train/hypernetwork": "train hypernetwork complete: filename: None error: None",
}


@dataclass(frozen=True)
class Route:
    handler: Handler
    auth: bool = True  # covered by --api-auth
    json_body: bool = False  # the body is parsed (422 when it is not JSON)


def _static(name: str) -> Handler:
    """A captured list, or what a test put in its place (`FakeWebUI.serve_list`)."""

    def handler(api: Api, call: Call) -> Any:
        with api.engine.cv:
            body = api.engine.lists.get(name)
        return endpoint_data(name) if body is None else body

    return handler


def _info(text: str) -> Handler:
    def handler(api: Api, call: Call) -> Any:
        ep.object_body(api, call)
        return {"info": text}

    return handler


class Api:
    """Route table and request handling for one profile, over the shared engine."""

    def __init__(
        self,
        engine: Engine,
        *,
        credentials: Mapping[str, str] | None,
        port: Callable[[], int],
        png_parameters: Callable[[], bool],
    ) -> None:
        self.engine = engine
        self.profile = engine.profile
        self.credentials = dict(credentials) if credentials else None
        self.port = port
        self.png_parameters = png_parameters
        self.routes: dict[str, dict[str, Route]] = {}
        self._build_routes()

    def _add(self, method: str, path: str, handler: Handler, **kw: Any) -> None:
        if path not in self.profile.removed_routes:
            self.routes.setdefault(path, {})[method] = Route(handler, **kw)

    def _build_routes(self) -> None:
        for name in _STATIC:
            self._add("GET", _V + name, _static(name))
        self._add("GET", _V + "loras", _static("loras"), auth=False)  # the Lora extension's own
        self._add("POST", _V + "refresh-loras", lambda api, c: None, auth=False)
        self._add("GET", _V + "samplers", lambda api, c: api.engine.samplers)
        if self.profile.has_schedulers:
            self._add("GET", _V + "schedulers", lambda api, c: api.engine.schedulers)
        self._add("GET", _V + "progress", ep.get_progress)
        self._add("GET", _V + "options", ep.get_options)
        self._add("GET", _V + "cmd-flags", ep.cmd_flags)
        self._add("GET", _V + "sd-models", ep.sd_models)
        self._add("GET", _V + "script-info", lambda api, c: load_json("script-info.json"))
        for path in self.profile.extra_get_routes:
            self._add("GET", path, ep.extra_get)
        posts: dict[str, Handler] = {
            "txt2img": ep.txt2img,
            "img2img": ep.img2img,
            "extra-single-image": ep.extras_single,
            "extra-batch-images": ep.extras_batch,
            "png-info": ep.png_info,
            "interrogate": ep.interrogate,
            "options": ep.set_options,
        }
        posts.update({name: _info(text) for name, text in _CREATE_INFO.items()})
        for name, handler in posts.items():
            self._add("POST", _V + name, handler, json_body=True)
        for name, handler in {
            "interrupt": ep.interrupt,
            "skip": ep.skip,
            "refresh-checkpoints": ep.locked_none,
            "refresh-embeddings": ep.locked_none,
            "refresh-vae": ep.locked_none,
            "unload-checkpoint": lambda api, c: {},
            "reload-checkpoint": lambda api, c: {},
        }.items():
            self._add("POST", _V + name, handler)
        self._add("GET", "/openapi.json", lambda api, c: openapi(), auth=False)
        self._add("GET", "/docs", ep.docs, auth=False)
        if self.profile.ui_mode:
            self._add("GET", "/internal/ping", lambda api, c: {}, auth=False)
            self._add("GET", "/internal/pending-tasks", ep.pending_tasks, auth=False)
            self._add("GET", "/internal/quicksettings-hint", ep.quicksettings, auth=False)
            self._add("GET", "/internal/profile-startup", lambda api, c: {}, auth=False)
            self._add("GET", "/internal/sysinfo", ep.sysinfo, auth=False)
            self._add("POST", "/internal/progress", ep.task_progress, auth=False, json_body=True)
        if self.profile.family == "sdnext":
            from sdcli.testing.fake_sdnext import add_routes

            add_routes(self)

    def handle(self, call: Call) -> Reply:
        """Route (404/405), parse the body (422), check auth (401), run, shape any error."""
        methods = self.routes.get(call.path)
        if methods is None and call.path.endswith("/") and call.path.rstrip("/") in self.routes:
            return Reply(307, b"", headers={"location": call.path.rstrip("/")})
        if methods is None:
            return json_reply(404, {"detail": "Not Found"})
        route = methods.get(call.method)  # FastAPI routes answer HEAD with 405 too
        if route is None:
            return json_reply(405, {"detail": "Method Not Allowed"})
        try:
            if route.json_body and call.raw:
                call.body = self._decode_body(call)
            if route.auth and self.credentials is not None:
                self._check_auth(call)
            result = route.handler(self, call)
        except Invalid as exc:
            return json_reply(422, {"detail": exc.errors})
        except HTTPFailure as exc:
            return self.http_error(exc)
        except ServerCrash as exc:
            return self.crash(exc.error, exc.message)
        return result if isinstance(result, Reply) else json_reply(200, result)

    def _decode_body(self, call: Call) -> Any:
        content_type = call.headers.get("content-type", "application/json").split(";")[0].strip()
        if (
            content_type
            and content_type != "application/json"
            and not content_type.endswith("+json")
        ):
            return call.raw  # FastAPI validates the raw bytes: "value is not a valid dict"
        try:
            return json.loads(call.raw)
        except json.JSONDecodeError as exc:
            raise Invalid(json_decode_error(exc, self.profile.validation_style)) from None
        except UnicodeDecodeError:
            raise HTTPFailure(400, "There was an error parsing the body") from None

    def _check_auth(self, call: Call) -> None:
        """FastAPI's HTTPBasic, then the web UI's credential check: three distinct messages."""
        challenge = {"www-authenticate": "Basic"}
        header = call.headers.get("authorization", "")
        scheme, _, param = header.partition(" ")
        if not header or scheme.lower() != "basic":
            raise HTTPFailure(401, self._auth_text("Not authenticated"), challenge)
        try:
            user, sep, password = base64.b64decode(param).decode("ascii").partition(":")
        except (ValueError, UnicodeDecodeError, binascii.Error):
            user, sep, password = "", "", ""
        if not sep:
            raise HTTPFailure(401, self._auth_text("Invalid authentication credentials"), challenge)
        expected = (self.credentials or {}).get(user)
        if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
            raise HTTPFailure(401, self._auth_text("Incorrect username or password"), challenge)

    def _auth_text(self, text: str) -> str:
        return "Unauthorized" if self.profile.error_style == "sdnext" else text

    def http_error(self, exc: HTTPFailure) -> Reply:
        """An HTTPException: the web UI's handler drops its headers; plain FastAPI keeps them."""
        style = self.profile.error_style
        if style == "fastapi":
            reply = json_reply(exc.status, {"detail": exc.detail})
            if self.profile.auth_challenge:
                reply.headers.update(exc.headers)
            return reply
        body: dict[str, Any] = {
            "error": "HTTPException",
            "detail": exc.detail,
            "body": "",
            "errors": "",
        }
        if style == "sdnext":
            body = {
                "error": "HTTPException",
                "code": exc.status,
                "detail": exc.detail,
                "body": "",
                "errors": f"{exc.status}: {exc.detail}",
            }
        return json_reply(exc.status, body)

    def crash(self, error: str, message: str) -> Reply:
        """Any other exception: a 500 naming its class, in this flavour's shape."""
        style = self.profile.error_style
        if style == "fastapi":
            return json_reply(500, {"error": error, "detail": "", "body": "", "message": message})
        body: dict[str, Any] = {"error": error, "detail": "", "body": "", "errors": message}
        if style == "sdnext":
            body = {"error": error, "code": 500, "detail": "", "body": "", "errors": message}
        return json_reply(500, body)

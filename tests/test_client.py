"""WebUIClient over real loopback HTTP: every method, and every failure as our own error."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from sdcli.apiparse import parse_generation
from sdcli.apitypes import GenerationResult
from sdcli.client import WebUIClient
from sdcli.errors import ApiError, AuthError, ConnectionFailed, ExitCode, ServerTimeout
from sdcli.pngmeta import get_parameters, is_png, png_size
from sdcli.testing.fake_webui import FakeWebUI

MakeFake = Callable[..., FakeWebUI]


@pytest.fixture
def client(fake_webui: FakeWebUI) -> Iterator[WebUIClient]:
    with WebUIClient(fake_webui.url, timeout=30) as c:
        yield c


def test_txt2img_returns_png_bytes_seeds_and_infotexts(client: WebUIClient) -> None:
    result = client.txt2img(
        {"prompt": "a cat", "seed": 5, "batch_size": 2, "steps": 2, "width": 64, "height": 96}
    )
    assert isinstance(result, GenerationResult)
    assert [i.seed for i in result.images] == [5, 6]
    for image in result.images:
        assert is_png(image.data) and png_size(image.data) == (64, 96)
        assert image.infotext is not None and image.infotext.startswith("a cat\n")
        assert get_parameters(image.data) == image.infotext
    assert result.info["sd_model_name"] == "random-sd15"
    assert result.parameters["prompt"] == "a cat"
    assert result.extra_images == 0


def test_img2img_takes_init_images(client: WebUIClient) -> None:
    src = client.txt2img({"prompt": "x", "steps": 1, "width": 64, "height": 64}).images[0].data
    import base64

    result = client.img2img(
        {"prompt": "y", "steps": 1, "init_images": [base64.b64encode(src).decode()], "seed": 1}
    )
    assert result.images[0].seed == 1


def test_lists_options_and_models(client: WebUIClient, fake_webui: FakeWebUI) -> None:
    samplers = client.samplers()
    assert samplers[0].name == "DPM++ 2M" and "k_dpmpp_2m" in samplers[0].aliases
    schedulers = client.schedulers()
    assert schedulers is not None and "Karras" in [s.label for s in schedulers]
    models = client.sd_models()
    assert "anime/counterfeitV30_v30.safetensors [cbfba64e66]" in [m.title for m in models]
    assert client.get_options()["sd_model_checkpoint"] == fake_webui.current_model
    assert "Latent" in client.upscalers()


def test_set_options_switches_the_model(client: WebUIClient, fake_webui: FakeWebUI) -> None:
    client.set_options({"sd_model_checkpoint": "qteamixQ_gamma.safetensors [58174ec2a4]"})
    assert fake_webui.current_model == "qteamixQ_gamma.safetensors [58174ec2a4]"
    client.refresh_checkpoints()
    assert fake_webui.requests_to("/sdapi/v1/refresh-checkpoints")


def test_progress_idle_and_task_progress(client: WebUIClient) -> None:
    p = client.progress()
    assert p.idle and p.progress == 0.0
    task = client.task_progress("task(never-ran)")
    assert task is not None and not task.active and not task.completed
    client.interrupt()
    client.skip()
    client.ping()


def test_task_progress_is_none_without_internal_routes(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(profile="a1111-nowebui")
    with WebUIClient(fake.url) as c:
        assert c.task_progress("task(x)") is None


def test_schedulers_is_none_on_servers_before_1_9(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(profile="a1111-1.8")
    with WebUIClient(fake.url) as c:
        assert c.schedulers() is None


def test_png_info_round_trip(client: WebUIClient) -> None:
    png = client.txt2img({"prompt": "p", "steps": 3, "width": 64, "height": 64}).images[0].data
    info = client.png_info(png)
    assert info.info == get_parameters(png)
    assert info.parameters["Steps"] == "3"


def test_basic_auth_is_sent_preemptively(make_fake_webui: MakeFake) -> None:
    fake = make_fake_webui(auth=("user", "pa:ss"))
    with WebUIClient(fake.url, auth=("user", "pa:ss")) as c:
        assert c.samplers()
    assert len(fake.requests_to("/sdapi/v1/samplers")) == 1  # no challenge round trip


@pytest.mark.parametrize(("auth", "fragment"), [(None, "needs --auth"), (("user", "bad"), "check")])
def test_401_is_an_auth_error(
    make_fake_webui: MakeFake, auth: tuple[str, str] | None, fragment: str
) -> None:
    fake = make_fake_webui(auth=("user", "secret"))
    with WebUIClient(fake.url, auth=auth) as c, pytest.raises(AuthError) as err:
        c.samplers()
    assert err.value.exit_code == ExitCode.AUTH
    assert fragment in str(err.value)
    assert "secret" not in str(err.value) and "bad" not in str(err.value)


def test_404_says_the_api_may_be_off(client: WebUIClient) -> None:
    with pytest.raises(ApiError) as err:
        client.get("/sdapi/v1/no-such-thing")
    assert err.value.status == 404
    assert "start the web UI with --api" in str(err.value)


def test_422_detail_list_is_rendered_field_by_field(client: WebUIClient) -> None:
    with pytest.raises(ApiError) as err:
        client.txt2img({"prompt": "x", "steps": "abc"})
    assert err.value.status == 422
    assert "steps: value is not a valid integer" in str(err.value)
    assert err.value.exit_code == ExitCode.SERVER


def test_500_shows_the_servers_error(client: WebUIClient) -> None:
    with pytest.raises(ApiError) as err:
        client.set_options({"sd_model_checkpoint": "does-not-exist"})
    assert (
        str(err.value) == "the server failed (500): RuntimeError: model 'does-not-exist' not found"
    )


def test_html_error_page_is_named(client: WebUIClient, fake_webui: FakeWebUI) -> None:
    fake_webui.fail("/sdapi/v1/txt2img", mode="html")
    with pytest.raises(ApiError) as err:
        client.txt2img({"prompt": "x"})
    assert err.value.status == 502
    assert "HTML page instead of JSON" in str(err.value)


def test_malformed_json_is_named(client: WebUIClient, fake_webui: FakeWebUI) -> None:
    fake_webui.fail("/sdapi/v1/txt2img", mode="malformed")
    with pytest.raises(ApiError, match="not valid JSON"):
        client.txt2img({"prompt": "x"})


def test_bad_base64_image_is_named(client: WebUIClient, fake_webui: FakeWebUI) -> None:
    fake_webui.fail("/sdapi/v1/txt2img", mode="bad_image")
    with pytest.raises(ApiError, match="not valid base64"):
        client.txt2img({"prompt": "x"})


def test_refused_connection(free_port: int) -> None:
    with WebUIClient(f"http://127.0.0.1:{free_port}") as c, pytest.raises(ConnectionFailed) as err:
        c.samplers()
    assert err.value.exit_code == ExitCode.UNREACHABLE
    assert "is the web UI running with --api?" in str(err.value)


def test_dropped_connection(client: WebUIClient, fake_webui: FakeWebUI) -> None:
    fake_webui.fail("/sdapi/v1/txt2img", mode="close")
    with pytest.raises(ConnectionFailed, match="closed before"):
        client.txt2img({"prompt": "x"})


def test_read_timeout(fake_webui: FakeWebUI) -> None:
    fake_webui.fail("/sdapi/v1/txt2img", mode="hang")
    with WebUIClient(fake_webui.url, timeout=0.3) as c, pytest.raises(ServerTimeout) as err:
        c.txt2img({"prompt": "x"})
    fake_webui.release_hangs()
    assert err.value.exit_code == ExitCode.UNREACHABLE
    assert "--timeout" in str(err.value)


def test_connect_timeout(blackhole_port: int) -> None:
    with WebUIClient(f"http://127.0.0.1:{blackhole_port}", connect_timeout=0.3) as c:
        error: ConnectionFailed | None = None
        for _ in range(64):  # fill the listener's backlog until a connect has to wait
            try:
                c.request("GET", "/sdapi/v1/samplers", read_timeout=0.3)
            except ServerTimeout:
                continue  # connected (queued by the kernel) but unanswered: try again
            except ConnectionFailed as exc:
                error = exc
                break
    assert error is not None
    assert "no answer to connect within 0.3 s" in str(error)
    assert error.exit_code == ExitCode.UNREACHABLE


def test_parse_generation_keeps_grids_apart() -> None:
    import base64
    import json

    png = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    info = {"all_seeds": [1, 2], "infotexts": ["grid", "a", "b"], "index_of_first_image": 1}
    body = {"images": [png, png, png, "not base64!"], "info": json.dumps(info)}
    result = parse_generation(body)  # a broken extra image costs nothing: it is never decoded
    assert [(i.seed, i.infotext) for i in result.images] == [(1, "a"), (2, "b")]
    assert result.extra_images == 2  # the grid and an extension's extra image


def test_parse_generation_warns_about_undecodable_info_and_keeps_the_images() -> None:
    import base64

    png = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    result = parse_generation({"images": [png], "info": "{not json"})
    assert [image.infotext for image in result.images] == [None]
    assert result.info == {}
    assert len(result.warnings) == 1 and "`info` field is not valid JSON" in result.warnings[0]


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A loopback listener that never accepts, with a backlog of 0: connects end up waiting."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        yield s.getsockname()[1]


def test_refused_default_port_points_at_the_api_only_port(
    free_port: int, fake_webui: FakeWebUI, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sdcli.client

    monkeypatch.setattr(sdcli.client, "ALTERNATE_PORTS", {free_port: fake_webui.port})
    with WebUIClient(f"http://127.0.0.1:{free_port}") as c, pytest.raises(ConnectionFailed) as err:
        c.samplers()
    assert f"a web UI answers at {fake_webui.url}" in str(err.value)
    assert f"use --url {fake_webui.url}" in str(err.value)


def test_answer_cut_short_is_a_lost_connection() -> None:
    """Headers promise more bytes than arrive (a server dying mid-answer): exit 3, not 1."""
    import threading

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def answer_half() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 1000\r\n\r\n{"images": ["iVBOR'
                )

        thread = threading.Thread(target=answer_half, daemon=True)
        thread.start()
        port = server.getsockname()[1]
        with WebUIClient(f"http://127.0.0.1:{port}") as c, pytest.raises(ConnectionFailed) as err:
            c.txt2img({"prompt": "x"})
        thread.join(10)
    assert "broke while reading the answer to /sdapi/v1/txt2img" in str(err.value)
    assert err.value.exit_code == ExitCode.UNREACHABLE

"""File names from templates and writes that never clobber or leave partial files."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unicodedata
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdcli import output
from sdcli.errors import OutputError, UsageError
from sdcli.output import (
    DEFAULT_NAME_TEMPLATE,
    MAX_NAME_BYTES,
    NAME_FIELDS,
    check_name_template,
    check_output_dir,
    render_name,
    slugify,
    write_atomic,
    write_new_file,
)

WHEN = datetime(2026, 11, 25, 17, 44, 55)
FIELDS: dict[str, Any] = {"date": WHEN, "time": WHEN, "seed": 1234567890, "index": 1}


def assert_safe(name: str, ext: str = ".png") -> None:
    """What every rendered name must be: one portable file name."""
    assert name == Path(name).name
    assert not any(ch in name for ch in '/\\<>:"|?*')
    assert ".." not in name
    assert not name.startswith((".", "-"))
    assert not any(unicodedata.category(ch)[0] == "C" for ch in name)
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert name.endswith(ext)
    assert len(name) > len(ext)


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- names ---------------------------------------------------------------------------------


def test_default_template() -> None:
    assert render_name(DEFAULT_NAME_TEMPLATE, FIELDS) == "20261125-174455-0001-1234567890.png"


def test_default_template_sorts_in_generation_order() -> None:
    runs = [
        (datetime(2026, 11, 25, 9, 0, 0), 4_000_000_000),
        (datetime(2026, 11, 25, 17, 44, 55), 7),
        (datetime(2026, 12, 1, 0, 0, 0), 99),
    ]
    names = [
        render_name(
            DEFAULT_NAME_TEMPLATE, {"date": when, "time": when, "seed": seed + i, "index": i}
        )
        for when, seed in runs
        for i in (1, 2, 10)
    ]
    assert sorted(names) == names
    assert len(set(names)) == len(names)


def test_date_and_time_default_to_now() -> None:
    before = datetime.now()
    name = render_name("{date}-{time}", {})
    after = datetime.now()
    assert f"{before:%Y%m%d-%H%M%S}.png" <= name <= f"{after:%Y%m%d-%H%M%S}.png"
    assert len(name) == len("20261125-174455.png")


def test_format_specs() -> None:
    fields = {**FIELDS, "index": 7, "cfg_scale": 6.5, "width": 512, "height": 768}
    name = render_name("{date:%Y-%m-%d}_{index:02d}_{width}x{height}_cfg{cfg_scale}", fields)
    assert name == "2026-11-25_07_512x768_cfg6.5.png"


def test_all_documented_fields_render() -> None:
    fields = {name: "v" for name in NAME_FIELDS}
    template = "-".join("{" + name + "}" for name in NAME_FIELDS)
    assert render_name(template, fields) == "-".join("v" for _ in NAME_FIELDS) + ".png"


def test_missing_fields_render_empty() -> None:
    assert render_name("{preset}-{seed}", {"seed": 42}) == "42.png"
    assert render_name("{preset}-{model}", {}) == "image.png"


def test_prompt_slug_is_derived_from_the_prompt() -> None:
    name = render_name("{prompt_slug}", {"prompt": "A cat, (masterpiece:1.2)"})
    assert name == "a-cat-masterpiece-1-2.png"


@pytest.mark.parametrize("template", ["{sed}", "{0}", "{}", "{seed.real}", "{seed[0]}", "{seed!r}"])
def test_unknown_field_lists_the_valid_ones(template: str) -> None:
    with pytest.raises(UsageError, match="unknown field") as info:
        render_name(template, FIELDS)
    assert info.value.hint is not None
    assert all(name in info.value.hint for name in NAME_FIELDS)
    with pytest.raises(UsageError):
        check_name_template(template)


@pytest.mark.parametrize("template", ["{seed", "seed}", "{seed:{width}}"])
def test_malformed_template_is_a_usage_error(template: str) -> None:
    with pytest.raises(UsageError):
        check_name_template(template)


def test_bad_format_spec_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="cannot format"):
        render_name("{seed:%Y}", FIELDS)


def test_check_name_template_accepts_valid_and_escaped_braces() -> None:
    check_name_template(DEFAULT_NAME_TEMPLATE)
    assert render_name("{{x}}-{seed}", FIELDS) == "{x}-1234567890.png"


@pytest.mark.parametrize(
    ("template", "fields", "expected"),
    [
        ("../../etc/{seed}", {"seed": 1}, "etc_1.png"),
        ("/abs/path/{seed}", {"seed": 1}, "abs_path_1.png"),
        ("{model}", {"model": "..\\..\\windows\\win.ini"}, "windows_win.ini.png"),
        ("{model}", {"model": "a\x00b\x1b[31mc\nd"}, "ab[31mc_d.png"),
        ("{model}", {"model": "evil\u202egnp.exe"}, "evilgnp.exe.png"),
        ("{model}", {"model": "-rf --no-preserve-root"}, "rf_--no-preserve-root.png"),
        ("{model}", {"model": ".hidden"}, "hidden.png"),
        ("{model}", {"model": " trailing. . "}, "trailing.png"),
        ("{seed}-{preset}", {"seed": 42}, "42.png"),
        ("{model}", {"model": 'a<b>c:d"e|f?g*h'}, "a_b_c_d_e_f_g_h.png"),
        ("{model}", {"model": "con"}, "_con.png"),
        ("{model}", {"model": "LPT1.txt"}, "_LPT1.txt.png"),
        ("{seed}.png", {"seed": 5}, "5.png"),
        ("{seed}.PNG", {"seed": 5}, "5.png"),
        ("", {}, "image.png"),
        ("...", {}, "image.png"),
    ],
)
def test_sanitisation(template: str, fields: dict[str, Any], expected: str) -> None:
    name = render_name(template, fields)
    assert name == expected
    assert_safe(name)


def test_other_extension() -> None:
    assert render_name("{seed}", {"seed": 1}, ext=".jpg") == "1.jpg"
    assert render_name("{seed}", {"seed": 1}, ext="webp") == "1.webp"
    with pytest.raises(UsageError):
        render_name("{seed}", {"seed": 1}, ext="./x")


def test_thousand_character_prompt_fits() -> None:
    prompt = "masterpiece, best quality, " * 40
    assert len(prompt) > 1000
    name = render_name("{prompt_slug}-" + "x" * 300, {"prompt": prompt})
    assert_safe(name)
    assert name.startswith("masterpiece-best-quality")


def test_japanese_and_emoji() -> None:
    assert slugify("かわいい猫 🐱, 1girl") == "かわいい猫-1girl"
    name = render_name("{prompt_slug}-{seed}", {"prompt": "🐱🐶 桜の木の下で 🌸", "seed": 3})
    assert name == "桜の木の下で-3.png"
    long_name = render_name("{model}", {"model": "猫" * 300})  # 3 bytes each: cut mid-way
    assert_safe(long_name)
    assert long_name == "猫" * ((MAX_NAME_BYTES - 4) // 3) + ".png"


def test_emoji_only_names_fall_back() -> None:
    assert slugify("🐱🐶") == ""
    assert render_name("{prompt_slug}", {"prompt": "🐱🐶"}) == "image.png"


def test_slugify() -> None:
    prompt = "(Masterpiece:1.2), <lora:add_detail:0.8> BREAK ＦＵＬＬ-width  café"
    assert slugify(prompt) == "masterpiece-1-2-break-full-width-café"
    assert slugify("a" * 100, max_len=10) == "a" * 10
    assert slugify("abc def ghi", max_len=4) == "abc"
    assert slugify("") == ""


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_any_text_gives_a_safe_writable_name(tmp_path: Path, text: str) -> None:
    name = render_name("{model}-{prompt_slug}", {"model": text, "prompt": text})
    assert_safe(name)
    path = write_new_file(tmp_path / "h", name, b"x")
    assert path.read_bytes() == b"x"
    path.unlink()


# --- writing -------------------------------------------------------------------------------


def test_write_creates_directories_and_leaves_only_the_file(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    path = write_new_file(directory, "img.png", b"data")
    assert path == directory / "img.png"
    assert path.read_bytes() == b"data"
    assert files_in(directory) == ["img.png"]


def test_existing_names_get_a_suffix(tmp_path: Path) -> None:
    first = write_new_file(tmp_path, "img.png", b"1")
    second = write_new_file(tmp_path, "img.png", b"2")
    third = write_new_file(tmp_path, "img.png", b"3")
    assert [p.name for p in (first, second, third)] == ["img.png", "img-1.png", "img-2.png"]
    assert [p.read_bytes() for p in (first, second, third)] == [b"1", b"2", b"3"]
    assert write_new_file(tmp_path, "noext", b"a").name == "noext"
    assert write_new_file(tmp_path, "noext", b"b").name == "noext-1"


def test_a_directory_with_the_name_is_skipped_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "img.png").mkdir()
    assert write_new_file(tmp_path, "img.png", b"x").name == "img-1.png"
    assert (tmp_path / "img.png").is_dir()


def test_overwrite_replaces(tmp_path: Path) -> None:
    write_new_file(tmp_path, "img.png", b"old")
    path = write_new_file(tmp_path, "img.png", b"new", overwrite=True)
    assert path == tmp_path / "img.png"
    assert path.read_bytes() == b"new"
    assert files_in(tmp_path) == ["img.png"]


def test_overwrite_onto_a_directory_is_an_output_error(tmp_path: Path) -> None:
    (tmp_path / "img.png").mkdir()
    with pytest.raises(OutputError, match=r"img\.png"):
        write_new_file(tmp_path, "img.png", b"x", overwrite=True)
    assert files_in(tmp_path) == ["img.png"]


def test_new_files_get_normal_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_new_file(tmp_path, "img.png", b"x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0o600


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x.png", "a\\b", "a\0b"])
def test_write_refuses_a_path_as_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(OutputError, match="invalid file name"):
        write_new_file(tmp_path / "out", name, b"x")
    assert not (tmp_path / "out").exists()


def test_write_atomic_refuses_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "p" / "x.toml"
    assert write_atomic(path, b"one") == path
    with pytest.raises(OutputError, match="already exists"):
        write_atomic(path, b"two")
    assert path.read_bytes() == b"one"
    write_atomic(path, b"three", overwrite=True)
    assert path.read_bytes() == b"three"
    assert files_in(path.parent) == ["x.toml"]


def test_concurrent_threads_never_overwrite(tmp_path: Path) -> None:
    threads, per_thread = 8, 5
    barrier = threading.Barrier(threads)
    results: dict[int, list[Path]] = {}

    def work(tag: int) -> None:
        barrier.wait()
        results[tag] = [
            write_new_file(tmp_path, "same.png", f"{tag}:{i}".encode() * 1000)
            for i in range(per_thread)
        ]

    workers = [threading.Thread(target=work, args=(tag,)) for tag in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    paths = [path for tag in range(threads) for path in results[tag]]
    assert len(set(paths)) == threads * per_thread
    for tag, written in results.items():
        for i, path in enumerate(written):
            assert path.read_bytes() == f"{tag}:{i}".encode() * 1000
    assert len(files_in(tmp_path)) == threads * per_thread  # no temp files


def test_concurrent_processes_never_overwrite(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from sdcli.output import write_new_file\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "for i in range(5):\n"
        "    data = f'{sys.argv[2]}:{i}'.encode() * 1000\n"
        "    print(write_new_file(Path(sys.argv[1]), 'same.png', data), flush=True)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), str(tag)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for tag in range(4)
    ]
    for proc in procs:  # a barrier: every process is imported and waiting before any writes
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
    outputs = [proc.communicate("go\n")[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0]
    seen: set[str] = set()
    for tag, out in enumerate(outputs):
        paths = out.split()
        assert len(paths) == 5
        for i, path in enumerate(paths):
            assert Path(path).read_bytes() == f"{tag}:{i}".encode() * 1000
        seen.update(paths)
    assert len(seen) == 20
    assert len(files_in(tmp_path)) == 20


@pytest.mark.parametrize("code", [errno.EPERM, getattr(errno, "EOPNOTSUPP", errno.EPERM)])
def test_without_hard_links_names_are_still_never_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def no_link(src: Any, dst: Any) -> None:
        raise OSError(code, os.strerror(code), str(src), None, str(dst))

    monkeypatch.setattr(os, "link", no_link)
    first = write_new_file(tmp_path, "img.png", b"1")
    second = write_new_file(tmp_path, "img.png", b"2")
    assert (first.name, second.name) == ("img.png", "img-1.png")
    assert (first.read_bytes(), second.read_bytes()) == (b"1", b"2")
    assert files_in(tmp_path) == ["img-1.png", "img.png"]


def test_platform_without_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "link")
    write_new_file(tmp_path, "img.png", b"1")
    assert write_new_file(tmp_path, "img.png", b"2").name == "img-1.png"
    assert files_in(tmp_path) == ["img-1.png", "img.png"]


def test_disk_full_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_then_enospc(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(output, "_write_all", half_then_enospc)
    with pytest.raises(OutputError) as info:
        write_new_file(tmp_path, "img.png", b"x" * 10_000)
    assert str(tmp_path) in info.value.message
    assert "no space left" in info.value.message
    assert "\n" not in str(info.value)
    assert files_in(tmp_path) == []


def test_file_size_limit_in_a_real_process(tmp_path: Path) -> None:
    script = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from sdcli.errors import OutputError\n"
        "from sdcli.output import write_new_file\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "try:\n"
        "    write_new_file(Path(sys.argv[1]), 'big.png', b'x' * 65536)\n"
        "except OutputError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    sys.exit('written despite the limit')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert "file too large" in result.stdout
    assert str(tmp_path) in result.stdout
    assert files_in(tmp_path) == []


def test_fsync_failure_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OutputError, match=r"Input/output error|I/O"):
        write_new_file(tmp_path, "img.png", b"x")
    assert files_in(tmp_path) == []


# --- checking the output directory ---------------------------------------------------------


def test_output_dir_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"not a dir")
    with pytest.raises(OutputError, match="is a file, not a directory"):
        check_output_dir(target)
    with pytest.raises(OutputError, match="a file is in the way"):
        write_new_file(target, "img.png", b"x")
    assert target.read_bytes() == b"not a dir"


def test_output_dir_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    target = tmp_path / "file" / "sub" / "dir"
    with pytest.raises(OutputError, match="is a file, not a directory") as info:
        check_output_dir(target)
    assert str(target) in info.value.message
    with pytest.raises(OutputError):
        write_new_file(target, "img.png", b"x")


def test_output_dir_broken_symlink(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "missing")
    with pytest.raises(OutputError, match="broken symbolic link"):
        check_output_dir(tmp_path / "link")


def test_check_output_dir_leaves_no_trace(tmp_path: Path) -> None:
    check_output_dir(tmp_path)
    check_output_dir(tmp_path / "new" / "deeper")
    assert files_in(tmp_path) == []  # neither a probe nor the directory itself


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Drop the effective uid when running as root, where permission bits do not stop writes."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.fixture
def shared_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory the unprivileged uid can reach (pytest's tmp_path is 0o700 for root)."""
    if os.geteuid() != 0:
        yield tmp_path
        return
    base = Path(tempfile.mkdtemp(prefix="sdcli-test-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base)


def test_read_only_directory(shared_dir: Path) -> None:
    writable, read_only = shared_dir / "rw", shared_dir / "ro"
    writable.mkdir()
    writable.chmod(0o777)
    read_only.mkdir()
    read_only.chmod(0o555)
    with unprivileged():
        check_output_dir(writable)  # control: the same user can write next door
        assert write_new_file(writable, "ok.png", b"x").read_bytes() == b"x"
        with pytest.raises(OutputError, match="permission denied") as checked:
            check_output_dir(read_only)
        with pytest.raises(OutputError, match="permission denied") as written:
            write_new_file(read_only, "img.png", b"x")
        with pytest.raises(OutputError, match="permission denied"):
            check_output_dir(read_only / "new")
    assert str(read_only) in checked.value.message
    assert str(read_only) in written.value.message
    assert files_in(read_only) == []


def test_output_module_stays_light() -> None:
    code = (
        "import sys, sdcli.output; print(sorted({'rich', 'typer', 'tempfile'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_check_name_template_catches_bad_format_specs_up_front() -> None:
    from sdcli.output import check_name_template

    with pytest.raises(UsageError, match="seed:q"):
        check_name_template("{seed:q}")
    check_name_template("{date:%Y-%m-%d}-{index:03d}-{seed}")

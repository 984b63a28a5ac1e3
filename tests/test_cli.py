"""The imapproxy command: --version, help, exit codes and one-line errors."""

from __future__ import annotations

import errno
import imaplib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import imapproxy
import imapproxy.server
from imapproxy import cli
from imapproxy.config import Config, ListenerConfig

REPO = Path(__file__).resolve().parents[1]

SERVE_FLAGS = [
    "--config", "--listen", "--listen-tls", "--upstream", "--upstream-ca",
    "--insecure-upstream", "--cache-dir", "--tls-cert", "--tls-key",
    "--allow-plaintext-auth", "--log-level",
]


def run_imapproxy(
    *args: str, cwd: Path, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m imapproxy ARGS`` from this checkout."""
    return subprocess.run(
        [sys.executable, "-m", "imapproxy", *args],
        check=False, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=_env(),
    )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port on 127.0.0.1 that this test keeps bound and listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# ------------------------------------------------------------------- version, help, usage


def test_version_subprocess(tmp_path: Path) -> None:
    result = run_imapproxy("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == f"imapproxy {imapproxy.__version__}\n"
    assert result.stdout == "imapproxy 0.1.0\n"


def test_version_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == "imapproxy 0.1.0\n"


def test_serve_help_mentions_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in SERVE_FLAGS:
        assert re.search(rf"(^|[\s\[/]){re.escape(flag)}\b(?!-)", out), flag
    # every flag has a help text that states its default
    assert out.count("Default:") >= len(SERVE_FLAGS)


def test_demo_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ["--listen", "--dir", "--log-level"]:
        assert flag in out
    assert "127.0.0.1:1143" in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage:" in capsys.readouterr().err


def test_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_bad_log_level_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--log-level", "chatty"]) == 2
    assert "'chatty' is not one of DEBUG" in capsys.readouterr().err


# ------------------------------------------------------------------------- config errors


def test_bad_config_file_exits_2_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "imapproxy.toml"
    config.write_text('[[listener]]\nbnid = "127.0.0.1:1143"\n')
    result = run_imapproxy("serve", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "config error: listener[0].bnid: unknown setting (did you mean 'bind'?)"]


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.toml"
    assert cli.main(["serve", "--config", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == f"config error: {missing}: cannot read the config file: " \
                  "No such file or directory\n"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--upstream", "imaps://me@imap.example.org"],
         ("config error: --upstream: 'imaps://me@imap.example.org': a user name in the URL "
          "is not supported (yet); clients log in upstream with their own credentials")),
        (["--listen", "127.0.0.1"],
         "config error: --listen: '127.0.0.1': the port is missing (expected HOST:PORT)"),
        (["--listen-tls", "127.0.0.1:1993"],
         "config error: --listen-tls: needs --tls-cert (and --tls-key)"),
        (["--tls-cert", "/nonexistent/cert.pem"],
         ("config error: --tls-cert: cannot read /nonexistent/cert.pem: "
          "No such file or directory")),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    args: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve", *args]) == 2
    captured = capsys.readouterr()
    assert captured.err == line + "\n"


# ------------------------------------------------------------- serve, with the real server


def test_unbindable_listen_address_exits_2_naming_the_listener(
    tmp_path: Path, held_port: int
) -> None:
    result = run_imapproxy(
        "serve", "--listen", f"127.0.0.1:{held_port}", "--cache-dir", str(tmp_path / "cache"),
        "--log-level", "WARNING", cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: listener 127.0.0.1:{held_port}: {os.strerror(errno.EADDRINUSE)}"]


def test_unbindable_second_listener_is_the_one_named(tmp_path: Path, held_port: int) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    result = run_imapproxy(
        "serve", "--listen", f"127.0.0.1:{free}", "--listen", f"127.0.0.1:{held_port}",
        "--cache-dir", str(tmp_path / "cache"), "--log-level", "WARNING", cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: listener 127.0.0.1:{held_port}: {os.strerror(errno.EADDRINUSE)}"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_signals(tmp_path: Path, sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "imapproxy", "serve", "--listen", "127.0.0.1:0",
         "--cache-dir", str(tmp_path / "cache"), "--insecure-upstream"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(1.5)  # let it start up and bind
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "WARNING imapproxy.cli upstream TLS certificate verification is DISABLED" in err
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING imapproxy\.cli ", err,
                     re.MULTILINE), err


# ------------------------------------------------------ serve, with a stand-in server.app


@pytest.fixture
def fake_app(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[Config]]:
    """Replace imapproxy.server.app with a module whose serve() does what a test wants."""

    def install(behaviour: BaseException | None = None) -> list[Config]:
        seen: list[Config] = []

        async def serve(config: Config) -> None:
            seen.append(config)
            if behaviour is not None:
                raise behaviour

        module = types.ModuleType("imapproxy.server.app")
        module.serve = serve  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "imapproxy.server.app", module)
        monkeypatch.setattr(imapproxy.server, "app", module, raising=False)
        return seen

    return install


def test_serve_passes_the_config(
    fake_app: Callable[..., list[Config]], tmp_path: Path
) -> None:
    seen = fake_app()
    assert cli.main(["serve", "--listen", "127.0.0.1:2143", "--upstream", "imaps://h",
                     "--cache-dir", str(tmp_path), "--log-level", "debug"]) == 0
    [config] = seen
    assert config.listeners == (ListenerConfig("127.0.0.1", 2143),)
    assert (config.upstream.host, config.upstream.port, config.upstream.security) == (
        "h", 993, "implicit")
    assert config.cache_dir == tmp_path
    assert config.log_level == "DEBUG"
    assert logging.getLogger().level == logging.DEBUG


def test_keyboard_interrupt_exits_0_quietly(
    fake_app: Callable[..., list[Config]], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_app(KeyboardInterrupt())
    assert cli.main(["serve", "--log-level", "ERROR"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""


def test_insecure_upstream_logs_a_warning(
    fake_app: Callable[..., list[Config]], capsys: pytest.CaptureFixture[str]
) -> None:
    seen = fake_app()
    assert cli.main(["serve", "--upstream", "imaps://h", "--insecure-upstream"]) == 0
    assert seen[0].upstream.insecure_skip_verify
    err = capsys.readouterr().err
    assert " WARNING imapproxy.cli upstream TLS certificate verification is DISABLED" in err


@pytest.mark.parametrize(
    "exc",
    [
        # what asyncio.start_server raises
        OSError(errno.EADDRINUSE, "error while attempting to bind on address "
                                  "('127.0.0.1', 2143): address already in use"),
        # what imapproxy.server.app raises
        OSError(errno.EADDRINUSE, "listener 127.0.0.1:2143: error while attempting to bind "
                                  "on address ('127.0.0.1', 2143): address already in use"),
    ],
)
def test_oserror_from_serve_names_the_listener(
    fake_app: Callable[..., list[Config]], capsys: pytest.CaptureFixture[str], exc: OSError
) -> None:
    fake_app(exc)
    assert cli.main(["serve", "--listen", "127.0.0.1:1143", "--listen", "127.0.0.1:2143",
                     "--log-level", "ERROR"]) == 2
    assert capsys.readouterr().err == "error: listener 127.0.0.1:2143: Address already in use\n"


def test_describe_listen_error() -> None:
    one = [ListenerConfig("::1", 1143)]
    two = [ListenerConfig("127.0.0.1", 1143), ListenerConfig("::1", 1993)]
    v6 = OSError(errno.EADDRNOTAVAIL, "error while attempting to bind on address "
                                      "('::1', 1993, 0, 0): cannot assign requested address")
    assert cli.describe_listen_error(v6, two) == (
        f"error: listener [::1]:1993: {os.strerror(errno.EADDRNOTAVAIL)}")
    # Only one listener: it must be the one.
    assert cli.describe_listen_error(OSError(errno.EACCES, "denied"), one) == (
        f"error: listener [::1]:1143: {os.strerror(errno.EACCES)}")
    # Name resolution failures keep their own message.
    gai = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert cli.describe_listen_error(gai, [ListenerConfig("nowhere.invalid", 1143)]) == (
        "error: listener nowhere.invalid:1143: Name or service not known")
    # Not about a socket at all.
    not_socket = PermissionError(errno.EACCES, "Permission denied", "/var/cache/imapproxy")
    assert cli.describe_listen_error(not_socket, one) == (
        "error: /var/cache/imapproxy: Permission denied")


# ----------------------------------------------------------------------------------- demo


def test_demo_refuses_a_bad_listen_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--listen", "localhost"]) == 2
    assert capsys.readouterr().err.startswith("config error: --listen: ")


def test_demo_refuses_a_taken_port(held_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--listen", f"127.0.0.1:{held_port}"]) == 2
    assert capsys.readouterr().err == (
        f"error: listener 127.0.0.1:{held_port}: {os.strerror(errno.EADDRINUSE)}\n")


@pytest.mark.dovecot
@pytest.mark.slow
def test_demo_serves_sample_mail(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "imapproxy", "demo", "--listen", "127.0.0.1:0",
         "--dir", str(demo_dir), "--log-level", "WARNING"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(
            r"imapproxy demo running: IMAP on 127\.0\.0\.1:(\d+), user demo / password demo "
            r"\(upstream Dovecot on (\S+):(\d+)\)\. Ctrl-C to stop\.\n", line)
        assert match, (line, proc.stderr.read() if proc.stderr else "")
        port = int(match[1])
        deadline = time.monotonic() + 10
        while True:
            try:
                client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        try:
            client.login("demo", "demo")
            assert client.select("INBOX")[1] == [b"8"]
            assert client.select("Archive")[1] == [b"3"]
            typ, data = client.search(None, "ALL")
            assert typ == "OK" and data == [b"1 2 3"]
        finally:
            client.logout()
        time.sleep(0.5)  # let the proxy finish the session before stopping it
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err

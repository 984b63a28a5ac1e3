"""Config loading: URL and bind parsing, the TOML file, and command-line overrides."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from imapproxy.config import (
    Config,
    ConfigError,
    LimitsConfig,
    ListenerConfig,
    Overrides,
    UpstreamConfig,
    default_cache_dir,
    load_config,
    parse_bind,
    parse_upstream_url,
)

REPO = Path(__file__).resolve().parents[1]

Writer = Callable[..., Path]


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key (PEM)."""
    openssl = shutil.which("openssl")
    assert openssl, "these tests need the openssl command"
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=localhost"],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture
def write(tmp_path: Path) -> Writer:
    """Write a TOML file and return its path."""

    def write(text: str, name: str = "imapproxy.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def error_of(path: Path | None, overrides: Overrides | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides or Overrides())
    return info.value


# ----------------------------------------------------------------------- parse_upstream_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("imap://mail.example.org", ("mail.example.org", 143, "plain")),
        ("imap://mail.example.org:1143", ("mail.example.org", 1143, "plain")),
        ("imap+starttls://mail.example.org", ("mail.example.org", 143, "starttls")),
        ("imap+starttls://mail.example.org:10143", ("mail.example.org", 10143, "starttls")),
        ("imaps://mail.example.org", ("mail.example.org", 993, "implicit")),
        ("imaps://mail.example.org:10993", ("mail.example.org", 10993, "implicit")),
        ("imaps://mail.example.org/", ("mail.example.org", 993, "implicit")),
        ("IMAPS://Mail.Example.org", ("Mail.Example.org", 993, "implicit")),
        ("imap://127.0.0.1", ("127.0.0.1", 143, "plain")),
        ("imap://[::1]", ("::1", 143, "plain")),
        ("imaps://[::1]:9993", ("::1", 9993, "implicit")),
        ("imaps://[2001:db8::1]", ("2001:db8::1", 993, "implicit")),
        ("  imap://localhost  ", ("localhost", 143, "plain")),
    ],
)
def test_parse_upstream_url(url: str, expected: tuple[str, int, str]) -> None:
    assert parse_upstream_url(url) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mail.example.org", "is not a URL"),
        ("mail.example.org:993", "is not a URL"),
        ("http://mail.example.org", "unsupported scheme 'http'"),
        ("pop3://mail.example.org", "unsupported scheme"),
        ("imap://", "the host is missing"),
        ("imaps://:993", "the host is missing"),
        ("imaps://mail.example.org:0", "between 1 and 65535"),
        ("imaps://mail.example.org:65536", "between 1 and 65535"),
        ("imaps://mail.example.org:imaps", "the port must be a number"),
        ("imaps://mail.example.org:", "the port must be a number"),
        ("imaps://mail.example.org/INBOX", "a path, query or fragment is not allowed"),
        ("imaps://mail.example.org?x=1", "a path, query or fragment is not allowed"),
        ("imaps://::1", "brackets"),
        ("imaps://[::1", "missing ']'"),
        ("imaps://[not-v6]:993", "is not an IPv6 address"),
        ("imaps://[::1]x", "unexpected"),
        ("imaps://mail example.org", "is not a host name"),
    ],
)
def test_parse_upstream_url_rejects(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_upstream_url(url)
    assert info.value.setting == "upstream.url"
    assert problem in info.value.problem
    assert str(info.value).startswith("config error: upstream.url: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("url", ["imaps://user@mail.example.org", "imap://u:pw@host:143"])
def test_parse_upstream_url_rejects_user_part(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_upstream_url(url)
    assert info.value.setting == "upstream.url"
    assert "user name in the URL is not supported" in info.value.problem


def test_parse_upstream_url_names_the_given_setting() -> None:
    with pytest.raises(ConfigError) as info:
        parse_upstream_url("http://x", "--upstream")
    assert info.value.setting == "--upstream"


# ------------------------------------------------------------------------------ parse_bind


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:1143", ("127.0.0.1", 1143)),
        ("0.0.0.0:993", ("0.0.0.0", 993)),
        ("localhost:1143", ("localhost", 1143)),
        ("[::1]:1143", ("::1", 1143)),
        ("[::]:1993", ("::", 1993)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
    ],
)
def test_parse_bind(value: str, expected: tuple[str, int]) -> None:
    assert parse_bind(value, "--listen") == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("127.0.0.1", "the port is missing"),
        ("[::1]", "the port is missing"),
        (":1143", "the host is missing"),
        ("::1:1143", "brackets"),
        ("127.0.0.1:65536", "between 0 and 65535"),
        ("127.0.0.1:-1", "must be a number"),
        ("127.0.0.1:imap", "must be a number"),
        ("*:1143", "is not a host name"),
        ("[::1]1143", "unexpected"),
        ("", "the host is missing"),
    ],
)
def test_parse_bind_rejects(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_bind(value, "listener[3].bind")
    assert info.value.setting == "listener[3].bind"
    assert problem in info.value.problem


def test_default_cache_dir() -> None:
    path = default_cache_dir()
    assert path.is_absolute()
    assert "imapproxy" in path.parts


# ------------------------------------------------------------------------------- defaults


def test_no_file_no_flags_gives_the_defaults() -> None:
    config = load_config(None, Overrides())
    assert config.listeners == (ListenerConfig(host="127.0.0.1", port=1143, tls="none"),)
    assert config.upstream.url == "imap://127.0.0.1:143"
    assert (config.upstream.host, config.upstream.port) == ("127.0.0.1", 143)
    assert config.upstream.security == "plain"
    assert config.cache_dir == default_cache_dir()
    assert config.limits == LimitsConfig()
    assert config.log_level == "INFO"


def test_overrides_argument_is_optional() -> None:
    assert load_config(None) == load_config(None, Overrides())


def test_empty_file_gives_the_defaults(write: Writer) -> None:
    assert load_config(write(""), Overrides()) == load_config(None, Overrides())


# ------------------------------------------------------------------------------ TOML file


def test_full_file(write: Writer, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    path = write(f"""
log_level = "debug"

[upstream]
url = "imaps://imap.example.org"
ca_file = "{cert}"
insecure_skip_verify = true
connect_timeout = 5
command_timeout = 12.5

[[listener]]
bind = "127.0.0.1:1143"
tls = "starttls"
cert_file = "{cert}"
key_file = "{key}"

[[listener]]
bind = "[::]:1993"
tls = "implicit"
cert_file = "{cert}"
key_file = "{key}"
allow_plaintext_auth = true

[[listener]]
bind = "127.0.0.1:2143"

[cache]
dir = "/var/cache/imapproxy"

[limits]
max_line_length = 1000
max_literal_size = 2000
preauth_timeout = 3
idle_timeout = 4.5
""")
    config = load_config(path, Overrides())
    assert config == Config(
        upstream=UpstreamConfig(
            url="imaps://imap.example.org",
            host="imap.example.org",
            port=993,
            security="implicit",
            ca_file=cert,
            insecure_skip_verify=True,
            connect_timeout=5.0,
            command_timeout=12.5,
        ),
        listeners=(
            ListenerConfig("127.0.0.1", 1143, "starttls", cert, key, False),
            ListenerConfig("::", 1993, "implicit", cert, key, True),
            ListenerConfig("127.0.0.1", 2143, "none", None, None, False),
        ),
        cache_dir=Path("/var/cache/imapproxy"),
        limits=LimitsConfig(1000, 2000, 3.0, 4.5),
        log_level="DEBUG",
    )
    assert [lst.bind for lst in config.listeners] == [
        "127.0.0.1:1143", "[::]:1993", "127.0.0.1:2143"]


def test_relative_paths_are_relative_to_the_file(
    write: Writer, tls_files: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = tls_files
    shutil.copy(cert, tmp_path / "c.pem")
    shutil.copy(key, tmp_path / "k.pem")
    path = write("""
[[listener]]
bind = "127.0.0.1:1143"
tls = "implicit"
cert_file = "c.pem"
key_file = "k.pem"
[cache]
dir = "cache"
""")
    config = load_config(path, Overrides())
    assert config.listeners[0].cert_file == tmp_path / "c.pem"
    assert config.listeners[0].key_file == tmp_path / "k.pem"
    assert config.cache_dir == tmp_path / "cache"


def test_key_file_defaults_to_cert_file(
    write: Writer, tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    both = tmp_path / "both.pem"
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    path = write(f'[[listener]]\nbind = "127.0.0.1:1993"\ntls = "implicit"\ncert_file = "{both}"\n')
    listener = load_config(path, Overrides()).listeners[0]
    assert listener.cert_file == listener.key_file == both


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        ('bnid = "x"', "bnid"),
        ('[upstream]\nurl = "imap://h"\nhots = "x"', "upstream.hots"),
        ('[[listener]]\nbnid = "127.0.0.1:1143"', "listener[0].bnid"),
        ('[[listener]]\nbind = "127.0.0.1:1"\n[[listener]]\nbind = "127.0.0.1:2"\nfoo = 1',
         "listener[1].foo"),
        ("[cache]\ndirectory = '/tmp'", "cache.directory"),
        ("[limits]\nmax_line = 10", "limits.max_line"),
        ("[logging]\nlevel = 'INFO'", "logging"),
        ("[upstream.tls]\nverify = true", "upstream.tls"),
    ],
)
def test_unknown_settings_are_named(write: Writer, text: str, setting: str) -> None:
    error = error_of(write(text))
    assert error.setting == setting
    assert error.problem.startswith("unknown setting")
    assert str(error).startswith(f"config error: {setting}: unknown setting")


def test_unknown_setting_message_suggests_the_right_name(write: Writer) -> None:
    error = error_of(write('[[listener]]\nbnid = "127.0.0.1:1143"\n'))
    assert str(error) == "config error: listener[0].bnid: unknown setting (did you mean 'bind'?)"


@pytest.mark.parametrize(
    ("text", "setting", "problem"),
    [
        ("log_level = 3", "log_level", "must be a string, not an integer"),
        ("log_level = 'LOUD'", "log_level", "is not one of DEBUG, INFO"),
        ("upstream = 'imap://h'", "upstream", "must be a table, not a string"),
        ("[upstream]\nurl = 143", "upstream.url", "must be a string, not an integer"),
        ("[upstream]\nurl = 'ftp://h'", "upstream.url", "unsupported scheme"),
        ("[upstream]\nurl = 'imaps://me@h'", "upstream.url", "user name"),
        ("[upstream]\ninsecure_skip_verify = 'yes'", "upstream.insecure_skip_verify",
         "must be true or false, not a string"),
        ("[upstream]\nconnect_timeout = '30'", "upstream.connect_timeout",
         "must be a number of seconds, not a string"),
        ("[upstream]\ncommand_timeout = 0", "upstream.command_timeout", "> 0"),
        ("[upstream]\ncommand_timeout = -1.5", "upstream.command_timeout", "> 0"),
        ("[upstream]\nconnect_timeout = true", "upstream.connect_timeout", "not a boolean"),
        ("[upstream]\nconnect_timeout = inf", "upstream.connect_timeout", "> 0"),
        ("[upstream]\nca_file = ''", "upstream.ca_file", "must not be empty"),
        ("[upstream]\nca_file = 3", "upstream.ca_file", "must be a string"),
        ("[upstream]\nca_file = '/nonexistent/ca.pem'", "upstream.ca_file", "cannot read"),
        ("[[listener]]\nbind = 1143", "listener[0].bind", "must be a string"),
        ("[[listener]]\nbind = '127.0.0.1'", "listener[0].bind", "the port is missing"),
        ("[[listener]]\ntls = 'none'", "listener[0].bind", "missing"),
        ("[[listener]]\nbind = '127.0.0.1:1'\ntls = 'ssl'", "listener[0].tls",
         "'ssl' is not one of 'none', 'starttls', 'implicit'"),
        ("[[listener]]\nbind = '127.0.0.1:1'\ntls = true", "listener[0].tls", "must be a string"),
        ("[[listener]]\nbind = '127.0.0.1:1'\ntls = 'starttls'", "listener[0].cert_file",
         "missing"),
        ("[[listener]]\nbind = '127.0.0.1:1'\ntls = 'implicit'", "listener[0].cert_file",
         "missing"),
        ("[[listener]]\nbind = '127.0.0.1:1'\ntls = 'implicit'\ncert_file = '/nonexistent.pem'",
         "listener[0].cert_file", "cannot read /nonexistent.pem"),
        ("[[listener]]\nbind = '127.0.0.1:1'\ncert_file = '/x.pem'", "listener[0].tls",
         'is "none" but a certificate is set'),
        ("[[listener]]\nbind = '127.0.0.1:1'\nallow_plaintext_auth = 1",
         "listener[0].allow_plaintext_auth", "must be true or false"),
        ("[[listener]]\nbind = '127.0.0.1:1'\n[[listener]]\nbind = '127.0.0.1:1'",
         "listener[1].bind", "127.0.0.1:1 is already used by listener[0]"),
        ("[listener]\nbind = '127.0.0.1:1'", "listener", "[[listener]]"),
        ("listener = []", "listener", "at least one listener"),
        ("listener = ['127.0.0.1:1143']", "listener", "array of tables"),
        ("[cache]\ndir = 5", "cache.dir", "must be a string"),
        ("cache = 'x'", "cache", "must be a table"),
        ("[limits]\nmax_line_length = '64k'", "limits.max_line_length", "must be an integer"),
        ("[limits]\nmax_line_length = 1.5", "limits.max_line_length",
         "must be an integer, not a float"),
        ("[limits]\nmax_literal_size = 0", "limits.max_literal_size", "greater than 0"),
        ("[limits]\npreauth_timeout = -1", "limits.preauth_timeout", "> 0"),
        ("[limits]\nidle_timeout = false", "limits.idle_timeout", "number of seconds"),
        ("[filters]\nrules = []", "filters", "one table per filter"),
    ],
)
def test_bad_values_name_the_setting(
    write: Writer, text: str, setting: str, problem: str
) -> None:
    error = error_of(write(text))
    assert error.setting == setting
    assert problem in error.problem
    assert "\n" not in str(error)


def test_unreadable_and_bad_certificate_files(
    write: Writer, tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")

    def listener(cert_file: Path, key_file: Path) -> str:
        return (f'[[listener]]\nbind = "127.0.0.1:1993"\ntls = "implicit"\n'
                f'cert_file = "{cert_file}"\nkey_file = "{key_file}"\n')

    error = error_of(write(listener(garbage, key)))
    assert error.setting == "listener[0].cert_file"
    assert "cannot use certificate" in error.problem

    error = error_of(write(listener(cert, tmp_path / "missing-key.pem")))
    assert error.setting == "listener[0].key_file"
    assert "cannot read" in error.problem

    error = error_of(write(listener(tmp_path, key)))
    assert error.setting == "listener[0].cert_file"
    assert "is a directory" in error.problem

    error = error_of(write(f'[upstream]\nurl = "imaps://h"\nca_file = "{garbage}"\n'))
    assert error.setting == "upstream.ca_file"
    assert "no usable PEM CA certificate" in error.problem


def test_mismatched_key(write: Writer, tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    cert, _ = tls_files
    other_key = tmp_path / "other-key.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", str(other_key)],
        check=True, capture_output=True,
    )
    error = error_of(write(
        f'[[listener]]\nbind = "127.0.0.1:1993"\ntls = "implicit"\n'
        f'cert_file = "{cert}"\nkey_file = "{other_key}"\n'))
    assert error.setting == "listener[0].cert_file"
    assert "does the key match" in error.problem


def test_encrypted_key_is_refused_without_prompting(
    write: Writer, tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    encrypted = tmp_path / "encrypted-key.pem"
    subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-out", str(encrypted), "-aes256",
         "-passout", "pass:secret"],
        check=True, capture_output=True,
    )
    error = error_of(write(
        f'[[listener]]\nbind = "127.0.0.1:1993"\ntls = "implicit"\n'
        f'cert_file = "{cert}"\nkey_file = "{encrypted}"\n'))
    assert error.setting == "listener[0].key_file"
    assert "passphrase" in error.problem


def test_missing_file_invalid_toml_and_bad_encoding(write: Writer, tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    error = error_of(missing)
    assert error.setting == str(missing)
    assert "cannot read the config file" in error.problem

    error = error_of(write("[upstream\nurl = 1\n"))
    assert "invalid TOML" in error.problem
    assert "line 1" in error.problem

    path = tmp_path / "latin1.toml"
    path.write_bytes('log_level = "INFO" # caf\xe9\n'.encode("latin-1"))
    assert "not UTF-8" in error_of(path).problem


def test_filters_table_may_be_absent(write: Writer) -> None:
    load_config(write('log_level = "INFO"\n'), Overrides())


# ------------------------------------------------------------------------------ overrides


def test_flags_override_the_file(
    write: Writer, tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    cert, _ = tls_files
    path = write("""
log_level = "ERROR"
[upstream]
url = "imaps://file.example.org"
[[listener]]
bind = "127.0.0.1:1143"
[cache]
dir = "/from/file"
""")
    config = load_config(path, Overrides(
        upstream="imap+starttls://flag.example.org:1430",
        upstream_ca=cert,
        insecure_upstream=True,
        cache_dir=tmp_path / "flag-cache",
        log_level="warning",
    ))
    assert config.upstream.url == "imap+starttls://flag.example.org:1430"
    assert (config.upstream.host, config.upstream.port, config.upstream.security) == (
        "flag.example.org", 1430, "starttls")
    assert config.upstream.ca_file == cert
    assert config.upstream.insecure_skip_verify is True
    assert config.cache_dir == tmp_path / "flag-cache"
    assert config.log_level == "WARNING"


def test_file_values_stay_when_no_flag_is_given(write: Writer) -> None:
    path = write("""
log_level = "ERROR"
[upstream]
url = "imaps://file.example.org"
insecure_skip_verify = true
[cache]
dir = "/from/file"
""")
    config = load_config(path, Overrides())
    assert config.upstream.host == "file.example.org"
    assert config.upstream.insecure_skip_verify is True
    assert config.cache_dir == Path("/from/file")
    assert config.log_level == "ERROR"


def test_bad_flag_values_name_the_flag(tls_files: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = tls_files
    cases: list[tuple[Overrides, str]] = [
        (Overrides(upstream="imaps://u@h"), "--upstream"),
        (Overrides(upstream="h:993"), "--upstream"),
        (Overrides(listen=["127.0.0.1"]), "--listen"),
        (Overrides(listen_tls=["127.0.0.1:1993"]), "--listen-tls"),
        (Overrides(listen_tls=["nonsense"], tls_cert=cert, tls_key=key), "--listen-tls"),
        (Overrides(tls_key=key), "--tls-key"),
        (Overrides(listen=["127.0.0.1:1"], tls_cert=tmp_path / "no.pem"), "--tls-cert"),
        (Overrides(listen=["127.0.0.1:1"], tls_cert=cert, tls_key=tmp_path / "no.pem"),
         "--tls-key"),
        (Overrides(upstream_ca=tmp_path / "no.pem"), "--upstream-ca"),
        (Overrides(log_level="chatty"), "--log-level"),
    ]
    for overrides, setting in cases:
        assert error_of(None, overrides).setting == setting, overrides


def test_flag_errors_win_over_the_broken_file_value(write: Writer) -> None:
    # A wrong *type* in the file is still reported, even when a flag overrides the value.
    path = write("[upstream]\nurl = 5\n")
    assert error_of(path, Overrides(upstream="imap://h")).setting == "upstream.url"


def test_listen_replaces_the_files_plain_listeners(
    write: Writer, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    path = write(f"""
[[listener]]
bind = "127.0.0.1:1143"
[[listener]]
bind = "127.0.0.1:2143"
allow_plaintext_auth = true
[[listener]]
bind = "127.0.0.1:5143"
tls = "starttls"
cert_file = "{cert}"
key_file = "{key}"
[[listener]]
bind = "127.0.0.1:1993"
tls = "implicit"
cert_file = "{cert}"
key_file = "{key}"
""")
    config = load_config(path, Overrides(listen=["[::1]:3143", "127.0.0.1:4143"]))
    assert [(lst.bind, lst.tls) for lst in config.listeners] == [
        ("[::1]:3143", "none"), ("127.0.0.1:4143", "none"), ("127.0.0.1:1993", "implicit")]


def test_listen_with_certificate_offers_starttls(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    config = load_config(None, Overrides(listen=["127.0.0.1:1143"], tls_cert=cert, tls_key=key))
    assert config.listeners == (ListenerConfig("127.0.0.1", 1143, "starttls", cert, key),)


def test_listen_tls_adds_implicit_listeners(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    config = load_config(None, Overrides(
        listen=["127.0.0.1:1143"], listen_tls=["127.0.0.1:1993", "[::1]:1993"],
        tls_cert=cert, tls_key=key))
    assert config.listeners == (
        ListenerConfig("127.0.0.1", 1143, "starttls", cert, key),
        ListenerConfig("127.0.0.1", 1993, "implicit", cert, key),
        ListenerConfig("::1", 1993, "implicit", cert, key),
    )
    # --listen-tls alone: only the implicit listener, no default plain one.
    config = load_config(None, Overrides(listen_tls=["127.0.0.1:1993"], tls_cert=cert,
                                         tls_key=key))
    assert config.listeners == (ListenerConfig("127.0.0.1", 1993, "implicit", cert, key),)


def test_listen_tls_adds_to_the_files_listeners(
    write: Writer, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    path = write('[[listener]]\nbind = "127.0.0.1:1143"\n')
    config = load_config(path, Overrides(listen_tls=["127.0.0.1:1993"], tls_cert=cert,
                                         tls_key=key))
    assert [(lst.bind, lst.tls) for lst in config.listeners] == [
        ("127.0.0.1:1143", "none"), ("127.0.0.1:1993", "implicit")]


def test_certificate_flags_replace_the_files_certificate(
    write: Writer, tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    path = write("""
[[listener]]
bind = "127.0.0.1:1143"
[[listener]]
bind = "127.0.0.1:1993"
tls = "implicit"
cert_file = "/missing/cert.pem"
key_file = "/missing/key.pem"
""")
    config = load_config(path, Overrides(tls_cert=cert, tls_key=key))
    assert config.listeners == (
        ListenerConfig("127.0.0.1", 1143, "none"),
        ListenerConfig("127.0.0.1", 1993, "implicit", cert, key),
    )


def test_certificate_flags_alone_make_the_default_listener_starttls(
    tls_files: tuple[Path, Path],
) -> None:
    cert, key = tls_files
    config = load_config(None, Overrides(tls_cert=cert, tls_key=key))
    assert config.listeners == (ListenerConfig("127.0.0.1", 1143, "starttls", cert, key),)


def test_allow_plaintext_auth_flag_applies_to_every_listener(write: Writer) -> None:
    path = write('[[listener]]\nbind = "127.0.0.1:1"\n[[listener]]\nbind = "127.0.0.1:2"\n')
    config = load_config(path, Overrides(allow_plaintext_auth=True))
    assert all(lst.allow_plaintext_auth for lst in config.listeners)
    config = load_config(path, Overrides(listen=["127.0.0.1:3"], allow_plaintext_auth=True))
    assert all(lst.allow_plaintext_auth for lst in config.listeners)
    assert not load_config(path, Overrides()).listeners[0].allow_plaintext_auth


def test_duplicate_listen_flags() -> None:
    error = error_of(None, Overrides(listen=["127.0.0.1:1143", "127.0.0.1:1143"]))
    assert error.setting == "--listen"
    assert "already used" in error.problem
    # Port 0 means "any free port": never a duplicate.
    load_config(None, Overrides(listen=["127.0.0.1:0", "127.0.0.1:0"]))


# -------------------------------------------------------------------------- shipped files


def test_sample_config_loads() -> None:
    config = load_config(REPO / "conf" / "imapproxy.toml", Overrides())
    assert config.upstream.url == UpstreamConfig().url
    assert config.listeners == (ListenerConfig(),)
    assert config.limits == LimitsConfig()
    assert config.log_level == "INFO"


def test_sample_config_documents_every_setting() -> None:
    text = (REPO / "conf" / "imapproxy.toml").read_text(encoding="utf-8")
    for name in ["log_level", "[upstream]", "url", "ca_file", "insecure_skip_verify",
                 "connect_timeout", "command_timeout", "[[listener]]", "bind", "tls",
                 "cert_file", "key_file", "allow_plaintext_auth", "[cache]", "dir",
                 "[limits]", "max_line_length", "max_literal_size", "preauth_timeout",
                 "idle_timeout"]:
        assert name in text, name


def test_docker_config_loads() -> None:
    config = load_config(REPO / "docker" / "imapproxy.toml", Overrides())
    assert config.upstream.host == "dovecot"
    assert config.listeners[0].bind == "0.0.0.0:1143"

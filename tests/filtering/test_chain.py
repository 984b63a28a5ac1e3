"""The chain: order, isolation of failing steps, identity, append filters; the registry."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from imapproxy.config import ConfigError, load_config
from imapproxy.filtering import (
    AppendFilter,
    FilterContext,
    FilterError,
    MessageFilter,
    registry,
)
from imapproxy.filtering.chain import FilterChain
from tests.filtering.sample_filters import AppendMarker, SecretFilter, TagFilter, tag

MSG = b"Subject: hello\r\nFrom: a@example.org\r\n\r\nbody\r\n"
CTX = FilterContext("alice", "INBOX", 7)


def test_steps_run_in_order() -> None:
    chain = FilterChain([TagFilter({"word": "A"}), TagFilter({"word": "B"})])
    assert chain.apply(MSG, CTX) == tag(tag(MSG, b"A"), b"B")
    assert chain.names == ("tag", "tag")


@pytest.mark.parametrize("setting", ["fail_on", "crash_on"])
def test_a_failing_step_leaves_its_input(setting: str, caplog: pytest.LogCaptureFixture
                                         ) -> None:
    chain = FilterChain([TagFilter({"word": "A"}), TagFilter({"word": "B", setting: "hello"}),
                         TagFilter({"word": "C"})])
    with caplog.at_level(logging.WARNING, logger="imapproxy.filtering.chain"):
        out = chain.apply(MSG, CTX)
    assert out == tag(tag(MSG, b"A"), b"C")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "uid=7" in lines[0] and "user=alice" in lines[0]


def test_every_run_is_observed() -> None:
    runs: list[tuple[str, bool]] = []
    chain = FilterChain([TagFilter({"fail_on": "FAIL"}), SecretFilter({})],
                        lambda name, ok: runs.append((name, ok)))
    chain.apply(MSG, CTX)
    chain.apply(MSG + b"FAIL", CTX)
    assert runs == [("tag", True), ("secret", True), ("tag", False), ("secret", True)]


def test_a_step_returning_none_or_garbage_changes_nothing() -> None:
    class Odd(TagFilter):
        def apply(self, raw: bytes, context: FilterContext) -> bytes | None:
            return "text" if b"odd" in raw else None  # type: ignore[return-value]

    assert FilterChain([Odd({})]).apply(MSG, CTX) == MSG
    assert FilterChain([Odd({})]).apply(MSG + b"odd", CTX) == MSG + b"odd"


def test_identity_follows_names_versions_and_settings() -> None:
    base = FilterChain([TagFilter({"word": "A"})]).identity
    assert FilterChain([TagFilter({"word": "A"})]).identity == base
    assert FilterChain([TagFilter({"word": "B"})]).identity != base
    newer = TagFilter({"word": "A"})
    newer.version = "2"
    assert FilterChain([newer]).identity != base
    assert FilterChain([SecretFilter({"word": "A"})]).identity != base
    two = FilterChain([TagFilter({"word": "A"}), SecretFilter({})])
    assert two.identity != FilterChain([SecretFilter({}), TagFilter({"word": "A"})]).identity


def test_cache_output_and_appends() -> None:
    assert FilterChain([TagFilter({})]).cache_output
    assert not FilterChain([TagFilter({}), SecretFilter({})]).cache_output
    assert not FilterChain([TagFilter({})]).appends
    chain = FilterChain([TagFilter({}), AppendMarker({})])
    assert chain.appends and isinstance(AppendMarker({}), AppendFilter)
    out = chain.apply_append(MSG, FilterContext("alice", "Sent"))
    assert out == b"X-Appended-Via: imapproxy Sent\r\n" + MSG
    assert chain.apply(MSG, CTX) == tag(MSG, b"FILTERED")  # AppendMarker.apply: unchanged


def test_a_failing_append_filter_refuses_rather_than_passing_the_message_on() -> None:
    class Broken(AppendMarker):
        def apply_append(self, raw: bytes, context: FilterContext) -> bytes | None:
            raise FilterError("no key for the user")

    with pytest.raises(FilterError, match="no key"):
        FilterChain([Broken({})]).apply_append(MSG, FilterContext("alice", "Sent"))


def test_registry_creates_registered_filters() -> None:
    made = registry.create("tag", {"word": "x"})
    assert isinstance(made, MessageFilter) and made.fingerprint() == "x"
    assert "tag" in registry.available()
    assert {"pgp", "image-recode", "plaintext"} <= set(registry.available())


def test_registry_errors_are_one_readable_line() -> None:
    with pytest.raises(registry.UnknownFilter, match="unknown filter 'nope'"):
        registry.create("nope", {})
    with pytest.raises(registry.FilterSetupError, match="word must be a string"):
        registry.create("tag", {"word": 3})
    registry.register("broken", lambda settings: object())  # type: ignore[arg-type,return-value]
    try:
        with pytest.raises(registry.FilterSetupError, match="not a MessageFilter"):
            registry.create("broken", {})
    finally:
        registry.unregister("broken")


def test_config_reports_filter_problems_at_load(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[listener]]\nbind = "127.0.0.1:0"\nfilters = ["tag", "nope"]\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.setting == "listener[0].filters" and "nope" in err.value.problem
    path.write_text('[filters.tag]\nword = 5\n')
    with pytest.raises(ConfigError, match="filters.tag: filter 'tag': word must be"):
        load_config(path)
    path.write_text('[[listener]]\nbind = "127.0.0.1:0"\nfixups = ["uid-frist"]\n')
    with pytest.raises(ConfigError, match="did you mean 'uid-first'"):
        load_config(path)
    path.write_text('[upstream]\nquirks = ["no-uidplus", "bogus"]\n')
    with pytest.raises(ConfigError, match="upstream.quirks"):
        load_config(path)


def test_config_loads_filters_rules_fixups_and_quirks(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('''
[upstream]
quirks = ["no-uidplus"]
[[listener]]
bind = "127.0.0.1:0"
filters = ["tag"]
fixups = ["uid-first"]
[filters.tag]
word = "W"
[[filter_rule]]
user = "alice*"
client_name = "K-9*"
filters = []
fixups = ["delay-newmail"]
''')
    config = load_config(path)
    assert config.listeners[0].filters == ("tag",)
    assert config.listeners[0].fixups == ("uid-first",)
    assert config.filter_settings == {"tag": {"word": "W"}}
    rule = config.filter_rules[0]
    assert (rule.user, rule.client_name, rule.filters, rule.fixups) == (
        "alice*", "K-9*", (), ("delay-newmail",))
    assert config.upstream.quirks == ("no-uidplus",)
    assert config.cache.memory_only_size == 64 * 1024**2
    path.write_text('[cache]\nmemory_only_size = "8 MiB"\n')
    assert load_config(path).cache.memory_only_size == 8 * 1024**2
    assert load_config(path).cache.max_size == 1024**3


def test_shipped_configs_load(tmp_path: Path) -> None:
    conf = Path(__file__).resolve().parents[2] / "conf"
    for name in ("imapproxy.toml", "mobile-gateway.toml"):
        text = (conf / name).read_text()
        # The built-in filters live in other branches' modules: check the rest here.
        for builtin in ("pgp", "image-recode", "plaintext"):
            registry.register(builtin, TagFilter)
        try:
            config = load_config(_without_tls_files(tmp_path, name, text))
        finally:
            for builtin in ("pgp", "image-recode", "plaintext"):
                registry.unregister(builtin)
        assert config.listeners


def _without_tls_files(tmp_path: Path, name: str, text: str) -> Path:
    """The sample with its certificate lines pointed at a throwaway self-signed pair."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-keyout", str(key), "-out", str(cert),
                        "-days", "2", "-subj", "/CN=localhost"],
                       check=True, capture_output=True, timeout=30)
    lines = []
    for line in text.splitlines():
        if line.startswith("cert_file"):
            line = f'cert_file = "{cert}"'
        elif line.startswith("key_file"):
            line = f'key_file = "{key}"'
        lines.append(line)
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_serve_refuses_an_unknown_filter_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from imapproxy import cli

    path = tmp_path / "c.toml"
    path.write_text('[[listener]]\nbind = "127.0.0.1:0"\nfilters = ["pgpp"]\n')
    assert cli.main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("config error: listener[0].filters: unknown filter 'pgpp'")
    assert "\n" not in err


def test_fetch_without_uid_learns_the_uid_by_sequence() -> None:
    from imapproxy.protocol.response import fetch_attributes, parse_response
    from imapproxy.server.fetch import ContentFetch
    from imapproxy.server.mailbox import SelectedMailbox

    box = SelectedMailbox(b"INBOX", False, 1, 3, [10, 20, 30])
    engine = ContentFetch(None, None, box, print, print, None)  # type: ignore[arg-type]
    response = parse_response(b"* 2 FETCH (RFC822.SIZE 44)\r\n")
    items = engine._with_known_uid(response, fetch_attributes(response) or {})
    assert items["UID"].value == "20"  # type: ignore[union-attr]
    response = parse_response(b"* 9 FETCH (RFC822.SIZE 44)\r\n")
    assert "UID" not in engine._with_known_uid(response, fetch_attributes(response) or {})

"""[cache] max_size in the TOML file, and the CacheConfig defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from imapproxy.config import CacheConfig, ConfigError, Overrides, load_config, parse_size


def load(tmp_path: Path, text: str) -> CacheConfig:
    path = tmp_path / "imapproxy.toml"
    path.write_text(text)
    return load_config(path, Overrides()).cache


def test_default_is_one_gib(tmp_path: Path) -> None:
    assert CacheConfig().max_size == 1024**3
    assert load_config(None).cache == CacheConfig()
    assert load(tmp_path, '[cache]\ndir = "c"\n') == CacheConfig()
    assert load_config(tmp_path / "imapproxy.toml").cache_dir == tmp_path / "c"


@pytest.mark.parametrize(
    ("value", "size"),
    [("1073741824", 1024**3), ('"1 GiB"', 1024**3), ('"512M"', 512 * 1024**2),
     ('"512 MiB"', 512 * 1024**2), ('"1.5G"', 3 * 1024**3 // 2), ('"100 KiB"', 102400),
     ('"2T"', 2 * 1024**4), ('"4096"', 4096), ('"4096 B"', 4096), ('"10 mb"', 10 * 1024**2)],
)
def test_max_size(tmp_path: Path, value: str, size: int) -> None:
    assert load(tmp_path, f"[cache]\nmax_size = {value}\n").max_size == size


@pytest.mark.parametrize(
    ("value", "problem"),
    [("0", "greater than 0"), ("-5", "greater than 0"), ('"lots"', "is not a size"),
     ('"1 PB"', "is not a size"), ("1.5", "not a float"), ("true", "not a boolean"),
     ('"0 GiB"', "greater than 0"), ('""', "is not a size")],
)
def test_bad_max_size(tmp_path: Path, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"[cache]\nmax_size = {value}\n")
    assert info.value.setting == "cache.max_size"
    assert problem in info.value.problem


def test_parse_size_names_the_setting() -> None:
    with pytest.raises(ConfigError) as info:
        parse_size("x", "--cache-max-size")
    assert info.value.setting == "--cache-max-size"


def test_unknown_cache_setting_suggests(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "[cache]\nmax_sise = 5\n")
    assert "did you mean 'max_size'" in str(info.value)


def test_sample_config_documents_max_size() -> None:
    sample = Path(__file__).resolve().parents[2] / "conf" / "imapproxy.toml"
    assert "max_size" in sample.read_text(encoding="utf-8")
    assert load_config(sample, Overrides()).cache == CacheConfig()

"""Settings are checked at start: unknown names (with a suggestion), strict booleans, types and
ranges; and docs/OPERATIONS.md's reference table is the one generated from the code."""
from __future__ import annotations

from pathlib import Path

import pytest

from idnode import config, config_doc
from idnode.config import Settings, SettingsError


def _error(env: dict[str, str], toml: str | None = None, tmp_path: Path | None = None) -> str:
    path = None
    if toml is not None:
        assert tmp_path is not None
        path = tmp_path / "idnode.toml"
        path.write_text(toml, encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        config.load(path, env)
    return str(caught.value)


def test_defaults_are_valid() -> None:
    assert config.validate(Settings()) == Settings()
    assert config.load(None, {}) == Settings()


def test_a_mistyped_variable_is_named_with_the_likely_one() -> None:
    assert _error({"IDNODE_HTTP_PORTT": "8081"}) == (
        "unknown variable(s): IDNODE_HTTP_PORTT (did you mean IDNODE_HTTP_PORT?)")
    assert "IDNODE_NONSENSE_THING" in _error({"IDNODE_NONSENSE_THING": "1"})


def test_variables_that_are_not_settings_are_let_through() -> None:
    env = {"IDNODE_API_KEY": "k", "IDNODE_CONFIG": "", "IDNODE_TEST_DSN": "x",
           "IDNODE_BENCH_ROUNDS": "3", "OTHER": "1"}
    assert config.load(None, env) == Settings()


def test_a_mistyped_toml_key_is_named_with_the_likely_one(tmp_path: Path) -> None:
    assert _error({}, 'cache_tll = 5\n', tmp_path) == (
        "unknown setting(s): cache_tll (did you mean cache_ttl?)")


@pytest.mark.parametrize("text, value", [("true", True), ("TRUE", True), ("1", True),
                                         ("yes", True), ("on", True), ("false", False),
                                         ("0", False), ("no", False), ("off", False)])
def test_booleans_read_strictly(text: str, value: bool) -> None:
    assert config.load(None, {"IDNODE_HTTP_TRUST_FORWARDED": text}).http_trust_forwarded is value


def test_a_misspelt_boolean_is_refused_not_read_as_false() -> None:
    assert _error({"IDNODE_CACHE_ENABLED": "ture"}) == (
        "setting cache_enabled: 'ture' is not a valid bool (true or false)")


@pytest.mark.parametrize("name, value, why", [
    ("HTTP_PORT", "70000", "out of range (between 0 and 65535)"),
    ("HTTP_PORT", "-1", "out of range (between 0 and 65535)"),
    ("HTTP_PORT", "80.5", "is not a valid int"),
    ("WORKERS", "0", "out of range (between 1 and 1024)"),
    ("CACHE_TTL", "-5", "out of range (>= 0)"),
    ("CACHE_TTL", "nan", "out of range (>= 0)"),
    ("CACHE_TTL", "soon", "is not a valid float"),
    ("LOG_LEVEL", "chatty", "is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
])
def test_types_and_ranges(name: str, value: str, why: str) -> None:
    assert why in _error({f"IDNODE_{name}": value})


def test_toml_types_are_not_converted_silently(tmp_path: Path) -> None:
    assert "not a valid int" in _error({}, "http_port = true\n", tmp_path)
    assert "not a valid str" in _error({}, "node_prefix = 0.118\n", tmp_path)
    (tmp_path / "idnode.toml").write_text('node_prefix = "0.119"\n', encoding="utf-8")
    assert config.load(tmp_path / "idnode.toml", {}).node_prefix == "0.119"


def test_the_pool_minimum_is_within_its_maximum() -> None:
    assert "above db_pool_max" in _error({"IDNODE_DB_POOL_MIN": "11", "IDNODE_DB_POOL_MAX": "10"})


def test_command_line_overrides_are_checked_too() -> None:
    with pytest.raises(SettingsError, match="http_port"):
        Settings().with_overrides(http_port=99999)
    assert Settings().with_overrides(http_port=None, grpc_port=0).grpc_port == 0


def test_every_range_names_a_setting() -> None:
    assert set(config.RANGES) <= set(Settings.__dataclass_fields__)


def test_the_operations_guide_lists_every_setting_as_the_code_has_it() -> None:
    doc = config_doc.DOC.read_text(encoding="utf-8")
    assert config_doc.current(doc) == config_doc.section(), (
        "docs/OPERATIONS.md's settings reference is stale: run "
        "`python -m idnode.config_doc --write`")
    for name in Settings.__dataclass_fields__:
        assert f"`IDNODE_{name.upper()}`" in doc

"""Gateway configuration: TOML file, environment overrides, clear errors, secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from urbanpulse.config import ConfigError, load_settings


def test_defaults_match_the_local_stack() -> None:
    settings = load_settings(None)
    assert (settings.mqtt.host, settings.mqtt.port) == ("127.0.0.1", 18831)
    assert settings.influx.url == "http://127.0.0.1:18086"
    assert settings.influx.api == "v1" and settings.influx.database == "urbanpulse"
    assert settings.batch.max_delay_s == 1.0


def test_file_values_and_environment_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "urbanpulse.toml"
    config.write_text('[mqtt]\nhost = "broker"\nport = 1883\n[registry]\npath = "reg.toml"\n')
    monkeypatch.setenv("URBANPULSE_MQTT__PORT", "8883")
    monkeypatch.setenv("URBANPULSE_INFLUX__DATABASE", "city")
    settings = load_settings(config)
    assert settings.mqtt.host == "broker"  # from the file
    assert settings.mqtt.port == 8883  # environment beats file
    assert settings.influx.database == "city"
    assert settings.registry.path == tmp_path / "reg.toml"  # relative to the config file


def test_bad_file_gives_one_message_naming_key_value_and_what_is_allowed(
    tmp_path: Path,
) -> None:
    config = tmp_path / "urbanpulse.toml"
    config.write_text('[mqtt]\nport = "many"\nhots = "x"\n[influx]\napi = "v9"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    text = str(info.value)
    assert text.startswith(f"{config}: invalid configuration")
    assert "[mqtt] port = 'many': Input should be a valid integer" in text
    assert "(environment: URBANPULSE_MQTT__PORT)" in text
    assert "[mqtt] hots = 'x': unknown key" in text
    assert "[influx] api = 'v9': Input should be 'v1' or 'v2'" in text


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "none.toml")


def test_secrets_from_files_are_masked(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt.pass"
    secret.write_text("s3cret\n")
    config = tmp_path / "urbanpulse.toml"
    config.write_text(f'[mqtt]\nusername = "gw"\npassword_file = "{secret}"\n')
    settings = load_settings(config)
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings) and "s3cret" not in settings.model_dump_json()
    config.write_text(f'[mqtt]\npassword = "x"\npassword_file = "{secret}"\n')
    with pytest.raises(ConfigError, match="either password or password_file"):
        load_settings(config)


def test_secrets_from_systemd_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the unit does: LoadCredential= puts the files in $CREDENTIALS_DIRECTORY and
    Environment= names them; the configuration file holds no secret."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt-password").write_text("m-secret\n")
    (credentials / "influx-password").write_text("i-secret\n")
    monkeypatch.setenv("URBANPULSE_MQTT__PASSWORD_FILE", str(credentials / "mqtt-password"))
    monkeypatch.setenv("URBANPULSE_INFLUX__PASSWORD_FILE", str(credentials / "influx-password"))
    config = tmp_path / "urbanpulse.toml"
    config.write_text('[mqtt]\nusername = "urbanpulse-gateway"\n[influx]\nusername = "gw"\n')
    settings = load_settings(config)
    assert settings.mqtt.password is not None and settings.influx.password is not None
    assert settings.mqtt.password.get_secret_value() == "m-secret"
    assert settings.influx.password.get_secret_value() == "i-secret"


def test_v2_needs_an_org(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("URBANPULSE_INFLUX__API", "v2")
    with pytest.raises(ConfigError, match="needs org"):
        load_settings(None)


def test_example_configuration_documents_every_key_with_its_default(repo_root: Path) -> None:
    import tomllib

    from urbanpulse.config import Settings

    example = repo_root / "deploy" / "urbanpulse.toml.example"
    text = example.read_text()
    settings = load_settings(example)
    defaults = Settings()
    # Relative paths are resolved against the example's folder.
    paths: dict[str, Any] = {"registry": True, "spool": {"path"}, "archive": {"path"}}
    assert settings.model_dump(exclude=paths) == defaults.model_dump(exclude=paths)
    assert settings.spool.path == example.parent / defaults.spool.path
    assert settings.archive.path == example.parent / defaults.archive.path
    parsed = tomllib.loads(text)
    for section, model in defaults:
        for key in type(model).model_fields:
            documented = key in parsed.get(section, {}) or f"# {key} =" in text
            assert documented, f"[{section}] {key} is not in {example.name}"


def test_workers_need_mqtt_5_and_auto_is_one_per_core(tmp_path: Path) -> None:
    import os

    path = tmp_path / "gw.toml"
    path.write_text('[service]\nworkers = "auto"\n')
    assert load_settings(path).service.worker_count() == min(os.cpu_count() or 1, 16)
    path.write_text('[service]\nworkers = 2\n[mqtt]\nprotocol = "3.1.1"\n')
    with pytest.raises(ConfigError, match="workers > 1 needs \\[mqtt\\] protocol = '5'"):
        load_settings(path)
    path.write_text("[service]\nworkers = 17\n")
    with pytest.raises(ConfigError, match="workers"):
        load_settings(path)

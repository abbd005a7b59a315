from __future__ import annotations

import pytest

from continualcode.config import ConfigError, load_settings


@pytest.fixture
def homes(tmp_path, monkeypatch):
    user = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user))
    (user / "continualcode").mkdir(parents=True)
    repo = tmp_path / "repo"
    (repo / ".continualcode").mkdir(parents=True)
    return user / "continualcode" / "config.toml", repo


def test_defaults_when_no_config(homes):
    _, repo = homes
    settings = load_settings(repo)
    assert settings.model == "qwen2.5-coder-0.5b" and settings.engine == "embedded"


def test_precedence_flags_over_repo_over_user_over_defaults(homes):
    user, repo = homes
    user.write_text('model = "smollm2-135m"\nengine = "vllm"\ntemperature = 1\nbash_timeout = 5.0\n')
    (repo / ".continualcode" / "config.toml").write_text('engine = "scripted"\ntemperature = 0.5\n')
    settings = load_settings(repo, {"temperature": 0.9, "model": None})
    assert settings.model == "smollm2-135m"      # user file
    assert settings.engine == "scripted"         # repo file beats user file
    assert settings.temperature == 0.9           # flag beats both
    assert settings.bash_timeout == 5.0
    assert settings.max_new_tokens == 512        # default


def test_int_is_accepted_for_float(homes):
    user, repo = homes
    user.write_text("temperature = 1\n")
    assert load_settings(repo).temperature == 1.0


def test_unknown_key_names_file_and_known_keys(homes):
    _, repo = homes
    (repo / ".continualcode" / "config.toml").write_text('modle = "x"\n')
    with pytest.raises(ConfigError, match="unknown setting.*modle"):
        load_settings(repo)


def test_bad_toml_and_bad_type(homes):
    user, repo = homes
    user.write_text("model = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(repo)
    user.write_text('max_new_tokens = "many"\n')
    with pytest.raises(ConfigError, match="max_new_tokens must be int"):
        load_settings(repo)

"""The config file, environment overrides and CLI overrides, and their error messages."""

from pathlib import Path

import pytest
import yaml

from contracts.settings import RaftConfig
from flows.config import ConfigError, env_name, leaf_keys, load_config


def test_defaults_are_the_embedded_setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no raft.yaml here
    cfg = load_config(environ={})
    assert cfg.work_dir == Path(".raft")
    assert cfg.qdrant.url is None
    assert cfg.qdrant_path == Path(".raft/qdrant")
    assert cfg.embedding.model == "sentence-transformers/all-MiniLM-L6-v2"


def test_repo_config_file_matches_model_defaults():
    # raft.yaml documents the defaults: every field, each with the model's default value.
    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "raft.yaml", environ={})
    assert cfg.corpus.path == repo / "examples" / "corpus"
    assert cfg.chunking.size == 192 and cfg.qdrant.collection == "raft_chunks"
    written = yaml.safe_load((repo / "raft.yaml").read_text())
    defaults = RaftConfig().model_dump(mode="json")
    missing = [key for key in leaf_keys() if _at(written, key) is _ABSENT]
    assert missing == [], f"raft.yaml lacks {missing}"
    differing = {key: (_at(written, key), _at(defaults, key)) for key in leaf_keys() if _at(written, key) != _at(defaults, key)}
    assert differing == {}, f"raft.yaml's value against the model's default: {differing}"


_ABSENT = object()


def _at(data, key: str):
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return _ABSENT
        data = data[part]
    return data


def test_relative_paths_in_file_resolve_against_the_file(tmp_path):
    (tmp_path / "conf").mkdir()
    f = tmp_path / "conf" / "raft.yaml"
    f.write_text("work_dir: state\ncorpus:\n  path: ../docs\n")
    cfg = load_config(f, environ={})
    assert cfg.work_dir == tmp_path / "conf" / "state"
    assert cfg.corpus.path == tmp_path / "conf" / ".." / "docs"


def test_unknown_key_in_file_is_named(tmp_path):
    f = tmp_path / "raft.yaml"
    f.write_text("qdrant:\n  ulr: http://x\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'qdrant.ulr'.*raft.yaml"):
        load_config(f, environ={})


def test_bad_value_names_key_and_value(tmp_path):
    f = tmp_path / "raft.yaml"
    f.write_text("chunking:\n  size: lots\n")
    with pytest.raises(ConfigError, match=r"chunking.size.*'lots'"):
        load_config(f, environ={})


def test_overlap_must_be_below_size():
    with pytest.raises(ConfigError, match="overlap"):
        load_config(overrides={"chunking.size": "32", "chunking.overlap": "32"}, environ={})


def test_env_overrides_file_and_cli_overrides_env(tmp_path):
    f = tmp_path / "raft.yaml"
    f.write_text("qdrant:\n  url: http://file:6333\nsearch:\n  k: 3\n")
    env = {"RAFT_QDRANT_URL": "http://env:6333", "RAFT_CORPUS_DEFAULT_ACCESS": "public, staff", "RAFT_SEARCH_K": "7"}
    cfg = load_config(f, environ=env)
    assert cfg.qdrant.url == "http://env:6333"
    assert cfg.corpus.default_access == ["public", "staff"]
    assert cfg.search.k == 7
    cfg = load_config(f, overrides={"qdrant.url": "null", "search.k": 9}, environ=env)
    assert cfg.qdrant.url is None and cfg.search.k == 9


def test_unknown_env_var_and_override_are_named():
    with pytest.raises(ConfigError, match="RAFT_QDRANT_ULR"):
        load_config(environ={"RAFT_QDRANT_ULR": "x"})
    with pytest.raises(ConfigError, match="'embedding.modle'"):
        load_config(overrides={"embedding.modle": "x"}, environ={})


def test_every_field_has_an_env_name():
    names = {env_name(k) for k in leaf_keys()}
    assert {"RAFT_WORK_DIR", "RAFT_QDRANT_URL", "RAFT_CHUNKING_SIZE", "RAFT_CHECKS_MAX_DELETED_SHARE"} <= names


def test_config_file_from_env_and_broken_yaml(tmp_path):
    f = tmp_path / "other.yaml"
    f.write_text("search: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(environ={"RAFT_CONFIG": str(f)})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml", environ={})


def test_a_key_given_twice_is_an_error_not_a_silent_replacement(tmp_path):
    # YAML's last-one-wins would drop the first section's default_access, and with it who may read.
    f = tmp_path / "raft.yaml"
    f.write_text("corpus:\n  default_access: [internal]\nsearch:\n  k: 3\ncorpus:\n  path: docs\n")
    with pytest.raises(ConfigError, match=r"(?s)key 'corpus' appears twice \(first on line 1\).*raft.yaml\", line 5"):
        load_config(f, environ={})
    f.write_text("serving:\n  anonymous: false\n  anonymous: true\n")
    with pytest.raises(ConfigError, match=r"key 'anonymous' appears twice \(first on line 2\)"):
        load_config(f, environ={})
    f.write_text("base: &base\n  default_access: [internal]\ncorpus:\n  <<: *base\n  default_access: [hr]\n")
    with pytest.raises(ConfigError, match="unknown config key 'base'"):  # a merge key may be overridden: no duplicate
        load_config(f, environ={})


def test_a_config_file_that_is_not_utf8_or_not_a_file_is_named(tmp_path):
    f = tmp_path / "raft.yaml"
    f.write_bytes(b"search:\n  k: 3 # caf\xe9\n")
    with pytest.raises(ConfigError, match=r"raft.yaml is not UTF-8 \(line 2, byte 20\)"):
        load_config(f, environ={})
    with pytest.raises(ConfigError, match=r"cannot be read \(Is a directory\)"):
        load_config(tmp_path, environ={})


def test_an_error_names_where_the_value_came_from():
    with pytest.raises(ConfigError, match=r"'chunking.size' from --set:.*'abc'"):
        load_config(overrides={"chunking.size": "abc"}, environ={})
    with pytest.raises(ConfigError, match=r"'chunking.size' from RAFT_CHUNKING_SIZE:"):
        load_config(environ={"RAFT_CHUNKING_SIZE": "abc"})


def test_an_error_never_shows_a_secret():
    cases = [
        ({"RAFT_SERVING_API_KEYS": '{"sk-SUPERSECRET": "hr"}'}, {}, "serving.api_keys"),
        ({}, {"teacher.api_key": ["sk-TEACHERSECRET"]}, "teacher.api_key"),
        ({}, {"qdrant.api_key": {"k": "sk-QDRANTSECRET"}}, "qdrant.api_key"),
    ]
    for environ, overrides, key in cases:
        with pytest.raises(ConfigError) as e:
            load_config(overrides=overrides, environ=environ)
        assert f"config key {key!r}" in str(e.value) and "not shown: it is secret" in str(e.value)
        assert "SECRET" not in str(e.value)


@pytest.mark.parametrize(
    "key, value", [("corpus.default_access", ""), ("corpus.include", ""), ("teacher.timeout_s", "-1"), ("qdrant.timeout_s", "0"),
                   ("teacher.temperature", "-3")]
)
def test_values_that_cannot_work_are_refused(key, value):
    with pytest.raises(ConfigError, match=rf"'{key}' from --set"):
        load_config(overrides={key: value}, environ={})

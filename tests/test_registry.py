"""The model registry: versions written atomically, listed, found by name or alias."""

import json

import pytest

from tests.conftest import fake_adapter
from training.registry import RegistryError, get_version, list_versions, read_aliases, register, set_alias


def test_register_moves_the_outputs_into_a_new_uniquely_named_version(tmp_path):
    models = tmp_path / "models"
    a = register(models, fake_adapter(tmp_path / "run1" / "adapter"), {"metrics": {"eval_loss": 1.5}})
    b = register(models, fake_adapter(tmp_path / "run2" / "adapter"), {"metrics": {"eval_loss": 1.2}},
                 merged_dir=fake_adapter(tmp_path / "run2" / "merged"))
    assert a.name != b.name
    assert not (tmp_path / "run1" / "adapter").exists(), "moved, not copied"
    assert (a.adapter_dir / "adapter_model.safetensors").read_bytes() == b"weights"
    assert a.merged_dir is None and b.merged_dir is not None
    assert [v.name for v in list_versions(models)] == [a.name, b.name]
    assert json.loads((b.path / "metadata.json").read_text())["merged"] is True
    assert b.summary() == {"name": b.name, "path": str(b.path), "created": b.metadata["created"], "metrics": {"eval_loss": 1.2}}


def test_half_written_versions_are_not_listed(tmp_path):
    models = tmp_path / "models"
    v = register(models, fake_adapter(tmp_path / "adapter"), {})
    (models / f".{v.name}.abc123").mkdir()  # a crash while assembling
    (models / "raft-20260101-000000-000000").mkdir()  # no metadata.json
    assert [x.name for x in list_versions(models)] == [v.name]


def test_production_is_unset_until_set_and_resolves_as_a_name(tmp_path):
    models = tmp_path / "models"
    v = register(models, fake_adapter(tmp_path / "adapter"), {})
    assert read_aliases(models) == {"production": None}
    with pytest.raises(RegistryError, match="names no version yet"):
        get_version(models, "production")
    set_alias(models, "production", v.name)
    assert get_version(models, "production").name == v.name
    assert not list(models.glob(".aliases*")), "aliases.json is replaced by a rename"


def test_unknown_versions_and_aliases_are_refused_with_the_known_ones(tmp_path):
    models = tmp_path / "models"
    v = register(models, fake_adapter(tmp_path / "adapter"), {})
    with pytest.raises(RegistryError, match=v.name):
        set_alias(models, "production", "raft-20990101-000000-ffffff")
    with pytest.raises(RegistryError, match="unknown alias"):
        set_alias(models, "staging", v.name)
    assert read_aliases(models) == {"production": None}


def test_a_version_names_whose_documents_it_was_trained_on_or_is_refused(tmp_path):
    models = tmp_path / "models"
    hr = register(models, fake_adapter(tmp_path / "a"), {"dataset": {"settings": {"audience": ["public", "hr"]}}})
    assert hr.audience == ("public", "hr")
    silent = register(models, fake_adapter(tmp_path / "b"), {"dataset": {"settings": {}}})
    with pytest.raises(RegistryError, match=r"does not say whose documents it was trained on.*train it again"):
        silent.audience  # never taken for public


def test_an_atomic_write_killed_half_way_leaves_no_file_a_reader_of_the_suffix_takes(tmp_path):
    from contracts.atomic import atomic_file

    target = tmp_path / "decision.json"
    with atomic_file(target) as tmp:
        tmp.write_text('{"half')
        assert tmp.name.startswith(".") and not tmp.name.endswith(".json"), tmp.name  # as a kill here would leave it
        assert list(tmp_path.glob("*.json")) == []

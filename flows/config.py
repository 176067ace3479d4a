"""The one configuration of raft-pipeline: `raft.yaml` read into a typed model.

Precedence, lowest to highest: the model's defaults (the embedded setup), the YAML file,
environment variables, CLI overrides. Every leaf field has an environment variable named
`RAFT_` + its dotted path in upper case with dots as underscores: `qdrant.url` is
`RAFT_QDRANT_URL`, `work_dir` is `RAFT_WORK_DIR`. List values are comma-separated there.
Unknown keys, in the file, the environment or the overrides, are errors that name the key.

Relative paths in the file are relative to the file's folder (so a config works from any
current directory); relative paths from the environment or the CLI are relative to the
current directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from contracts.settings import RaftConfig

ENV_PREFIX = "RAFT_"
CONFIG_ENV = "RAFT_CONFIG"  # names the config file; not a field
DEFAULT_FILE = "raft.yaml"


class ConfigError(ValueError):
    """A config file, variable or override that cannot be used; the message says which."""


def load_config(
    path: Path | str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: typing.Mapping[str, str] | None = None,
) -> RaftConfig:
    """Read the config: defaults, then `path` (or $RAFT_CONFIG, or ./raft.yaml if present),
    then RAFT_* environment variables, then `overrides` ({"qdrant.url": "http://…"})."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    file = config_file(path, environ)
    if file is not None:
        data = _read_file(file)
    origin: dict[str, str] = {}  # dotted key -> where its value came from, when not the file
    for key, raw in _env_overrides(environ).items():
        _set_dotted(data, key, _coerce(key, raw))
        origin[key] = f"from {env_name(key)}"
    for key, value in (overrides or {}).items():
        _leaf_annotation(key)  # unknown key -> ConfigError
        _set_dotted(data, key, _coerce(key, value) if isinstance(value, str) else value)
        origin[key] = "from --set"
    try:
        return RaftConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, file, origin)) from None


_VALIDATED: dict[str, RaftConfig] = {}


def load_config_once(path: Path | str | None = None, overrides: dict[str, Any] | None = None) -> RaftConfig:
    """`load_config` validated once per process for the same file content, overrides and RAFT_*
    variables: the flows of one `raft run` share one config object."""
    file = config_file(path, os.environ)
    content = file.read_bytes() if file is not None and file.is_file() else b""
    env = sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIX))
    key = json.dumps([str(file and file.resolve()), hashlib.sha256(content).hexdigest(), overrides or {}, env], sort_keys=True, default=str)
    if key not in _VALIDATED:
        _VALIDATED[key] = load_config(path, overrides)
    return _VALIDATED[key]


def config_file(path: Path | str | None, environ: typing.Mapping[str, str]) -> Path | None:
    """The config file to read: `path`, else $RAFT_CONFIG, else ./raft.yaml when present."""
    if path:
        return Path(path)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    return Path(DEFAULT_FILE) if Path(DEFAULT_FILE).is_file() else None


def leaf_keys() -> list[str]:
    """Every dotted field name of the config, e.g. `qdrant.url`."""
    return list(_leaves(RaftConfig))


def env_name(key: str) -> str:
    """The environment variable that overrides a dotted field name."""
    return ENV_PREFIX + key.replace(".", "_").upper()


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML lets a repeated key win silently: a second `corpus:` section would replace the first
    whole, its `default_access` too, and a repeated `anonymous:` would flip access with no word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` brings keys that the mapping's own may override
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):
                continue  # the base class refuses it with its own message
            if key in first_line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (first on line {first_line[key]}): keep one", key_node.start_mark
                )
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _read_file(file: Path) -> dict[str, Any]:
    try:
        loader = _UniqueKeyLoader(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {file} does not exist") from None
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1
        raise ConfigError(f"config file {file} is not UTF-8 (line {line}, byte {e.start}): re-save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"config file {file} cannot be read ({e.strerror or e}): name a readable YAML file") from None
    loader.name = str(file)  # YAML's messages then say where, not "<unicode string>"
    try:
        data = loader.get_single_data() or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {file} is not valid YAML: {e}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(f"config file {file} must hold a mapping of sections, not {type(data).__name__}")
    base = file.resolve().parent
    for key in _leaves(RaftConfig):
        value = _get_dotted(data, key)
        if isinstance(value, str) and _is_path(_leaf_annotation(key)) and not Path(value).expanduser().is_absolute():
            _set_dotted(data, key, str(base / value))
    return data


def _env_overrides(environ: typing.Mapping[str, str]) -> dict[str, str]:
    by_env = {env_name(key): key for key in _leaves(RaftConfig)}
    found = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        if name not in by_env:
            raise ConfigError(f"unknown environment variable {name}: known ones are {', '.join(sorted(by_env))}")
        found[by_env[name]] = raw
    return found


def _leaves(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    out = {}
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.update(_leaves(ann, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = ann
    return out


def _leaf_annotation(key: str) -> Any:
    leaves = _leaves(RaftConfig)
    if key not in leaves:
        raise ConfigError(f"unknown config key {key!r}: known keys are {', '.join(leaves)}")
    return leaves[key]


def _is_path(annotation: Any) -> bool:
    return annotation is Path or Path in typing.get_args(annotation)


def _coerce(key: str, raw: str) -> Any:
    """Turn an environment/CLI string into what the field takes; pydantic does the rest."""
    annotation = _leaf_annotation(key)
    if type(None) in typing.get_args(annotation) and raw.strip().lower() in ("", "null", "none"):
        return None
    if typing.get_origin(annotation) is list:
        return [part.strip() for part in raw.split(",") if part.strip()]
    if typing.get_origin(annotation) is dict:
        try:
            return json.loads(raw)
        except ValueError as e:
            raise ConfigError(f"{key} takes a JSON object, e.g. '{{\"key\": [\"group\"]}}' ({e})") from None
    return raw


def _get_dotted(data: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        data = data.setdefault(part, {})
        if not isinstance(data, dict):
            raise ConfigError(f"config section {part!r} must be a mapping")
    data[last] = value


# Fields whose values (and, for API keys, whose keys) are secrets: an error names the field, never the value.
SECRET_KEYS = ("qdrant.api_key", "teacher.api_key", "serving.api_keys")


def _describe(error: ValidationError, file: Path | None, origin: dict[str, str]) -> str:
    lines = []
    for err in error.errors():
        key = ".".join(str(p) for p in err["loc"])
        secret = next((s for s in SECRET_KEYS if key == s or key.startswith(s + ".")), None)
        source = next((origin[k] for k in sorted(origin, key=len, reverse=True) if key == k or key.startswith(k + ".")), None)
        where = f" {source}" if source else (f" in {file}" if file else "")
        value = err.get("input")
        if secret:
            key, got = secret, f"a {type(value).__name__}, not shown: it is secret"
        elif isinstance(value, dict):
            got = f"a section with {', '.join(map(str, value)) or 'no keys'}"
        else:
            got = repr(value)
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown config key {key!r}{where}: remove it or check its spelling")
        else:
            lines.append(f"config key {key!r}{where}: {err['msg']} (got {got})")
    return "; ".join(lines)

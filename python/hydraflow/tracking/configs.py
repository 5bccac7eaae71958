"""Configs between Hydra (DictConfig), the user's dataclass and MLflow."""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf


def as_omegaconf(config: Any) -> DictConfig:
    if isinstance(config, DictConfig):
        return config
    conf = (
        OmegaConf.structured(config)
        if dataclasses.is_dataclass(config)
        else OmegaConf.create(config)
    )
    assert isinstance(conf, DictConfig), f"a config must be a mapping, not {type(config)}"
    return conf


def to_yaml_and_container(config: Any) -> tuple[str, dict[str, Any]]:
    """The resolved config as sorted YAML (for the digest) and a plain dict (for params)."""
    conf = as_omegaconf(config)
    container = OmegaConf.to_container(conf, resolve=True)
    assert isinstance(container, dict)
    return OmegaConf.to_yaml(conf, resolve=True, sort_keys=True), {
        str(k): v for k, v in container.items()
    }


def typed(cfg: DictConfig, node: Any) -> Any:
    """The config as the app expects it: an instance of the dataclass it was
    declared with, or the DictConfig itself."""
    if dataclasses.is_dataclass(node):
        return OmegaConf.to_object(cfg)
    return cfg


def save_yaml(config: Any, path: Any) -> None:
    OmegaConf.save(as_omegaconf(config), path)

"""The oracle: a plain `@hydra.main` app. With a schema, the schema is
registered the way Hydra documents: as the primary config when there is no
YAML one (CASE_REGISTER=primary), else as `base_config`, which the test puts
first in the YAML defaults list (CASE_REGISTER=base_config)."""

from __future__ import annotations

import os

import hydra
from case import CONFIG_NAME, CONFIG_PATH, SCHEMA, dump
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

REGISTER = os.environ.get("CASE_REGISTER", "")
if REGISTER:
    name = CONFIG_NAME if REGISTER == "primary" else REGISTER
    ConfigStore.instance().store(name=name, node=SCHEMA)


@hydra.main(config_path=CONFIG_PATH, config_name=CONFIG_NAME, version_base=None)
def app(cfg: DictConfig) -> None:
    dump(cfg)


if __name__ == "__main__":
    app()

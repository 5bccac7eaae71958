"""What a composition case asks of both apps, read from the environment.

CASE_SCHEMA names a dataclass in schemas.py (empty: no schema),
CASE_CONFIG_PATH is `config_path` (empty: None), CASE_CONFIG_NAME is
`config_name`, and CASE_DUMP the file each job appends its record to.
"""

from __future__ import annotations

import json
import os
from typing import Any

import schemas
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

SCHEMA: Any = getattr(schemas, os.environ["CASE_SCHEMA"]) if os.environ.get("CASE_SCHEMA") else None
CONFIG_PATH = os.environ.get("CASE_CONFIG_PATH") or None
CONFIG_NAME = os.environ.get("CASE_CONFIG_NAME") or "config"


def dump(cfg: Any, **extra: Any) -> None:
    """Appends the job's overrides, resolved config, config type and group
    choices to CASE_DUMP as one JSON line."""
    hydra = HydraConfig.get()
    conf = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    record = {
        "overrides": list(hydra.overrides.task),
        "config": OmegaConf.to_container(conf, resolve=True),
        "type": type(cfg).__name__,
        "choices": {
            str(group): str(option)
            for group, option in hydra.runtime.choices.items()
            if option is not None and not str(group).startswith("hydra/")
        },
        **extra,
    }
    with open(os.environ["CASE_DUMP"], "a") as out:
        out.write(json.dumps(record, default=str) + "\n")

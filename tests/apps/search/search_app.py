"""A tiny objective for studies: `(x - 2)^2 + y`, or two objectives.

`hydraflow` decorates it by default; `ORACLE=1` makes it a plain
`@hydra.main` app, the oracle for what a sweeper receives. `returns.Record`,
a Hydra callback, writes every job's return value as the sweeper gets it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import hydra
import hydraflow
from hydra.core.config_store import ConfigStore
from mlflow.entities import Run


@dataclass
class Config:
    x: float = 0.0
    y: int = 1
    objectives: int = 1
    # Seconds each trial sleeps: room for a test to interrupt a study.
    sleep: float = 0.0


def objective(cfg: Any) -> Any:
    time.sleep(cfg.sleep)
    value = (cfg.x - 2.0) ** 2 + cfg.y
    if cfg.objectives == 2:
        return value, abs(cfg.x) / 3
    return value


@hydraflow.main(Config)
def app(run: Run, cfg: Config) -> Any:
    return objective(cfg)


ConfigStore.instance().store(name="oracle", node=Config)


@hydra.main(config_name="oracle", version_base=None)
def oracle(cfg: Any) -> Any:
    return objective(cfg)


if __name__ == "__main__":
    oracle() if os.environ.get("ORACLE") else app()

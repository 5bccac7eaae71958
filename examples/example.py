"""The tutorial's app: every Hydra job becomes an MLflow run."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import hydraflow
import mlflow
from mlflow.entities import Run

log = logging.getLogger(__name__)


@dataclass
class Config:
    width: int = 1024
    height: int = 768


@hydraflow.main(Config)
def app(run: Run, cfg: Config) -> None:
    log.info(run.info.run_id)
    log.info(cfg)
    # A toy "training": the aspect-ratio error shrinks step by step towards
    # its final value, so every run has a history worth plotting.
    target = abs(math.log(cfg.width / cfg.height))
    for step in range(5):
        mlflow.log_metric("error", target + 1 / (step + 1), step=step)
    mlflow.log_metric("area", cfg.width * cfg.height / 1e4)


if __name__ == "__main__":
    app()

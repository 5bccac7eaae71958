"""Trains one model per Hydra job; hydraflow makes each job an MLflow run."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import hydraflow
import mlflow
from mlflow.entities import Run

log = logging.getLogger(__name__)


@dataclass
class Model:
    name: str = "cnn_s"
    layers: int = 4
    width: int = 32


@dataclass
class Optimizer:
    name: str = "adam"
    lr: float = 0.001


@dataclass
class Config:
    model: Model = field(default_factory=Model)
    optimizer: Optimizer = field(default_factory=Optimizer)
    epochs: int = 10
    seed: int = 0


@hydraflow.main(Config, config_path="conf")
def app(run: Run, cfg: Config) -> None:
    log.info("%s: %s, %s, seed %d", run.info.run_id, cfg.model.name, cfg.optimizer.name, cfg.seed)
    mlflow.log_metric("weights", cfg.model.layers * cfg.model.width**2)


if __name__ == "__main__":
    app()

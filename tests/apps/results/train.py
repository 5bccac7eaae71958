"""A small training app with two config groups and nested data settings:
what `hydraflow runs`, the reprs and MLflow's UI are tested on."""

from __future__ import annotations

import hydraflow
import mlflow
from mlflow.entities import Run
from omegaconf import DictConfig


@hydraflow.main(config_path="conf", config_name="config")
def app(run: Run, cfg: DictConfig) -> None:
    # A made-up loss: lower for the larger model and for a learning rate near 0.01.
    base = 1.0 / cfg.model.width + abs(cfg.optimizer.lr - 0.01)
    for step in range(3):
        mlflow.log_metric("loss", round(base + 0.5 / (step + 1), 6), step=step)
    mlflow.log_metric("accuracy", round(1 - base, 6))


if __name__ == "__main__":
    app()

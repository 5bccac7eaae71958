"""A test app whose config has a key of every type `hydraflow.load` keeps."""

from __future__ import annotations

from dataclasses import dataclass, field

import hydraflow
import mlflow
from mlflow.entities import Run


@dataclass
class Model:
    depth: int = 2
    name: str = "cnn"


@dataclass
class Config:
    lr: float = 0.5
    seed: int = 0
    flag: bool = False
    label: str = "base"
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    model: Model = field(default_factory=Model)
    fail: bool = False


@hydraflow.main(Config)
def app(run: Run, cfg: Config) -> None:
    if cfg.fail:
        raise RuntimeError("asked to fail")
    for step in range(3):
        mlflow.log_metric("score", cfg.lr * cfg.model.depth + cfg.seed + step, step=step)
    mlflow.log_metric("ratio", float("nan") if cfg.flag else 1.0)


if __name__ == "__main__":
    app()

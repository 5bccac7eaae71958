"""A training loop that reports its loss each step and stops when told:
the loss at step s is `rate / (s + 1)`, so a higher rate is a worse run."""

from __future__ import annotations

from dataclasses import dataclass

import hydraflow
from mlflow.entities import Run


@dataclass
class Config:
    rate: float = 1.0
    steps: int = 4


@hydraflow.main(Config, stopping=hydraflow.MedianStopping("min", warmup_steps=1, min_runs=2))
def app(run: Run, cfg: Config) -> float:
    loss = cfg.rate
    for step in range(cfg.steps):
        loss = cfg.rate / (step + 1)
        if hydraflow.report("loss", loss, step):
            break
    return loss


if __name__ == "__main__":
    app()

"""An objective that one flag turns into two (a tuple), with early stopping:
what `hydraflow runs`, `load` and MLflow's UI show of the return values.
The loss is `x` at every step, so a run worse than the median of the
completed ones (`min_runs=1`) stops at step 0."""

from __future__ import annotations

from dataclasses import dataclass

import hydraflow


@dataclass
class Config:
    x: float = 1.0
    multi: bool = False


@hydraflow.main(Config, stopping=hydraflow.MedianStopping("min", min_runs=1))
def app(cfg: Config) -> float | tuple[float, float]:
    for step in range(2):
        if hydraflow.report("loss", cfg.x, step):
            break
    return (cfg.x, 1.0) if cfg.multi else cfg.x


if __name__ == "__main__":
    app()

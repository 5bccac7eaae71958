"""tests/fixtures/published/app.py, decorated with this package's
`@hydraflow.main`: the same config, so the same runs."""

from __future__ import annotations

from dataclasses import dataclass, field

import hydraflow
import mlflow
from mlflow.entities import Run


@dataclass
class Model:
    name: str = "cnn"
    depth: int = 2


@dataclass
class Config:
    width: int = 100
    height: int = 100
    lr: float = 1
    model: Model = field(default_factory=Model)
    label: str = "${model.name}_${width}"
    token: str = "${oc.env:FIXTURE_TOKEN,unset}"
    code: str = "007"
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    note: str | None = None


@hydraflow.main(Config)
def app(run: Run, cfg: Config) -> None:
    mlflow.log_metric("area", cfg.width * cfg.height)


if __name__ == "__main__":
    app()

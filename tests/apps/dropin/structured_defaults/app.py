"""A dataclass with its own defaults list picking a group's dataclass."""

from dataclasses import dataclass, field
from typing import Any

from databases import Postgres, SQLite
from hydra.core.config_store import ConfigStore
from mlflow.entities import Run
from omegaconf import MISSING, DictConfig, OmegaConf
from variant import main, record, run


@dataclass
class Config:
    defaults: list[Any] = field(default_factory=lambda: [{"database": "sqlite"}, "_self_"])
    database: Any = MISSING
    timeout: float = 2.5


store = ConfigStore.instance()
store.store(group="database", name="sqlite", node=SQLite)
store.store(group="database", name="postgres", node=Postgres)
store.store(name="config", node=Config)

decorate = main(version_base=None, config_name="config")


@decorate
def app(cfg: DictConfig) -> None:
    print(OmegaConf.to_yaml(cfg))
    record(cfg)


@decorate
def app_with_run(run: Run, cfg: DictConfig) -> None:
    print(OmegaConf.to_yaml(cfg))
    record(cfg, run)


if __name__ == "__main__":
    run(app, app_with_run)

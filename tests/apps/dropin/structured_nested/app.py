"""Nested dataclasses: a service holding a server and a database."""

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf
from variant import main, record, run


@dataclass
class Server:
    host: str = "localhost"
    port: int = 8080


@dataclass
class Database:
    name: str = "staging"
    pool: int = 5


@dataclass
class Service:
    server: Server = field(default_factory=Server)
    database: Database = field(default_factory=Database)
    replicas: int = 1


ConfigStore.instance().store(name="service", node=Service)

decorate = main(config_name="service", version_base=None)


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

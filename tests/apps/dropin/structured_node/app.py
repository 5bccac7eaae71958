"""A dataclass registered in the ConfigStore is the primary config: values
are typed, and `port=high` is refused before the app runs."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf
from variant import main, record, run


@dataclass
class Server:
    host: str = "localhost"
    port: int = 8080
    debug: bool = False


ConfigStore.instance().store(name="server", node=Server)

decorate = main(version_base=None, config_name="server")


@decorate
def app(cfg: DictConfig) -> None:
    print(type(cfg.port).__name__, OmegaConf.to_yaml(cfg))
    record(cfg)


@decorate
def app_with_run(run: Run, cfg: DictConfig) -> None:
    print(type(cfg.port).__name__, OmegaConf.to_yaml(cfg))
    record(cfg, run)


if __name__ == "__main__":
    run(app, app_with_run)

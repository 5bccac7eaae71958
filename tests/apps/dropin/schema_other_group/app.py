"""A YAML option validated by a dataclass kept in another group
(`/schema/database/postgres@_here_` in database/postgres.yaml)."""

from databases import Postgres
from hydra.core.config_store import ConfigStore
from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf
from variant import main, record, run

ConfigStore.instance().store(group="schema/database", name="postgres", node=Postgres)

decorate = main(version_base=None, config_path="conf", config_name="config")


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

"""YAML options of a group, each validated by a dataclass registered in the
same group (`defaults: [postgres_schema, _self_]` in database/postgres.yaml):
`database.port=abc` is refused."""

from databases import Postgres, SQLite
from hydra.core.config_store import ConfigStore
from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf
from variant import main, record, run

store = ConfigStore.instance()
store.store(group="database", name="postgres_schema", node=Postgres)
store.store(group="database", name="sqlite_schema", node=SQLite)

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

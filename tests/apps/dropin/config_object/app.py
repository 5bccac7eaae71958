"""The config object: attribute and item access, an interpolation, and a
mandatory value (`???`) that fails the job when read unset."""

from mlflow.entities import Run
from omegaconf import DictConfig
from variant import main, record, run

decorate = main(version_base=None, config_path=".", config_name="paths")


def fetch(cfg: DictConfig) -> None:
    print("raw data in", cfg.paths.raw, "cache in", cfg["paths"]["cache"])
    print("token:", cfg.token)


@decorate
def app(cfg: DictConfig) -> None:
    fetch(cfg)
    record(cfg)


@decorate
def app_with_run(run: Run, cfg: DictConfig) -> None:
    fetch(cfg)
    record(cfg, run)


if __name__ == "__main__":
    run(app, app_with_run)

"""Packages: one group placed twice (`storage@primary`, `storage@backup`),
an option that writes at the top (`# @package _global_`) and one that
writes deeper (`# @package server.tls`)."""

from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf
from variant import main, record, run

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

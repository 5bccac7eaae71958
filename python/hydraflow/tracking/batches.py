"""A batch's first job composed once, where Hydra composes it twice in a row.

Before a sweeper launches a batch it checks that every job of it composes
(`Sweeper.validate_batch_is_legal`, "this repeats work the launcher will
do"), throwing the configurations away; the launcher then composes each job
again as it starts it. Between the check's composition of the first job and
the launcher's, only Hydra's own set-up of the launch runs (its logging, the
sweep directory): nothing composition reads can change. So the launcher
gets that configuration instead of a new one, with the sweep's resolver
cache copied into it again, as its own composition would have it (a
`${now:...}` the set-up resolved meanwhile). Later jobs are composed anew:
the app ran before them, and may have changed what composition reads (the
environment, the ConfigStore, files). A configuration composed costs some
30 ms; a warm command of one run, about 250 ms.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omegaconf import DictConfig

Load = Callable[[Any, "DictConfig", list[str]], "DictConfig"]


class FirstJob:
    """The configuration the check composed for its batch's first job,
    until the next composition (the launcher's first, when nothing else
    came between)."""

    def __init__(self) -> None:
        self.checking = False
        self.key: tuple[Any, DictConfig, list[str]] | None = None
        self.config: DictConfig | None = None

    def validate(self, validate: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        def validate_batch_is_legal(sweeper: Any, batch: Any) -> None:
            self.key = self.config = None
            self.checking = True
            try:
                validate(sweeper, batch)
            finally:
                self.checking = False

        return validate_batch_is_legal

    def load(self, load: Load) -> Load:
        def load_sweep_config(
            loader: Any, master_config: DictConfig, sweep_overrides: list[str]
        ) -> DictConfig:
            if self.checking:
                config = load(loader, master_config, sweep_overrides)
                if self.key is None:
                    self.key, self.config = (loader, master_config, list(sweep_overrides)), config
                return config
            kept = self.take(loader, master_config, sweep_overrides)
            return kept if kept is not None else load(loader, master_config, sweep_overrides)

        return load_sweep_config

    def take(
        self, loader: Any, master_config: DictConfig, sweep_overrides: list[str]
    ) -> DictConfig | None:
        """The kept configuration if this asks for the same, else None; kept no longer."""
        key, config = self.key, self.config
        self.key = self.config = None
        if key is None or config is None:
            return None
        if key[0] is not loader or key[1] is not master_config or key[2] != sweep_overrides:
            return None
        from omegaconf import OmegaConf

        OmegaConf.copy_cache(from_config=master_config, to_config=config)
        return config


@contextlib.contextmanager
def first_job_composed_once() -> Iterator[None]:
    """Hydra's check and its launcher share the first job's composition
    while the app's Hydra runs (not nested: an inner one changes nothing)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.plugins.sweeper import Sweeper

    load = ConfigLoaderImpl.load_sweep_config
    validate = Sweeper.validate_batch_is_legal
    if getattr(load, "first_job", None) is not None:
        yield
        return
    first = FirstJob()
    patched_load = first.load(load)
    patched_load.first_job = first  # type: ignore[attr-defined]
    ConfigLoaderImpl.load_sweep_config = patched_load  # type: ignore[method-assign,assignment]
    Sweeper.validate_batch_is_legal = first.validate(validate)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        ConfigLoaderImpl.load_sweep_config = load  # type: ignore[method-assign]
        Sweeper.validate_batch_is_legal = validate  # type: ignore[method-assign]

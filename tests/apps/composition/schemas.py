"""The dataclass schemas the composition cases use."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


class Precision(enum.Enum):
    fp16 = 16
    fp32 = 32


@dataclass
class Model:
    name: str = "cnn_s"
    layers: int = 4
    width: int = 32
    dropout: float = 0.1


@dataclass
class Optimizer:
    name: str = "adam"
    lr: float = 0.001
    momentum: float = 0.9


@dataclass
class Config:
    """Fits conf/config*.yaml; `notes` and `precision` are not in the YAML."""

    model: Model = field(default_factory=Model)
    optimizer: Optimizer = field(default_factory=Optimizer)
    epochs: int = 10
    seed: int = 0
    name: str = "${model.name}-${optimizer.name}"
    notes: str = "none"
    precision: Precision = Precision.fp32


@dataclass
class WithDefaults:
    """A schema that holds the defaults list; the groups live in conf/."""

    defaults: list[Any] = field(
        default_factory=lambda: [{"model": "cnn_s"}, {"optimizer": "adam"}, "_self_"]
    )
    model: Model = MISSING
    optimizer: Optimizer = MISSING
    epochs: int = 5


@dataclass
class NeedsDataDir:
    """A schema with a mandatory value the command line must give."""

    data_dir: str = MISSING
    epochs: int = 10


@dataclass
class NeedsApiKey:
    """A schema with a value read from the environment (the test sets it or not)."""

    api_key: str = "${oc.env:COMPOSITION_API_KEY}"
    epochs: int = 10

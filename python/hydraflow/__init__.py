"""hydraflow: run Hydra sweeps from a jobs file and track every run in MLflow."""

from hydraflow._core import SweepSyntaxError, collect, count, expand, iter_expand

__version__ = "0.1.0"

__all__ = ["SweepSyntaxError", "__version__", "collect", "count", "expand", "iter_expand"]

"""A run's artifact directory on the local file system."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    from mlflow.entities import Run


def get_artifact_dir(run: Run) -> Path:
    """The local directory holding `run`'s artifacts (created if missing).

    Raises ValueError when the artifacts live elsewhere (s3://, http://, ...).
    """
    uri = run.info.artifact_uri or ""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    elif parsed.scheme == "" or len(parsed.scheme) == 1:  # a plain or Windows path
        path = Path(uri)
    else:
        raise ValueError(f"run {run.info.run_id} keeps its artifacts at {uri}, not locally")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def chdir_artifact(run: Run) -> Iterator[Path]:
    """Runs the block inside the run's artifact directory, then returns."""
    previous = Path.cwd()
    path = get_artifact_dir(run)
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(previous)

"""A run's artifacts: its directory on the local file system, and writing to it."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from hydraflow.store import retry_busy

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from hydraflow.analysis.runs import Run as AnalysisRun


def get_artifact_dir(run: Run | AnalysisRun[Any, Any]) -> Path:
    """The local directory holding `run`'s artifacts (created if missing):
    an MLflow run's, or one `hydraflow.load` gave (its `artifact_dir`).

    Raises ValueError when the artifacts live elsewhere (s3://, http://, ...).
    """
    if not hasattr(run.info, "artifact_uri"):  # a run `hydraflow.load` gave
        path = run.artifact_dir
    else:
        found = local_artifact_dir(run)  # type: ignore[arg-type]
        if found is None:
            where = run.info.artifact_uri
            raise ValueError(f"run {run.info.run_id} keeps its artifacts at {where}, not locally")
        path = found
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_artifact_dir(run: Run) -> Path | None:
    """The run's artifact directory when it is on this file system, else None."""
    return local_path(run.info.artifact_uri or "")


def local_path(uri: str) -> Path | None:
    """An artifact URI or location as a path of this file system, else None."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a plain or Windows path
        return Path(uri)
    return None


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


class LocalArtifacts:
    """Writes a run's artifacts as MLflow's local repository does (each file
    copied to a temporary name beside its place, then renamed into it, so a
    crash never leaves half a file), without its per-call setup."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def log_dir(self, local_dir: Path, artifact_path: str) -> None:
        for source in sorted(local_dir.rglob("*")):
            if source.is_file():
                self.copy(source, self.root / artifact_path / source.relative_to(local_dir))

    def log_file(self, local_file: Path) -> None:
        self.copy(local_file, self.root / local_file.name)

    def read(self, name: str) -> str:
        """The artifact's text, "" when there is none."""
        try:
            return (self.root / name).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    @staticmethod
    def copy(source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        shutil.copy2(source, partial)
        os.replace(partial, target)


class ClientArtifacts:
    """A run's artifacts through MLflow's client (a tracking server, cloud storage)."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def log_dir(self, local_dir: Path, artifact_path: str) -> None:
        retry_busy(lambda: self.client.log_artifacts(self.run_id, str(local_dir), artifact_path))

    def log_file(self, local_file: Path) -> None:
        retry_busy(lambda: self.client.log_artifact(self.run_id, str(local_file)))

    def read(self, name: str) -> str:
        names = {item.path for item in retry_busy(lambda: self.client.list_artifacts(self.run_id))}
        if name not in names:
            return ""
        with tempfile.TemporaryDirectory() as folder, no_progress_bar():
            local = self.client.download_artifacts(self.run_id, name, folder)
            return Path(local).read_text(encoding="utf-8", errors="replace")


PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@contextlib.contextmanager
def no_progress_bar() -> Iterator[None]:
    """MLflow draws a download bar in the app's output for our own small
    read (a resumed run's log); the user's setting is back afterwards."""
    previous = os.environ.get(PROGRESS_BAR_ENV)
    os.environ[PROGRESS_BAR_ENV] = "false"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[PROGRESS_BAR_ENV]
        else:
            os.environ[PROGRESS_BAR_ENV] = previous


Artifacts = LocalArtifacts | ClientArtifacts


def artifacts_of(client: MlflowClient, run: Run) -> Artifacts:
    """Direct file copies when the run's artifacts are on this file system."""
    root = local_artifact_dir(run)
    return LocalArtifacts(root) if root is not None else ClientArtifacts(client, run.info.run_id)

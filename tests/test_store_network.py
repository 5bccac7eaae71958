"""The warning for a SQLite store on a network file system, read from a
mount table in /proc/mounts' format (and from the machine's own)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydraflow.store import MOUNTS, mount_type, network_store_warning

TABLE = """\
/dev/vda1 / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /tmp tmpfs rw,nosuid,nodev 0 0
fileserver:/export/home /home nfs4 rw,relatime,vers=4.2 0 0
10.0.0.5@tcp:/scratch /scratch lustre rw,flock 0 0
gpfs1 /gpfs/projects gpfs rw,relatime 0 0
//nas/share /mnt/my\\040share cifs rw,relatime 0 0
/dev/vdb1 /home/alice/local ext4 rw,relatime 0 0
"""


@pytest.fixture
def mounts(tmp_path: Path) -> Path:
    path = tmp_path / "mounts"
    path.write_text(TABLE)
    return path


@pytest.mark.parametrize(
    ("store", "file_system"),
    [
        ("/home/alice/project/mlflow.db", "nfs4"),
        ("/scratch/runs/mlflow.db", "lustre"),
        ("/gpfs/projects/x/mlflow.db", "gpfs"),
        ("/mnt/my share/mlflow.db", "cifs"),
    ],
)
def test_a_sqlite_store_on_a_network_file_system_is_named(
    mounts: Path, store: str, file_system: str
) -> None:
    warning = network_store_warning(f"sqlite:///{store}", mounts)
    assert warning is not None
    assert f"is on {file_system}, a network file system" in warning
    assert "Running on a cluster" in warning
    assert "\n" not in warning


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite:////home/alice/local/mlflow.db",  # a local disk mounted inside the NFS home
        "sqlite:////tmp/mlflow.db",
        "sqlite:////var/mlflow.db",
        "http://127.0.0.1:5000",  # a tracking server: nothing to warn about
        "postgresql+psycopg2://db/mlflow",
        "file:///home/alice/mlruns",
    ],
)
def test_no_warning_elsewhere(mounts: Path, uri: str) -> None:
    assert network_store_warning(uri, mounts) is None


def test_a_mount_table_that_cannot_be_read_gives_no_warning(tmp_path: Path) -> None:
    assert network_store_warning("sqlite:////home/x/mlflow.db", tmp_path / "absent") is None


def test_the_deepest_and_latest_mount_wins() -> None:
    table = "a / ext4 rw 0 0\nb /data nfs rw 0 0\nc /data xfs rw 0 0\nd /data/x nfs4 rw 0 0\n"
    assert mount_type(Path("/data/file"), table) == "xfs"
    assert mount_type(Path("/data/x/y"), table) == "nfs4"
    assert mount_type(Path("/datax"), table) == "ext4"


def test_this_machines_mount_table(tmp_path: Path) -> None:
    """The real /proc/mounts agrees with `mount_type` on where tmp_path lives."""
    if not MOUNTS.exists():
        pytest.skip("no /proc/mounts on this system")
    file_system = mount_type(tmp_path.resolve(), MOUNTS.read_text())
    assert file_system is not None
    warning = network_store_warning(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert (warning is not None) == (file_system in {"nfs", "nfs4", "lustre", "gpfs", "cifs"})


def test_the_readme_has_the_section_the_warning_points_to() -> None:
    readme = Path(__file__).parent.parent / "README.md"
    assert "\n## Running on a cluster\n" in readme.read_text()

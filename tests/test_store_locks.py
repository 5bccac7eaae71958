"""hydraflow's own reads of a store's file never drop the SQLite locks of
the process they run in. Closing any descriptor of a file drops every POSIX
lock the process holds on it; a connection left without its lock lets
another process's last close delete the log and its index from under it
("disk I/O error" in the next statement, seen when the warm interpreter
closed its store opened ahead while a command checked its store). The
oracle is the kernel: another process asks for the write lock SQLite's
shared lock keeps away."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
from hydraflow import store

# SQLite's shared lock: a read lock on 510 bytes past its pending byte (1 GiB + 2).
SHARED_FIRST, SHARED_SIZE = 1073741826, 510
PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, int(sys.argv[3]), int(sys.argv[2]), os.SEEK_SET)
except OSError:
    print("held")
else:
    print("free")
"""


def shared_lock_seen_from_another_process(path: Path) -> bool:
    argv = [sys.executable, "-c", PROBE, str(path), str(SHARED_FIRST), str(SHARED_SIZE)]
    probed = subprocess.run(argv, capture_output=True, text=True, check=True)
    return probed.stdout.strip() == "held"


def test_reading_whether_a_store_is_ready_keeps_this_processs_locks(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store.open_new_experiment(uri, "locks", tmp_path)  # made, then switched to WAL
    path = tmp_path / "mlflow.db"
    with sqlite3.connect(path) as connection:
        connection.execute("SELECT count(*) FROM experiments").fetchall()
        assert shared_lock_seen_from_another_process(path)  # a WAL connection keeps it
        assert store.is_initialised(uri)
        assert store.is_initialised(uri)  # again: through the descriptor kept
        assert shared_lock_seen_from_another_process(path)
    mlflow.MlflowClient(uri).get_experiment_by_name("locks")


def test_one_descriptor_is_kept_per_store_file(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store.open_new_experiment(uri, "locks", tmp_path)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        assert store.is_initialised(uri)
    assert len(os.listdir("/proc/self/fd")) == before + 1

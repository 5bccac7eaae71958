"""Shared helpers: a project folder with a jobs file, and the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

HYDRAFLOW = str(Path(sys.executable).parent / "hydraflow")

# A program that records its arguments (one JSON line per call) and can sleep
# or fail: `record.py [--sleep S] [--fail-if TEXT:STATUS] ARGS...`.
RECORD = """
import json, os, sys, time
args = sys.argv[1:]
if args[:1] == ["--sleep"]:
    time.sleep(float(args[1]))
    args = args[2:]
fail = None
if args[:1] == ["--fail-if"]:
    fail, args = args[1], args[2:]
with open(os.environ.get("RECORD_FILE", "calls.jsonl"), "a") as out:
    out.write(json.dumps({"args": args, "pid": os.getpid(), "start": time.time()}) + "\\n")
print("ran", " ".join(args))
print("to stderr", file=sys.stderr)
if fail:
    text, status = fail.rsplit(":", 1)
    if any(text in a for a in args):
        sys.exit(int(status))
"""


def run_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed `hydraflow` command, as a user runs it (not on a terminal)."""
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    return subprocess.run(
        [HYDRAFLOW, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture
def project(tmp_path: Path) -> Callable[[str], Path]:
    """Writes a hydraflow.yaml (dedented) and record.py into a fresh folder."""

    def make(jobs_yaml: str) -> Path:
        (tmp_path / "hydraflow.yaml").write_text(textwrap.dedent(jobs_yaml))
        (tmp_path / "record.py").write_text(RECORD)
        return tmp_path

    return make


def recorded(folder: Path) -> list[list[str]]:
    import json

    path = folder / "calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["args"] for line in path.read_text().splitlines()]

"""Runs many pattern apps in one process, each as `python app.py ARGS` would.

`python run_patterns.py JOBS.json RESULTS.jsonl`: JOBS is a list of
{"app": path, "variant": ..., "args": [...]}; each job's app file is run as
`__main__` with its own command line, its stdout and stderr captured, Hydra's
ConfigStore reset to what it held before the first app, and warnings shown
afresh (as in a new process). One line of RESULTS per job: its exit status,
stdout, stderr, the records its app made (see variant.py) and its wall time.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import runpy
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import variant
from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins


def run_job(job: dict[str, Any], pristine: dict[str, Any]) -> dict[str, Any]:
    ConfigStore.instance().repo = copy.deepcopy(pristine)
    variant.choose(job["variant"])
    variant.RECORDS.clear()
    sys.argv = [job["app"], *job["args"]]
    stdout, stderr = io.StringIO(), io.StringIO()
    status: Any = 0
    start = time.perf_counter()
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            runpy.run_path(job["app"], run_name="__main__")
        except SystemExit as exit:
            status = exit.code
    return {
        **job,
        "status": 1 if isinstance(status, str) else (status or 0),
        "stdout": stdout.getvalue(),
        "stderr": stderr.getvalue(),
        "records": list(variant.RECORDS),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    jobs = json.loads(Path(sys.argv[1]).read_text())
    Plugins.instance()  # the plugins register their configs when first loaded
    pristine = copy.deepcopy(ConfigStore.instance().repo)
    with open(sys.argv[2], "w") as results:
        for job in jobs:
            results.write(json.dumps(run_job(job, pristine)) + "\n")
            results.flush()


if __name__ == "__main__":
    main()

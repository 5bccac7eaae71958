"""The published HydraFlow's analysis tutorial, statement by statement.

`docs/practical-tutorials/analysis.md` of the published HydraFlow (repository
daizutabi/hydraflow) analyses the runs of the tutorial's three jobs. Its code
is written out below from reading that page; `run_tutorial` runs it the way
the page's console blocks do (each `>>>` statement on its own, an expression's
value echoed) and returns what each statement printed.

As a script, it is the oracle: run by the published HydraFlow's Python in a
folder where the published `hydraflow run` made the tutorial's runs, it prints
the outputs as JSON (the note in tests/test_published_api.py says how the
expected values were measured). It imports nothing of this package, so the
published environment can run it:

    /work/published/.venv/bin/python tests/published_tutorial.py FOLDER

One adaptation, for the published 0.23.2 only: its `iter_run_dirs` dropped the
tracking-directory argument that the page still passes (`"mlruns"` would be
read as an experiment name and find no run), so the oracle drops it too.
"""

# ruff: noqa: E501 (the checks are console statements, one a line)

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import types
from pathlib import Path
from typing import Any

# The page's statements in order; a class or function definition is one.
STATEMENTS = [
    # Discovering runs
    "from hydraflow import iter_run_dirs",
    'run_dirs = list(iter_run_dirs("mlruns"))',
    "print(len(run_dirs))",
    "for run_dir in run_dirs[:4]:\n    print(run_dir)",
    'print(len(list(iter_run_dirs("mlruns", "job_sequential"))))',
    'names = ["job_sequential", "job_parallel"]',
    'print(len(list(iter_run_dirs("mlruns", names))))',
    'print(len(list(iter_run_dirs("mlruns", "job_*"))))',
    # Working with individual runs
    "from hydraflow import Run",
    'run_dirs = iter_run_dirs("mlruns")',
    "run_dir = next(run_dirs)  # run_dirs is an iterator",
    "run = Run(run_dir)",
    "print(run)",
    "print(type(run))",
    "Run.load(str(run_dir))",
    "print(run)",
    "print(run.info.run_dir)",
    "print(run.info.run_id)",
    "print(run.info.job_name)  # Hydra job name = MLflow experiment name",
    "print(run.cfg)",
    "from dataclasses import dataclass",
    "@dataclass\nclass Config:\n    width: int = 1024\n    height: int = 768\n",
    "run = Run[Config](run_dir)",
    "print(run)",
    'print(run.get("width"))',
    'print(run.get("height"))',
    # Adding custom implementations
    "from pathlib import Path",
    "class Impl:\n"
    "    root_dir: Path\n"
    "\n"
    "    def __init__(self, root_dir: Path):\n"
    "        self.root_dir = root_dir\n"
    "\n"
    "    def __repr__(self) -> str:\n"
    '        return f"Impl({self.root_dir.stem!r})"\n',
    "run = Run[Config, Impl](run_dir, Impl)",
    "print(run)",
    "print(run.impl)",
    "print(run.impl.root_dir)",
    "from dataclasses import dataclass, field",
    "@dataclass\n"
    "class Size:\n"
    "    root_dir: Path = field(repr=False)\n"
    "    cfg: Config\n"
    "\n"
    "    @property\n"
    "    def size(self) -> int:\n"
    "        return self.cfg.width * self.cfg.height\n"
    "\n"
    "    def is_large(self) -> bool:\n"
    "        return self.size > 100000\n",
    "run = Run[Config, Size].load(run_dir, Size)",
    "print(run)",
    "print(run.impl)",
    "print(run.impl.size)",
    # Working with multiple runs
    'run_dirs = iter_run_dirs("mlruns")',
    "rc = Run[Config, Size].load(run_dirs, Size)",
    "print(rc)",
    "print(rc.first())",
    "print(rc.last())",
    "print(rc.filter(width=400))",
    "print(rc.filter(height=[100, 300]))",
    "print(rc.filter(height=(100, 300)))",
    "print(rc.filter(lambda r: r.impl.is_large()))",
    "run = rc.get(width=250, height=(100, 200))",
    "print(run)",
    "print(run.impl)",
    'print(rc.to_frame("width", "height", "size"))',
    'print(rc.to_frame("width", "height", is_large=lambda r: r.impl.is_large()))',
    "def to_list(run: Run) -> list[int]:\n"
    '    return [2 * run.get("width"), 3 * run.get("height")]\n',
    'print(rc.to_frame("width", from_list=to_list))',
    "def to_dict(run: Run) -> dict[int, str]:\n"
    '    width2 = 2 * run.get("width")\n'
    "    name = f\"h{run.get('height')}\"\n"
    '    return {"width2": width2, "name": name}\n',
    'print(rc.to_frame("width", from_dict=to_dict))',
    'grouped = rc.group_by("width")',
    "for key, group in grouped.items():\n    print(key, group)",
    'grouped = rc.group_by("width", "height")',
    "for key, group in grouped.items():\n    print(key, group)",
    'grouped = rc.group_by("width")',
    "df = grouped.agg(n=lambda runs: len(runs))",
    "print(df)",
]


# After the page, in its namespace: the same calls with values that do not
# hang on the order of the runs (the published tool lists a folder's runs in
# the file system's order), and more of the API its reference pages describe.
CHECKS = [
    'sorted((Run(d).info.job_name, str(Run(d).cfg)) for d in iter_run_dirs("mlruns"))',
    'all(Run(d).info.run_id == d.name and Run(d).info.run_dir == d for d in iter_run_dirs("mlruns"))',
    'sorted((r.get("width"), r.get("size"), str(r.impl)) for r in map(lambda d: Run[Config, Size](d, Size), iter_run_dirs("mlruns")))',
    'all(Run[Config, Impl](d, Impl).impl.root_dir == d / "artifacts" for d in iter_run_dirs("mlruns"))',
    "sorted(str(r.impl) for r in rc.filter(width=400))",
    "sorted(str(r.impl) for r in rc.filter(height=[100, 300]))",
    "sorted(str(r.impl) for r in rc.filter(height=(100, 300)))",
    "sorted(str(r.impl) for r in rc.filter(lambda r: r.impl.is_large()))",
    'sorted(rc.to_frame("width", "height", "size").rows())',
    'sorted(rc.to_frame("width", "height", is_large=lambda r: r.impl.is_large()).rows())',
    'sorted(rc.to_frame("width", from_list=to_list).rows())',
    'sorted(rc.to_frame("width", from_dict=to_dict).rows(), key=str)',
    '[{k: str(v) for k, v in f.schema.items()} for f in (rc.to_frame("width", "height", "size"), rc.to_frame("width", from_list=to_list), rc.to_frame("width", from_dict=to_dict))]',
    'sorted((k, len(g)) for k, g in rc.group_by("width").items())',
    'sorted((k, len(g)) for k, g in rc.group_by("width", "height").items())',
    'sorted(rc.group_by("width").agg(n=lambda runs: len(runs)).rows())',
    'sorted((w, sorted(h)) for w, h in rc.group_by("width").agg("height").rows())',
    'sorted((r.info.job_name, r.get("width"), r.get("height")) for r in rc)',
    'rc.sort("width", "height").to_frame("width", "height").rows()',
    'rc.sort("width", "height", reverse=True).to_list("height")',
    'sorted(rc.to_list("width")), sorted(rc["height"].to_list()), rc.unique("width").tolist(), rc.n_unique("height")',
    'len(rc.exclude(width=400)), len(rc.exclude(width=400, height=100)), len(rc.filter(("width", 100))), len(rc.filter(width=100, height=[100, 200]))',
    "len(rc.filter(width=lambda w: w > 200)), len(rc.filter(height=(150, 250)))",
    "len(rc[1:4]), len(rc[[0, 2]]), repr(rc[1:4]), repr(rc.filter(width=999)), bool(rc.filter(width=999))",
    "rc.try_get(width=999), raises(lambda: rc.get(width=100), ValueError), raises(lambda: rc.first(width=999), ValueError)",
    'run.get("run_id") == run.info.run_id, run.get("job_name"), run.get("info").job_name, run.get("cfg") is run.cfg',
    'run.get("size"), run.get("missing", 7), run.get("missing", lambda r: r.get("width") * 2), raises(lambda: run.get("missing"), AttributeError)',
    "from hydraflow import RunCollection",
    'run.to_dict(), run["height"], repr(RunCollection([Run(d) for d in iter_run_dirs("mlruns", "job_submit")]))',
    'sorted(str(p.relative_to(p.parents[1])) for p in rc.filter(width=100).glob("*.log"))',
    'len(rc.filter(rc.gt("width", "height"))), len(rc.filter(rc.eq("width", "height"))), len(rc.filter(rc.le("width", "height"))), len(rc.filter(rc.startswith("width", "1"))), len(rc.filter(rc.endswith("height", "50"))), len(rc.filter(rc.match("height", r"[12]5")))',
    'run.to_frame(lambda r: __import__("polars").DataFrame({"x": [1, 2]}), "width", ("missing", 0)).rows()',
    'sorted(rc.filter(width=100).concat(lambda r: __import__("polars").DataFrame({"x": [r.get("height")]}), "width").rows())',
    'rc.update("depth", lambda r: r.get("width") // 50), sorted(rc.to_list("depth")), rc.filter(depth=8).to_list("width")',
]


def raises(call: Any, error: type[BaseException]) -> bool:
    """Whether `call()` raises `error`."""
    try:
        call()
    except error:
        return True
    return False


def run_tutorial(folder: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Each statement with what it printed (its echoed value included), run
    in `folder` in one namespace, a statement that raises giving
    `error: TYPE: MESSAGE`; then each check with the repr of its value."""
    # A module of its own, as a console's `__main__`: dataclasses look it up.
    module = types.ModuleType("__tutorial__")
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    outputs = []
    with contextlib.chdir(folder):
        for statement in STATEMENTS:
            outputs.append((statement, run_statement(statement, namespace)))
        namespace["raises"] = raises
        checks = [(check, run_statement(check, namespace).rstrip("\n")) for check in CHECKS]
    return outputs, checks


def run_statement(statement: str, namespace: dict[str, Any]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            # "single" echoes an expression's value, as the console does.
            exec(compile(statement, "<tutorial>", "single"), namespace)
        except Exception as error:
            print(f"error: {type(error).__name__}: {error}")
    return out.getvalue()


def drop_tracking_dir() -> None:
    """The published 0.23.2's `iter_run_dirs(experiment_names)` reads
    MLflow's tracking URI; the page's `iter_run_dirs("mlruns", names)`
    meant `iter_run_dirs(names)` there."""
    import hydraflow

    published = hydraflow.iter_run_dirs

    def iter_run_dirs(tracking_dir: str, experiment_names: Any = None) -> Any:
        return published(experiment_names)

    hydraflow.iter_run_dirs = iter_run_dirs  # type: ignore[attr-defined]


def main() -> None:
    folder = Path(sys.argv[1]).resolve()
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    drop_tracking_dir()
    outputs, checks = run_tutorial(folder)
    json.dump({"outputs": outputs, "checks": checks}, sys.stdout, indent=1)


if __name__ == "__main__":
    main()

"""What the published HydraFlow 0.23.2 printed for its analysis tutorial.

Measured on 2026-12-07 with the published hydraflow 0.23.2 (CPython 3.13,
polars 2.1.0, MLflow 3.17.2) on its own runs of the tutorial: in a temporary
copy of examples/ with the published tutorial's `example.py` (the same app
without our metrics), its `hydraflow run job_sequential`, `job_parallel`
(Hydra's joblib launcher on PYTHONPATH) and `job_submit` made 16 runs in
`mlflow.db` and `mlruns/`, then

    /work/published/.venv/bin/python tests/published_tutorial.py FOLDER

ran the page's statements and the checks there. Below, its output with the
folder, run ids and experiment ids put as `<folder>`, `<run_id>`, `<exp>`.
Generated from that JSON; not edited by hand.
"""

# ruff: noqa: E501

# What each statement of STATEMENTS printed.
PUBLISHED_OUTPUTS = [
    "",
    "",
    "16\n",
    (
        "<folder>/mlruns/<exp>/<run_id>\n"
        "<folder>/mlruns/<exp>/<run_id>\n"
        "<folder>/mlruns/<exp>/<run_id>\n"
        "<folder>/mlruns/<exp>/<run_id>\n"
    ),
    "6\n",
    "",
    "12\n",
    "16\n",
    "",
    "",
    "",
    "",
    "Run('<run_id>')\n",
    "<class 'hydraflow.core.run.Run'>\n",
    "Run('<run_id>')\n",
    "Run('<run_id>')\n",
    "<folder>/mlruns/<exp>/<run_id>\n",
    "<run_id>\n",
    "job_submit\n",
    "{'width': 250, 'height': 250}\n",
    "",
    "",
    "",
    "Run('<run_id>')\n",
    "250\n",
    "250\n",
    "",
    "",
    "",
    "Run[Impl]('<run_id>')\n",
    "Impl('artifacts')\n",
    "<folder>/mlruns/<exp>/<run_id>/artifacts\n",
    "",
    "",
    "",
    "Run[Size]('<run_id>')\n",
    "Size(cfg={'width': 250, 'height': 250})\n",
    "62500\n",
    "",
    "",
    "RunCollection(Run[Size], n=16)\n",
    "Run[Size]('<run_id>')\n",
    "Run[Size]('<run_id>')\n",
    "RunCollection(Run[Size], n=3)\n",
    "RunCollection(Run[Size], n=8)\n",
    "RunCollection(Run[Size], n=16)\n",
    "RunCollection(Run[Size], n=1)\n",
    "",
    "Run[Size]('<run_id>')\n",
    "Size(cfg={'width': 250, 'height': 150})\n",
    (
        "shape: (16, 3)\n"
        "┌───────┬────────┬───────┐\n"
        "│ width ┆ height ┆ size  │\n"
        "│ ---   ┆ ---    ┆ ---   │\n"
        "│ i64   ┆ i64    ┆ i64   │\n"
        "╞═══════╪════════╪═══════╡\n"
        "│ 250   ┆ 250    ┆ 62500 │\n"
        "│ 350   ┆ 150    ┆ 52500 │\n"
        "│ 350   ┆ 250    ┆ 87500 │\n"
        "│ 250   ┆ 150    ┆ 37500 │\n"
        "│ 400   ┆ 100    ┆ 40000 │\n"
        "│ …     ┆ …      ┆ …     │\n"
        "│ 300   ┆ 100    ┆ 30000 │\n"
        "│ 300   ┆ 300    ┆ 90000 │\n"
        "│ 100   ┆ 300    ┆ 30000 │\n"
        "│ 100   ┆ 200    ┆ 20000 │\n"
        "│ 300   ┆ 200    ┆ 60000 │\n"
        "└───────┴────────┴───────┘\n"
    ),
    (
        "shape: (16, 3)\n"
        "┌───────┬────────┬──────────┐\n"
        "│ width ┆ height ┆ is_large │\n"
        "│ ---   ┆ ---    ┆ ---      │\n"
        "│ i64   ┆ i64    ┆ bool     │\n"
        "╞═══════╪════════╪══════════╡\n"
        "│ 250   ┆ 250    ┆ false    │\n"
        "│ 350   ┆ 150    ┆ false    │\n"
        "│ 350   ┆ 250    ┆ false    │\n"
        "│ 250   ┆ 150    ┆ false    │\n"
        "│ 400   ┆ 100    ┆ false    │\n"
        "│ …     ┆ …      ┆ …        │\n"
        "│ 300   ┆ 100    ┆ false    │\n"
        "│ 300   ┆ 300    ┆ false    │\n"
        "│ 100   ┆ 300    ┆ false    │\n"
        "│ 100   ┆ 200    ┆ false    │\n"
        "│ 300   ┆ 200    ┆ false    │\n"
        "└───────┴────────┴──────────┘\n"
    ),
    "",
    (
        "shape: (16, 2)\n"
        "┌───────┬────────────┐\n"
        "│ width ┆ from_list  │\n"
        "│ ---   ┆ ---        │\n"
        "│ i64   ┆ list[i64]  │\n"
        "╞═══════╪════════════╡\n"
        "│ 250   ┆ [500, 750] │\n"
        "│ 350   ┆ [700, 450] │\n"
        "│ 350   ┆ [700, 750] │\n"
        "│ 250   ┆ [500, 450] │\n"
        "│ 400   ┆ [800, 300] │\n"
        "│ …     ┆ …          │\n"
        "│ 300   ┆ [600, 300] │\n"
        "│ 300   ┆ [600, 900] │\n"
        "│ 100   ┆ [200, 900] │\n"
        "│ 100   ┆ [200, 600] │\n"
        "│ 300   ┆ [600, 600] │\n"
        "└───────┴────────────┘\n"
    ),
    "",
    (
        "shape: (16, 2)\n"
        "┌───────┬──────────────┐\n"
        "│ width ┆ from_dict    │\n"
        "│ ---   ┆ ---          │\n"
        "│ i64   ┆ struct[2]    │\n"
        "╞═══════╪══════════════╡\n"
        '│ 250   ┆ {500,"h250"} │\n'
        '│ 350   ┆ {700,"h150"} │\n'
        '│ 350   ┆ {700,"h250"} │\n'
        '│ 250   ┆ {500,"h150"} │\n'
        '│ 400   ┆ {800,"h100"} │\n'
        "│ …     ┆ …            │\n"
        '│ 300   ┆ {600,"h100"} │\n'
        '│ 300   ┆ {600,"h300"} │\n'
        '│ 100   ┆ {200,"h300"} │\n'
        '│ 100   ┆ {200,"h200"} │\n'
        '│ 300   ┆ {600,"h200"} │\n'
        "└───────┴──────────────┘\n"
    ),
    "",
    (
        "250 RunCollection(Run[Size], n=2)\n"
        "350 RunCollection(Run[Size], n=2)\n"
        "400 RunCollection(Run[Size], n=3)\n"
        "200 RunCollection(Run[Size], n=3)\n"
        "100 RunCollection(Run[Size], n=3)\n"
        "300 RunCollection(Run[Size], n=3)\n"
    ),
    "",
    (
        "(250, 250) RunCollection(Run[Size], n=1)\n"
        "(350, 150) RunCollection(Run[Size], n=1)\n"
        "(350, 250) RunCollection(Run[Size], n=1)\n"
        "(250, 150) RunCollection(Run[Size], n=1)\n"
        "(400, 100) RunCollection(Run[Size], n=1)\n"
        "(400, 200) RunCollection(Run[Size], n=1)\n"
        "(200, 200) RunCollection(Run[Size], n=1)\n"
        "(200, 300) RunCollection(Run[Size], n=1)\n"
        "(400, 300) RunCollection(Run[Size], n=1)\n"
        "(200, 100) RunCollection(Run[Size], n=1)\n"
        "(100, 100) RunCollection(Run[Size], n=1)\n"
        "(300, 100) RunCollection(Run[Size], n=1)\n"
        "(300, 300) RunCollection(Run[Size], n=1)\n"
        "(100, 300) RunCollection(Run[Size], n=1)\n"
        "(100, 200) RunCollection(Run[Size], n=1)\n"
        "(300, 200) RunCollection(Run[Size], n=1)\n"
    ),
    "",
    "",
    (
        "shape: (6, 2)\n"
        "┌───────┬─────┐\n"
        "│ width ┆ n   │\n"
        "│ ---   ┆ --- │\n"
        "│ i64   ┆ i64 │\n"
        "╞═══════╪═════╡\n"
        "│ 250   ┆ 2   │\n"
        "│ 350   ┆ 2   │\n"
        "│ 400   ┆ 3   │\n"
        "│ 200   ┆ 3   │\n"
        "│ 100   ┆ 3   │\n"
        "│ 300   ┆ 3   │\n"
        "└───────┴─────┘\n"
    ),
]
# The repr of each of CHECKS.
PUBLISHED_CHECKS = [
    "[('job_parallel', \"{'width': 200, 'height': 100}\"), ('job_parallel', \"{'width': 200, 'height': 200}\"), ('job_parallel', \"{'width': 200, 'height': 300}\"), ('job_parallel', \"{'width': 400, 'height': 100}\"), ('job_parallel', \"{'width': 400, 'height': 200}\"), ('job_parallel', \"{'width': 400, 'height': 300}\"), ('job_sequential', \"{'width': 100, 'height': 100}\"), ('job_sequential', \"{'width': 100, 'height': 200}\"), ('job_sequential', \"{'width': 100, 'height': 300}\"), ('job_sequential', \"{'width': 300, 'height': 100}\"), ('job_sequential', \"{'width': 300, 'height': 200}\"), ('job_sequential', \"{'width': 300, 'height': 300}\"), ('job_submit', \"{'width': 250, 'height': 150}\"), ('job_submit', \"{'width': 250, 'height': 250}\"), ('job_submit', \"{'width': 350, 'height': 150}\"), ('job_submit', \"{'width': 350, 'height': 250}\")]",
    "True",
    "[(100, 10000, \"Size(cfg={'width': 100, 'height': 100})\"), (100, 20000, \"Size(cfg={'width': 100, 'height': 200})\"), (100, 30000, \"Size(cfg={'width': 100, 'height': 300})\"), (200, 20000, \"Size(cfg={'width': 200, 'height': 100})\"), (200, 40000, \"Size(cfg={'width': 200, 'height': 200})\"), (200, 60000, \"Size(cfg={'width': 200, 'height': 300})\"), (250, 37500, \"Size(cfg={'width': 250, 'height': 150})\"), (250, 62500, \"Size(cfg={'width': 250, 'height': 250})\"), (300, 30000, \"Size(cfg={'width': 300, 'height': 100})\"), (300, 60000, \"Size(cfg={'width': 300, 'height': 200})\"), (300, 90000, \"Size(cfg={'width': 300, 'height': 300})\"), (350, 52500, \"Size(cfg={'width': 350, 'height': 150})\"), (350, 87500, \"Size(cfg={'width': 350, 'height': 250})\"), (400, 40000, \"Size(cfg={'width': 400, 'height': 100})\"), (400, 80000, \"Size(cfg={'width': 400, 'height': 200})\"), (400, 120000, \"Size(cfg={'width': 400, 'height': 300})\")]",
    "True",
    "[\"Size(cfg={'width': 400, 'height': 100})\", \"Size(cfg={'width': 400, 'height': 200})\", \"Size(cfg={'width': 400, 'height': 300})\"]",
    "[\"Size(cfg={'width': 100, 'height': 100})\", \"Size(cfg={'width': 100, 'height': 300})\", \"Size(cfg={'width': 200, 'height': 100})\", \"Size(cfg={'width': 200, 'height': 300})\", \"Size(cfg={'width': 300, 'height': 100})\", \"Size(cfg={'width': 300, 'height': 300})\", \"Size(cfg={'width': 400, 'height': 100})\", \"Size(cfg={'width': 400, 'height': 300})\"]",
    "[\"Size(cfg={'width': 100, 'height': 100})\", \"Size(cfg={'width': 100, 'height': 200})\", \"Size(cfg={'width': 100, 'height': 300})\", \"Size(cfg={'width': 200, 'height': 100})\", \"Size(cfg={'width': 200, 'height': 200})\", \"Size(cfg={'width': 200, 'height': 300})\", \"Size(cfg={'width': 250, 'height': 150})\", \"Size(cfg={'width': 250, 'height': 250})\", \"Size(cfg={'width': 300, 'height': 100})\", \"Size(cfg={'width': 300, 'height': 200})\", \"Size(cfg={'width': 300, 'height': 300})\", \"Size(cfg={'width': 350, 'height': 150})\", \"Size(cfg={'width': 350, 'height': 250})\", \"Size(cfg={'width': 400, 'height': 100})\", \"Size(cfg={'width': 400, 'height': 200})\", \"Size(cfg={'width': 400, 'height': 300})\"]",
    "[\"Size(cfg={'width': 400, 'height': 300})\"]",
    "[(100, 100, 10000), (100, 200, 20000), (100, 300, 30000), (200, 100, 20000), (200, 200, 40000), (200, 300, 60000), (250, 150, 37500), (250, 250, 62500), (300, 100, 30000), (300, 200, 60000), (300, 300, 90000), (350, 150, 52500), (350, 250, 87500), (400, 100, 40000), (400, 200, 80000), (400, 300, 120000)]",
    "[(100, 100, False), (100, 200, False), (100, 300, False), (200, 100, False), (200, 200, False), (200, 300, False), (250, 150, False), (250, 250, False), (300, 100, False), (300, 200, False), (300, 300, False), (350, 150, False), (350, 250, False), (400, 100, False), (400, 200, False), (400, 300, True)]",
    "[(100, [200, 300]), (100, [200, 600]), (100, [200, 900]), (200, [400, 300]), (200, [400, 600]), (200, [400, 900]), (250, [500, 450]), (250, [500, 750]), (300, [600, 300]), (300, [600, 600]), (300, [600, 900]), (350, [700, 450]), (350, [700, 750]), (400, [800, 300]), (400, [800, 600]), (400, [800, 900])]",
    "[(100, {'width2': 200, 'name': 'h100'}), (100, {'width2': 200, 'name': 'h200'}), (100, {'width2': 200, 'name': 'h300'}), (200, {'width2': 400, 'name': 'h100'}), (200, {'width2': 400, 'name': 'h200'}), (200, {'width2': 400, 'name': 'h300'}), (250, {'width2': 500, 'name': 'h150'}), (250, {'width2': 500, 'name': 'h250'}), (300, {'width2': 600, 'name': 'h100'}), (300, {'width2': 600, 'name': 'h200'}), (300, {'width2': 600, 'name': 'h300'}), (350, {'width2': 700, 'name': 'h150'}), (350, {'width2': 700, 'name': 'h250'}), (400, {'width2': 800, 'name': 'h100'}), (400, {'width2': 800, 'name': 'h200'}), (400, {'width2': 800, 'name': 'h300'})]",
    "[{'width': 'Int64', 'height': 'Int64', 'size': 'Int64'}, {'width': 'Int64', 'from_list': 'List(Int64)'}, {'width': 'Int64', 'from_dict': \"Struct({'width2': Int64, 'name': String})\"}]",
    "[(100, 3), (200, 3), (250, 2), (300, 3), (350, 2), (400, 3)]",
    "[((100, 100), 1), ((100, 200), 1), ((100, 300), 1), ((200, 100), 1), ((200, 200), 1), ((200, 300), 1), ((250, 150), 1), ((250, 250), 1), ((300, 100), 1), ((300, 200), 1), ((300, 300), 1), ((350, 150), 1), ((350, 250), 1), ((400, 100), 1), ((400, 200), 1), ((400, 300), 1)]",
    "[(100, 3), (200, 3), (250, 2), (300, 3), (350, 2), (400, 3)]",
    "[(100, [100, 200, 300]), (200, [100, 200, 300]), (250, [150, 250]), (300, [100, 200, 300]), (350, [150, 250]), (400, [100, 200, 300])]",
    "[('job_parallel', 200, 100), ('job_parallel', 200, 200), ('job_parallel', 200, 300), ('job_parallel', 400, 100), ('job_parallel', 400, 200), ('job_parallel', 400, 300), ('job_sequential', 100, 100), ('job_sequential', 100, 200), ('job_sequential', 100, 300), ('job_sequential', 300, 100), ('job_sequential', 300, 200), ('job_sequential', 300, 300), ('job_submit', 250, 150), ('job_submit', 250, 250), ('job_submit', 350, 150), ('job_submit', 350, 250)]",
    "[(100, 100), (100, 200), (100, 300), (200, 100), (200, 200), (200, 300), (250, 150), (250, 250), (300, 100), (300, 200), (300, 300), (350, 150), (350, 250), (400, 100), (400, 200), (400, 300)]",
    "[300, 200, 100, 250, 150, 300, 200, 100, 250, 150, 300, 200, 100, 300, 200, 100]",
    "([100, 100, 100, 200, 200, 200, 250, 250, 300, 300, 300, 350, 350, 400, 400, 400], [100, 100, 100, 100, 150, 150, 200, 200, 200, 200, 250, 250, 300, 300, 300, 300], [100, 200, 250, 300, 350, 400], 5)",
    "(13, 10, 3, 2)",
    "(10, 8)",
    "(3, 2, 'RunCollection(Run[Size], n=3)', 'RunCollection(empty)', False)",
    "(None, True, True)",
    "(True, 'job_submit', 'job_submit', True)",
    "(37500, 7, 500, True)",
    "",
    "({'width': 250, 'height': 150}, 150, 'RunCollection(Run, n=4)')",
    "['artifacts/job_sequential.log', 'artifacts/job_sequential.log', 'artifacts/job_sequential.log']",
    "(9, 4, 7, 3, 4, 4)",
    "[(1, 250, 0), (2, 250, 0)]",
    "[(100, 100), (200, 100), (300, 100)]",
    "(None, [2, 2, 2, 4, 4, 4, 5, 5, 6, 6, 6, 7, 7, 8, 8, 8], [400, 400, 400])",
]

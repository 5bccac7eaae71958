"""What the published HydraFlow 0.23.2 gave for the statements of
tests/published_names.py.

Measured on 2026-12-07 with the published hydraflow 0.23.2 (CPython 3.13,
MLflow 3.17.2, polars 2.1.0): tests/fixtures/published/store.tar.gz unpacked
(its paths made the folder's); the tutorial's three jobs run by the
published `hydraflow run` in a copy of examples/ with the published
tutorial's `example.py` (Hydra's joblib launcher on PYTHONPATH), as for
tests/published_oracle.py; tests/apps/logrun/app.py run with the published
package as `width=5` and `width=-1` (MLFLOW_TRACKING_URI=sqlite:///mlflow.db,
LOGRUN_TOKEN set); then

    /work/published/.venv/bin/python tests/published_names.py STORE TUTORIAL LOGRUN

printed the JSON these lists are generated from; not edited by hand.
"""

# The value of each of RUN_API_STATEMENTS on the fixture store (measured on
# 2026-12-08 the same way, the published 0.23.2's Python evaluating only this
# list, `evaluate(RUN_API_STATEMENTS, STORE, ids=True)`).
PUBLISHED_RUN_API = [
    "'<folder>/mlruns/<exp>/<run_id>/artifacts/.hydra/config.yaml'",
    "'<folder>/mlruns/<exp>/<run_id>/artifacts/.hydra'",
    "'.yaml'",
    "'<folder>/mlruns/<exp>/<run_id>/artifacts/.hydra/config.yaml'",
    "['config.yaml', 'hydra.yaml', 'overrides.yaml']",
    "['config.yaml', 'config.yaml', 'config.yaml', 'config.yaml', 'config.yaml', "
    "'config.yaml', 'config.yaml']",
    "RunCollection(Run, n=7)",
    "RunCollection(Run, n=7)",
]

# The value of each of STORE_STATEMENTS on the fixture store.
PUBLISHED_STORE = [
    "['app']",
    "['<folder>/mlruns/1']",
    "['<folder>/mlruns/1']",
    "['<folder>/mlruns/1']",
    "['<folder>/mlruns/1']",
    "['<folder>/mlruns/1']",
    "[]",
    "[]",
    "['<folder>/mlruns/1/37cfbe7620fc4ae687ca4198d9697c15/artifacts', "
    "'<folder>/mlruns/1/779a3ebb3a584e24bd5dd34119238298/artifacts', "
    "'<folder>/mlruns/1/9ed8b8f3e5054a1bb402a61ae9f29adb/artifacts', "
    "'<folder>/mlruns/1/c05ad259e2f14f9b8213e758139b8c45/artifacts', "
    "'<folder>/mlruns/1/d0d8edb10151438e9a4e0c54cff97994/artifacts', "
    "'<folder>/mlruns/1/db6bea941ba642c181d3ba762bfd9e3b/artifacts', "
    "'<folder>/mlruns/1/dcecf0b6115a4c8e8a1a23d73165e757/artifacts']",
    "['<folder>/mlruns/1/37cfbe7620fc4ae687ca4198d9697c15/artifacts', "
    "'<folder>/mlruns/1/779a3ebb3a584e24bd5dd34119238298/artifacts', "
    "'<folder>/mlruns/1/9ed8b8f3e5054a1bb402a61ae9f29adb/artifacts', "
    "'<folder>/mlruns/1/c05ad259e2f14f9b8213e758139b8c45/artifacts', "
    "'<folder>/mlruns/1/d0d8edb10151438e9a4e0c54cff97994/artifacts', "
    "'<folder>/mlruns/1/db6bea941ba642c181d3ba762bfd9e3b/artifacts', "
    "'<folder>/mlruns/1/dcecf0b6115a4c8e8a1a23d73165e757/artifacts']",
    "['<folder>/mlruns/1/37cfbe7620fc4ae687ca4198d9697c15/artifacts', "
    "'<folder>/mlruns/1/779a3ebb3a584e24bd5dd34119238298/artifacts', "
    "'<folder>/mlruns/1/9ed8b8f3e5054a1bb402a61ae9f29adb/artifacts', "
    "'<folder>/mlruns/1/c05ad259e2f14f9b8213e758139b8c45/artifacts', "
    "'<folder>/mlruns/1/d0d8edb10151438e9a4e0c54cff97994/artifacts', "
    "'<folder>/mlruns/1/db6bea941ba642c181d3ba762bfd9e3b/artifacts', "
    "'<folder>/mlruns/1/dcecf0b6115a4c8e8a1a23d73165e757/artifacts']",
    "[]",
    "['<folder>/mlruns/1/37cfbe7620fc4ae687ca4198d9697c15/artifacts/.hydra/config.yaml', "
    "'<folder>/mlruns/1/779a3ebb3a584e24bd5dd34119238298/artifacts/.hydra/config.yaml', "
    "'<folder>/mlruns/1/9ed8b8f3e5054a1bb402a61ae9f29adb/artifacts/.hydra/config.yaml', "
    "'<folder>/mlruns/1/c05ad259e2f14f9b8213e758139b8c45/artifacts/.hydra/config.yaml', "
    "'<folder>/mlruns/1/d0d8edb10151438e9a4e0c54cff97994/artifacts/.hydra/config.yaml', "
    "'<folder>/mlruns/1/db6bea941ba642c181d3ba762bfd9e3b/artifacts/.hydra/config.yaml', "
    "'<folder>/mlruns/1/dcecf0b6115a4c8e8a1a23d73165e757/artifacts/.hydra/config.yaml']",
    "['<folder>/mlruns/1/37cfbe7620fc4ae687ca4198d9697c15/artifacts/.hydra/overrides.yaml', "
    "'<folder>/mlruns/1/779a3ebb3a584e24bd5dd34119238298/artifacts/.hydra/overrides.yaml', "
    "'<folder>/mlruns/1/9ed8b8f3e5054a1bb402a61ae9f29adb/artifacts/.hydra/overrides.yaml', "
    "'<folder>/mlruns/1/c05ad259e2f14f9b8213e758139b8c45/artifacts/.hydra/overrides.yaml', "
    "'<folder>/mlruns/1/d0d8edb10151438e9a4e0c54cff97994/artifacts/.hydra/overrides.yaml', "
    "'<folder>/mlruns/1/db6bea941ba642c181d3ba762bfd9e3b/artifacts/.hydra/overrides.yaml', "
    "'<folder>/mlruns/1/dcecf0b6115a4c8e8a1a23d73165e757/artifacts/.hydra/overrides.yaml']",
    "[False, True, True, True, True, True, True]",
    "[False, False, False, False, False, False, False]",
    "['- width=100\\n- height=100\\n', '- width=100\\n- height=200\\n', '- width=200\\n- "
    "height=100\\n', '- width=200\\n- height=200\\n', '- width=300\\n- height=100\\n', '- "
    "width=400\\n- height=100\\n', '- width=500\\n- height=100\\n']",
    "True",
    "['100', '100', '200', '200', '300', '400', '500']",
    "True",
]
# The value of each of TUTORIAL_STATEMENTS on the published tool's tutorial runs.
PUBLISHED_TUTORIAL = [
    "['job_submit', 'job_parallel', 'job_sequential']",
    "['<folder>/mlruns/<exp>', '<folder>/mlruns/<exp>', '<folder>/mlruns/<exp>']",
    "['<folder>/mlruns/<exp>', '<folder>/mlruns/<exp>']",
    "['<folder>/mlruns/<exp>', '<folder>/mlruns/<exp>']",
    "[4, 6, 6]",
    "['- width=250\\n- height=150\\n', '- width=250\\n- height=250\\n', '- width=350\\n- "
    "height=150\\n', '- width=350\\n- height=250\\n']",
    "['.hydra', '.hydra', '.hydra', '.hydra', '.hydra', '.hydra']",
    "[True, True, True, True, True, True]",
]
# The value of each of COLLECTION_STATEMENTS.
PUBLISHED_COLLECTION = [
    "(Collection(Item, n=4), 4, True, False, Collection(empty))",
    "(Item(x=1, y='a', z=[1]), Item(x=2, y='c', z=[1]), Collection(Item, n=2), [Item(x=2, y='b', "
    "z=[2]), Item(x=3, y='ab', z=[1, 2])], [Item(x=1, y='a', z=[1]), Item(x=3, y='ab', z=[1, "
    "2])], [Item(x=1, y='a', z=[1]), Item(x=2, y='b', z=[2])])",
    "([1, 2, 3, 2], 'x', 'X')",
    "([Item(x=2, y='b', z=[2]), Item(x=2, y='c', z=[1])], [Item(x=1, y='a', z=[1]), Item(x=3, "
    "y='ab', z=[1, 2])], [Item(x=1, y='a', z=[1]), Item(x=3, y='ab', z=[1, 2])], [Item(x=2, "
    "y='b', z=[2]), Item(x=3, y='ab', z=[1, 2]), Item(x=2, y='c', z=[1])])",
    "([Item(x=1, y='a', z=[1]), Item(x=3, y='ab', z=[1, 2])], [Item(x=2, y='b', z=[2])], "
    "[Item(x=1, y='a', z=[1]), Item(x=3, y='ab', z=[1, 2])])",
    "([Item(x=2, y='b', z=[2]), Item(x=3, y='ab', z=[1, 2]), Item(x=2, y='c', z=[1])], [Item(x=1, "
    "y='a', z=[1]), Item(x=2, y='c', z=[1])], [Item(x=3, y='ab', z=[1, 2])], [Item(x=2, y='c', "
    "z=[1])])",
    "([Item(x=1, y='a', z=[1]), Item(x=3, y='ab', z=[1, 2])], [Item(x=3, y='ab', z=[1, 2])])",
    "(Item(x=1, y='a', z=[1]), None, Item(x=2, y='b', z=[2]), Item(x=2, y='c', z=[1]), Item(x=1, "
    "y='a', z=[1]), Item(x=2, y='c', z=[1]))",
    "('ValueError', 'ValueError', 'ValueError', 'ValueError', 'ValueError')",
    "(['a', 'b', 'ab', 'c'], [0, 0, 0, 0], [1, 2, 3, 2], [1, 2, 3], 4)",
    "([Item(x=1, y='a', z=[1]), Item(x=2, y='b', z=[2]), Item(x=2, y='c', z=[1]), Item(x=3, "
    "y='ab', z=[1, 2])], [Item(x=3, y='ab', z=[1, 2]), Item(x=2, y='c', z=[1]), Item(x=2, y='b', "
    "z=[2]), Item(x=1, y='a', z=[1])], [Item(x=1, y='a', z=[1]), Item(x=2, y='b', z=[2]), "
    "Item(x=3, y='ab', z=[1, 2]), Item(x=2, y='c', z=[1])])",
    "([3, 6, 9, 6], [11, 12, 13, 12])",
    "([(1, 'a'), (2, 'b'), (3, 'ab'), (2, 'c')], [(1, 5), (2, 5), (3, 5), (2, 5)], [(1, 2), (2, "
    "4), (3, 6), (2, 4)])",
    "{'x': 'Int64', 'y': 'String', 'z': 'List(Int64)', 'd2': 'List(Int64)', 'd3': "
    "\"Struct({'a': Int64})\"}",
    "([(1, Collection(Item, n=1)), (2, Collection(Item, n=2)), (3, Collection(Item, n=1))], [(1, "
    "'a'), (2, 'b'), (3, 'ab'), (2, 'c')], 3, True)",
    "([(1, ['a'], 1), (2, ['b', 'c'], 2), (3, ['ab'], 1)], [(1,), (2,), (3,)])",
    "(2, 'ValueError', 'ValueError', [1, 2, 2, 3])",
    "([Item(x=1, y='a', z=[1]), Item(x=2, y='b', z=[2]), Item(x=3, y='ab', z=[1, 2]), Item(x=2, "
    "y='c', z=[1])], [Item(x=1, y='a', z=[1]), Item(x=3, y='ab', z=[1, 2])], [Item(x=2, y='b', "
    "z=[2]), Item(x=3, y='ab', z=[1, 2])], [Item(x=3, y='ab', z=[1, 2])])",
    "(0, 0, 4, 0, 4)",
    "([1, 2], [0, 0], [{'k': 2}])",
    "([Item(x=2, y='c', z=[1]), Item(x=3, y='ab', z=[1, 2]), Item(x=2, y='b', z=[2]), Item(x=1, "
    "y='a', z=[1])], True, 2, 1, 'Collection')",
    "'Sub'",
]
# MLflow's client reading of the runs `log_run` recorded (by width: -1, 5).
PUBLISHED_LOG_RUN = [
    {
        "status": "FAILED",
        "params": {},
        "metrics": {"area": -2.0},
        "artifacts": [
            ".hydra/config.yaml",
            ".hydra/hydra.yaml",
            ".hydra/overrides.yaml",
            "app.log",
        ],
        "traceback in log": True,
    },
    {
        "status": "FINISHED",
        "params": {},
        "metrics": {"area": 10.0},
        "artifacts": [
            ".hydra/config.yaml",
            ".hydra/hydra.yaml",
            ".hydra/overrides.yaml",
            "app.log",
        ],
        "traceback in log": False,
    },
]

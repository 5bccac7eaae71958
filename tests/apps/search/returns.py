"""A Hydra callback that appends each job's return value, as the sweeper
receives it in `JobReturn.return_value`, to `returns.jsonl` (repr and type)."""

from __future__ import annotations

import json
from typing import Any

from hydra.experimental.callback import Callback

OVERRIDE = "+hydra.callbacks.returns._target_=returns.Record"


class Record(Callback):
    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        value = job_return._return_value
        line = {
            "overrides": list(job_return.overrides),
            "repr": repr(value),
            "type": type(value).__name__,
        }
        with open(f"{config.hydra.runtime.cwd}/returns.jsonl", "a") as out:
            out.write(json.dumps(line) + "\n")

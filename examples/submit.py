"""A submit handler: runs the app once per line of the parameter file.

hydraflow calls it as `python submit.py example.py PARAMETER_FILE`. A cluster
submitter would hand each line to the scheduler instead.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path


def main() -> int:
    app, parameter_file = sys.argv[1], sys.argv[-1]
    for line in Path(parameter_file).read_text().splitlines():
        args = [sys.executable, app, *shlex.split(line)]
        print("submitting:", shlex.join(args), flush=True)
        status = subprocess.run(args).returncode
        if status != 0:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())

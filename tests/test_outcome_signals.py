"""`signals.heard`, in process: a stopping signal the block caught still stops
it, as `Interrupted`, however the block ends (the apps' case end to end is
tests/test_outcome.py)."""

from __future__ import annotations

import signal
import sys

import pytest
from hydraflow.signals import Interrupted, handled, heard, raise_interrupted


def caught_then(ending: str) -> None:
    """Catches the signal's KeyboardInterrupt, as an app saving a checkpoint does."""
    try:
        signal.raise_signal(signal.SIGTERM)
    except KeyboardInterrupt:
        print("saving a checkpoint")
    if ending == "exit":
        sys.exit(0)
    if ending == "raise":
        raise RuntimeError("after the signal")


@pytest.mark.parametrize("ending", ["return", "exit", "raise"])
def test_a_caught_signal_leaves_the_block_as_interrupted(ending: str) -> None:
    with handled(raise_interrupted), pytest.raises(Interrupted) as stopped, heard():
        caught_then(ending)
    assert stopped.value.signum == signal.SIGTERM


def test_without_a_signal_the_block_ends_as_it_ends() -> None:
    with handled(raise_interrupted):
        with heard():
            pass
        with pytest.raises(SystemExit), heard():
            sys.exit(0)


def test_a_signal_before_the_block_is_not_its_own() -> None:
    with handled(raise_interrupted):
        with pytest.raises(Interrupted):
            signal.raise_signal(signal.SIGTERM)
        with heard():
            pass

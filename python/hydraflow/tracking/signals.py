"""Termination signals inside an app: SIGTERM (a scheduler's time limit) and
SIGHUP (a lost terminal) end the run like Ctrl-C does, as KILLED with its
log, instead of killing the process with the run left RUNNING."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM or SIGHUP arrives."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"{signal.Signals(signum).name} received")


def raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def handle_termination() -> None:
    """SIGTERM and SIGHUP raise `Terminated` from now on (main thread only:
    Python delivers signals there). A handler the app set is kept."""
    if not in_main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) in (signal.SIG_DFL, None):
            signal.signal(signum, raise_terminated)


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal's number, as a shell reports a process it ended."""
    signum = interrupt.signum if isinstance(interrupt, Terminated) else signal.SIGINT
    return 128 + int(signum)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Holds Ctrl-C and termination signals while the block writes a run's
    final state, then delivers the first one that arrived."""
    if not in_main_thread():
        yield
        return
    received: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in HANDLED}

    def remember(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    for signum in HANDLED:
        signal.signal(signum, remember)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            signal.raise_signal(received[0])

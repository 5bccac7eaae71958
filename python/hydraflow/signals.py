"""Signals, in one place for the runner, the executors, the apps and the
SLURM handler: which signals stop hydraflow (Ctrl-C, a scheduler's SIGTERM, a
lost terminal's SIGHUP), the exception they raise, the exit status they
give, and handlers installed for a block and restored after it."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
Handler = Callable[[int, FrameType | None], object]


def signal_name(signum: int) -> str:
    """`SIGTERM`; `signal 99` for a number Python has no name for."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_status(signum: int) -> int:
    """128 + the signal's number, as a shell reports a process it ended."""
    return 128 + int(signum)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when a stopping signal arrives; a
    KeyboardInterrupt, so code that cleans up after Ctrl-C does so for all."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal_name(signum)}")


def signal_of(interrupt: KeyboardInterrupt) -> int:
    """The signal behind an interrupt: Python's own KeyboardInterrupt is SIGINT."""
    return interrupt.signum if isinstance(interrupt, Interrupted) else signal.SIGINT


def describe(interrupt: KeyboardInterrupt) -> str:
    """`interrupted by SIGINT`: never the empty text of a bare KeyboardInterrupt."""
    return f"interrupted by {signal_name(signal_of(interrupt))}"


# The stopping signals `raise_interrupted` turned into exceptions, oldest
# first: an app may catch the exception, never undo the signal (see `heard`).
_raised: list[int] = []


def raise_interrupted(signum: int, frame: FrameType | None) -> None:
    _raised.append(signum)
    raise Interrupted(signum)


@contextlib.contextmanager
def heard() -> Iterator[None]:
    """A stopping signal that reached the block stops it however the block
    ends: returning, `sys.exit`, another exception (an app that caught the
    KeyboardInterrupt to save a checkpoint, and returned) leaves it as
    `Interrupted`, as Hydra's process would have died of the signal."""
    before = len(_raised)
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BaseException as error:
        if len(_raised) > before:
            raise Interrupted(_raised[before]) from error
        raise
    if len(_raised) > before:
        raise Interrupted(_raised[before])


def in_main_thread() -> bool:
    """Python runs handlers, and lets them be set, in the main thread only."""
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def handled(
    handler: Handler | signal.Handlers, signums: Sequence[int] = STOPPING
) -> Iterator[None]:
    """`handler` for `signums` during the block, the previous ones restored
    after. An ignored SIGHUP stays ignored (see `still_heard`)."""
    if not in_main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in still_heard(signums)}
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


def handle_termination() -> None:
    """In an app: SIGTERM and SIGHUP raise `Interrupted` from now on, as Ctrl-C
    does (a KeyboardInterrupt, counted for `heard`). A handler the app set is
    kept."""
    if not in_main_thread():
        return
    python_s = {signal.SIGINT: signal.default_int_handler}
    for signum in STOPPING:
        if signal.getsignal(signum) in (signal.SIG_DFL, None, python_s.get(signum)):
            signal.signal(signum, raise_interrupted)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Holds the stopping signals while the block writes what must be whole (a
    run's final state), then delivers the first one that arrived."""
    received: list[int] = []
    with handled(lambda signum, frame: received.append(signum)):
        yield
    if received:
        signal.raise_signal(received[0])


@contextlib.contextmanager
def ignored(signums: Sequence[int] = STOPPING) -> Iterator[None]:
    """The block runs to its end whatever arrives (a last, short clean-up)."""
    with handled(signal.SIG_IGN, signums):
        yield


def still_heard(signums: Sequence[int]) -> list[int]:
    """`signums` but a SIGHUP this process ignores: `nohup` ignores it, and
    what the user started so must not stop when the terminal closes (nor
    its commands, which inherit the ignoring). An ignored SIGINT (a script's
    background job) is handled all the same: hydraflow stops its commands
    with SIGINT first, which they would then ignore too."""
    return [
        signum
        for signum in signums
        if signum != signal.SIGHUP or signal.getsignal(signum) != signal.SIG_IGN
    ]


def exit_on_interrupt_from_now_on(prefix: str) -> None:
    """The process-wide handler of a command line tool (see `exit_on_interrupt`)."""
    for signum in still_heard(STOPPING):
        signal.signal(signum, exit_on_interrupt(prefix))


def exit_on_interrupt(prefix: str) -> Handler:
    """A handler for a command line tool outside its long work: one line
    (`prefix: interrupted by SIGINT`) and exit 128+N, no traceback; `finally`
    blocks still run, as SystemExit unwinds the stack."""

    def stop(signum: int, frame: FrameType | None) -> None:
        sys.stderr.write(f"{prefix}: interrupted by {signal_name(signum)}\n")
        raise SystemExit(exit_status(signum))

    return stop

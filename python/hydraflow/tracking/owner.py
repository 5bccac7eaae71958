"""Who runs a run: host, process id and that process's start time.

A RUNNING run whose owner is alive belongs to that process; one whose owner
is gone (kill -9, a lost node) may be resumed. On the owner's host the
process table decides at once, read through psutil so that it works where
there is no /proc (macOS); the creation time guards against a reused pid;
from another host only a heartbeat can tell, so runs on a tracking server
refresh one while they run.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from hydraflow.mlflow_schema import HEARTBEAT_TAG, OWNER_TAG

HEARTBEAT_SECONDS = 60.0
# A heartbeat older than this means the owner is gone.
STALE_SECONDS = 5 * HEARTBEAT_SECONDS


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: str  # the process's creation time (`process_start`); "" if unknown

    @classmethod
    def me(cls) -> Owner:
        return owner_of_pid(os.getpid())

    def to_tag(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_tag(cls, text: str | None) -> Owner | None:
        try:
            fields = json.loads(text or "")
            return cls(str(fields["host"]), int(fields["pid"]), str(fields["started"]))
        except (ValueError, TypeError, KeyError):
            return None

    def is_alive(self, heartbeat: str | None, now: float) -> bool:
        if self.host == socket.gethostname():
            if self.pid == os.getpid():
                return True
            started = process_start(self.pid)
            if self.started.isdigit():
                # Recorded by an earlier hydraflow as /proc's clock ticks, which
                # cannot be compared: a live pid is taken as the owner, so a run
                # is never run twice while hydraflow is upgraded.
                return started != ""
            return started == self.started != ""
        try:
            return now - float(heartbeat or "") < STALE_SECONDS
        except ValueError:
            return False

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


@functools.cache
def owner_of_pid(pid: int) -> Owner:
    """This process as an owner, read once (a forked child has its own pid)."""
    return Owner(socket.gethostname(), pid, process_start(pid))


def process_start(pid: int) -> str:
    """The process's creation time as psutil reads it from the system (the
    process table on Linux, the kernel's proc info on macOS), in seconds to
    the hundredth; "" when no such process exists, it cannot be read, or it
    is a zombie (it has ended; only its parent has not read its status)."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return ""
        return f"{process.create_time():.2f}"
    except (psutil.Error, OSError):
        return ""


def owner_alive(tags: dict[str, str], now: float | None = None) -> Owner | None:
    """The run's owner if that process is still alive, else None."""
    owner = Owner.from_tag(tags.get(OWNER_TAG))
    if owner is None:
        return None
    return owner if owner.is_alive(tags.get(HEARTBEAT_TAG), now or time.time()) else None


def owner_of(tags: dict[str, str]) -> str:
    """Who the run's owner tag names, for a message."""
    owner = Owner.from_tag(tags.get(OWNER_TAG))
    return owner.describe() if owner else "another process"


class Heartbeat:
    """Refreshes the heartbeat tag in a daemon thread until stopped."""

    def __init__(self, beat: Callable[[str], object]) -> None:
        self.beat = beat
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.loop, name="hydraflow-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)

    def loop(self) -> None:
        while not self.stopped.wait(HEARTBEAT_SECONDS):
            try:
                self.beat(str(time.time()))
            except Exception:  # a missed beat only ages the heartbeat
                continue

"""Stores behind a URI (a tracking server, a database): a password in the URI
is never shown (`http://alice:***@host`), a server that does not answer is
reported within seconds instead of after MLflow's minutes of retries, and a
missing database driver is named with what to install. MLflow's own
settings (MLFLOW_HTTP_REQUEST_MAX_RETRIES, ...) are left alone: once the
store answered, a transient error mid-run is retried as MLflow does."""

from __future__ import annotations

import contextlib
import io
import re
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TextIO
from urllib.parse import urlsplit

# `scheme://user:password@`; a password may hold `:` but not `/`, `@` or spaces.
PASSWORD_IN_URI = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:)[^\s/@]+@")
PASSWORD_PARAMETER = re.compile(r"([?&](?:password|passwd|pwd)=)[^&\s]+", re.IGNORECASE)
# An argument setting a key named so (`db.password=x`, `+db_pwd=x`, `--secret=x`),
# alone or quoted whole as a shell or a repr quotes it (`'db.password=a b'`).
SECRET_KEY = r"[-+~]*(?:[\w-]+[./])*(?:\w*_)?(?:password|passwd|pwd|secret)="
PASSWORD_ARGUMENT = re.compile(
    rf"((?<![^\s\"]){SECRET_KEY})(?:\"[^\"]*\"|[^\s'\"])+", re.IGNORECASE
)
QUOTED_PASSWORD_ARGUMENT = re.compile(rf"('{SECRET_KEY})[^']*", re.IGNORECASE)
SECRET_HINTS = ("pass", "pwd", "secret")
MASK = "***"
Probe = Callable[[float], None]

# How long a start-up check waits for a store to answer: the CLI and `load`
# answer within 5 s, an app within 20 s (a loaded server may be slow to
# answer). A refused connection is not waited for (`definite_refusal`).
CLI_SECONDS = 5.0
APP_SECONDS = 20.0
ATTEMPT_SECONDS = 4.0
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
# The Python module a database driver is imported as, and the package it comes in.
DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "pg8000": "pg8000",
    "asyncpg": "asyncpg",
    "MySQLdb": "mysqlclient",
    "pymysql": "PyMySQL",
    "mysql": "mysql-connector-python",
    "pyodbc": "pyodbc",
    "pymssql": "pymssql",
}


def masked(text: str) -> str:
    """`text` with every password in a URI (and `password=` parameter) as
    ***, and the value of an argument whose key is a password's name. The
    regular expressions run only where a cheap test finds what they look for."""
    if "://" in text:
        text = PASSWORD_IN_URI.sub(rf"\1{MASK}@", text)
    lower = text.lower()
    if any(hint in lower for hint in SECRET_HINTS):
        text = PASSWORD_PARAMETER.sub(rf"\1{MASK}", text)
        text = QUOTED_PASSWORD_ARGUMENT.sub(rf"\1{MASK}", text)
        text = PASSWORD_ARGUMENT.sub(rf"\1{MASK}", text)
    return text


def chain(error: BaseException) -> Iterator[BaseException]:
    """The error, its causes and contexts, and the errors urllib3 keeps as `reason`."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        inner = [a for a in current.args if isinstance(a, BaseException)]
        pending.extend([current.__cause__, current.__context__, *inner])
        if isinstance(reason, BaseException):
            pending.append(reason)


def mask_error(error: BaseException) -> None:
    """Masks passwords in an error's text, and its causes', in place: MLflow
    names the URL it failed to reach, and Hydra or a log prints the error."""
    for current in chain(error):
        current.args = tuple(masked(a) if isinstance(a, str) else a for a in current.args)
        message = getattr(current, "message", None)
        if isinstance(message, str):
            with contextlib.suppress(AttributeError):
                current.message = masked(message)  # type: ignore[attr-defined]


class MaskedStream(io.TextIOBase):
    """Writes through to `stream`, passwords in URIs masked."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(masked(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def masked_stdout() -> Iterator[None]:
    """Standard output with passwords masked, for a call to a library that prints URLs."""
    with contextlib.redirect_stdout(MaskedStream(sys.stdout)):
        yield


def missing_driver(error: BaseException) -> str | None:
    """`the driver X is not installed: pip install Y` when an import failed."""
    for current in chain(error):
        if isinstance(current, ModuleNotFoundError) and current.name:
            module = current.name.split(".")[0]
            package = DRIVER_PACKAGES.get(module, module)
            return f"its database driver '{module}' is not installed: pip install '{package}'"
    return None


class Unreachable(Exception):
    """The store did not answer within the start-up check's time."""


def check_reachable(uri: str, within: float) -> None:
    """Raises `Unreachable` unless the server behind `uri` answers within
    `within` seconds (an HTTP answer of any status from a tracking server, a
    TCP connection to a database); retried until then, a short pause apart,
    except after a definite answer (`definite_refusal`)."""
    probe = probe_for(uri)
    if probe is None:
        return
    deadline = time.monotonic() + within
    pause = 0.5
    while True:
        left = deadline - time.monotonic()
        try:
            probe(max(0.5, min(ATTEMPT_SECONDS, left)))
            return
        except ImportError:
            raise
        except Exception as error:
            definite = definite_refusal(error)
            if definite is not None:
                raise Unreachable(definite) from None
            if deadline - time.monotonic() < pause:
                raise Unreachable(f"no answer within {within:g} s ({why(error)})") from None
        time.sleep(pause)
        pause = min(pause * 2, 4.0)


def definite_refusal(error: BaseException) -> str | None:
    """Why waiting is pointless, when it is: an unknown host, or a refused
    connection (the host answered that nothing listens on that port). Only
    silence is waited for: a server on its way up, a slow network."""
    for current in chain(error):
        if isinstance(current, socket.gaierror):
            return f"unknown host ({why(error)})"
        if isinstance(current, ConnectionRefusedError):
            return "connection refused (nothing listens on that port: is the server running?)"
    return None


def probe_for(uri: str) -> Probe | None:
    scheme = urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        return lambda timeout: http_probe(uri, timeout)
    database = scheme.split("+")[0]
    if database in DEFAULT_PORTS:
        return lambda timeout: tcp_probe(uri, DEFAULT_PORTS[database], timeout)
    return None


def http_probe(uri: str, timeout: float) -> None:
    """One request, any answer will do: through the proxies MLflow would use,
    but without its retries, without MLflow's import (seconds on a loaded
    machine), and without the credentials (nothing to verify, nothing sent)."""
    import requests
    import urllib3

    parts = urlsplit(uri)
    address = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl().rstrip("/")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        requests.get(f"{address}/health", timeout=timeout, verify=False, allow_redirects=False)


def tcp_probe(uri: str, default_port: int, timeout: float) -> None:
    """The driver SQLAlchemy would load (ImportError if it is missing), then
    a connection to the database's port."""
    from sqlalchemy.engine import make_url

    make_url(uri).get_dialect().import_dbapi()
    parts = urlsplit(uri)
    if not parts.hostname:
        return  # a local socket, or a host given in the query: MLflow finds it
    with socket.create_connection((parts.hostname, parts.port or default_port), timeout):
        pass


def why(error: BaseException) -> str:
    """The cause in a few words: a time-out, or the system's reason."""
    for current in chain(error):
        if isinstance(current, TimeoutError) or "Timeout" in type(current).__name__:
            return "timed out"
    for current in chain(error):
        if isinstance(current, OSError) and current.strerror:
            return current.strerror.lower()
    return masked(str(error).strip().splitlines()[0]) if str(error).strip() else "no answer"

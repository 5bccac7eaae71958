"""Stores behind a URI (a tracking server, a database): a password in the URI
is never shown (`http://alice:***@host`), a server that does not answer is
reported within seconds instead of after MLflow's minutes of retries, and a
missing database driver is named with what to install. MLflow's own
settings (MLFLOW_HTTP_REQUEST_MAX_RETRIES, ...) are left alone: once the
store answered, a transient error mid-run is retried as MLflow does.

A PostgreSQL store is checked by logging in (a wrong password is a definite
answer, told at once), and every login to it, MLflow's own included, has a
time limit: a server that accepts connections and never answers (a frozen
host) would otherwise hold the process in the driver's C code, deaf to
Ctrl-C and SIGTERM."""

from __future__ import annotations

import contextlib
import io
import math
import re
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TextIO
from urllib.parse import urlsplit

# `scheme://user:password@`; a password may hold `:` and `/` (SQLAlchemy takes
# both), not `@` or spaces. (A URL whose path holds `@` after a port,
# `http://host:5000/a@b`, is masked too: better than a password shown.)
PASSWORD_IN_URI = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:)[^\s@]+@")
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
# The drivers built on libpq, whose `connect_timeout` bounds a whole login
# (in whole seconds, 2 at least); what a login to the store may take when
# MLflow opens it after the start-up check.
LIBPQ_DRIVERS = ("psycopg2", "psycopg")
LOGIN_SECONDS = 10
# libpq's words for a server that answered but cannot take the login yet:
# worth waiting for, as for silence.
NOT_READY = (
    "starting up",
    "shutting down",
    "in recovery",
    "too many clients",
    "remaining connection slots",
    "not yet accepting connections",
)
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
            return f"its database driver '{module}' is not installed: pip install '{package}'" + (
                PSYCOPG2_HINT if module == "psycopg" else ""
            )
    return None


# A bare `postgresql://` is psycopg 3 for SQLAlchemy 2.1; hydraflow's
# `cluster` extra installs psycopg2 instead.
PSYCOPG2_HINT = (
    ", or write postgresql+psycopg2:// to use psycopg2"
    " (which pip install 'hydraflow[cluster]' installs)"
)


class Unreachable(Exception):
    """The store did not answer within the start-up check's time."""


def check_reachable(uri: str, within: float) -> None:
    """Raises `Unreachable` unless the server behind `uri` answers within
    `within` seconds (an HTTP answer of any status from a tracking server, a
    login to PostgreSQL, a TCP connection to another database); retried
    until then, a short pause apart, except after a definite answer
    (`definite_refusal`). Each attempt runs in a thread, so that Ctrl-C and
    SIGTERM are handled while a driver waits in C. Logins to the store
    later (MLflow's) get a time limit too (`bound_logins`)."""
    bound_logins(uri)
    probe = probe_for(uri)
    if probe is None:
        return
    deadline = time.monotonic() + within
    pause = 0.5
    while True:
        left = deadline - time.monotonic()
        try:
            attempt = max(0.5, min(ATTEMPT_SECONDS, left))
            in_a_thread(probe, attempt)
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
            return REFUSED
    return login_refusal(error)


REFUSED = "connection refused (nothing listens on that port: is the server running?)"


def login_refusal(error: BaseException) -> str | None:
    """The server's refusal of a PostgreSQL login (a wrong password, an
    unknown user or database), in libpq's words, or libpq's own definite
    answers; None for silence and for a server not ready yet."""
    text = libpq_message(error)
    if text is None or "timeout expired" in text or any(s in text for s in NOT_READY):
        return None
    if "Connection refused" in text:
        return REFUSED
    if "could not translate host name" in text:
        return f"unknown host ({masked(text)})"
    if "FATAL:" in text or "fe_sendauth:" in text:
        refusal = text.split("FATAL:", 1)[-1].split("fe_sendauth:", 1)[-1].strip()
        return masked(refusal.splitlines()[0].strip())
    return None


def libpq_message(error: BaseException) -> str | None:
    """The text of the driver's error (SQLAlchemy keeps it as `orig`)."""
    for current in chain(error):
        origin = getattr(current, "orig", None) or current
        module = type(origin).__module__.split(".")[0]
        if module in LIBPQ_DRIVERS and str(origin).strip():
            text = str(origin).strip()
            # `connection to server at "host", port 5432 failed: ...`: the rest is the news.
            return re.sub(
                r'^connection to server at "[^"]*"(?: \([^)]*\))?, port \d+ failed: ', "", text
            )
    return None


def in_a_thread(probe: Probe, seconds: float) -> None:
    """`probe(seconds)` in a daemon thread, waited for `seconds` at most (then
    TimeoutError; the thread is left to end by its own time limit). The
    main thread waits in Python, where signal handlers run."""
    failure: list[BaseException] = []

    def attempt() -> None:
        try:
            probe(seconds)
        except BaseException as error:  # handed to the waiting thread
            failure.append(error)

    thread = threading.Thread(target=attempt, name="hydraflow-store-check", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {seconds:g} s")
    if failure:
        raise failure[0]


def probe_for(uri: str) -> Probe | None:
    scheme = urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        return lambda timeout: http_probe(uri, timeout)
    database = scheme.split("+")[0]
    if libpq_driver(uri):
        return lambda timeout: login(uri, timeout)
    if database in DEFAULT_PORTS:
        return lambda timeout: tcp_probe(uri, DEFAULT_PORTS[database], timeout)
    return None


def http_probe(uri: str, timeout: float) -> None:
    """One request, any answer will do: through the proxies MLflow would use,
    but without its retries, without MLflow's import (seconds on a loaded
    machine), and without the credentials (nothing to verify, nothing sent)."""
    import requests
    import urllib3

    address = without_credentials(uri).rstrip("/")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        requests.get(f"{address}/health", timeout=timeout, verify=False, allow_redirects=False)


def without_credentials(uri: str) -> str:
    """`uri` without its `user:password@`: for a request that sends none, or a
    URL printed and kept in a browser's history."""
    parts = urlsplit(uri)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


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


def libpq_driver(uri: str) -> bool:
    """Whether `uri` is a PostgreSQL store SQLAlchemy reaches through libpq
    (psycopg2, psycopg 3); ImportError if the driver is missing."""
    if urlsplit(uri).scheme.lower().split("+")[0] != "postgresql":
        return False
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import NoSuchModuleError

    try:
        dialect = make_url(uri).get_dialect()
    except NoSuchModuleError:  # `+psycopg3`: the TCP probe, then MLflow, say so in one line
        return False
    dialect.import_dbapi()
    return dialect.driver in LIBPQ_DRIVERS


def login(uri: str, timeout: float) -> None:
    """Logs in to the database as MLflow would (SQLAlchemy's connection
    arguments for the URI), within libpq's `connect_timeout`, and out again."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(
        uri, poolclass=NullPool, connect_args={"connect_timeout": whole_seconds(timeout)}
    )
    try:
        engine.connect().close()
    finally:
        engine.dispose()


def whole_seconds(seconds: float) -> int:
    """libpq's `connect_timeout`: whole seconds, and less than 2 means 2."""
    return max(2, math.ceil(seconds))


# The connection arguments of each store whose logins `bound_logins` limits.
_bounded: list[dict[str, Any]] = []


def bound_logins(uri: str) -> None:
    """From now on every SQLAlchemy login to the PostgreSQL store `uri`
    through libpq (MLflow's engine too) gives up after LOGIN_SECONDS, unless
    the URI sets its own `connect_timeout`. The URI MLflow sees, stores and
    names its store by is left as it is."""
    if not libpq_driver(uri):
        return
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import Engine, make_url

    url = make_url(uri)
    if "connect_timeout" in url.query:
        return
    engine = create_engine(url)  # no connection yet: only SQLAlchemy's reading of the URI
    _, arguments = engine.dialect.create_connect_args(url)
    engine.dispose()
    if arguments in _bounded:
        return
    if not _bounded:
        event.listen(Engine, "do_connect", limit_login)
    _bounded.append(dict(arguments))


def limit_login(dialect: Any, record: Any, arguments: list[Any], keywords: dict[str, Any]) -> None:
    """SQLAlchemy's `do_connect` hook: a time limit for a login to a bounded store."""
    if dialect.driver in LIBPQ_DRIVERS and keywords in _bounded:
        keywords["connect_timeout"] = LOGIN_SECONDS


def why(error: BaseException) -> str:
    """The cause in a few words: a time-out, or the system's reason."""
    for current in chain(error):
        if isinstance(current, TimeoutError) or "Timeout" in type(current).__name__:
            return "timed out"
    for current in chain(error):
        if isinstance(current, OSError) and current.strerror:
            return current.strerror.lower()
    return masked(str(error).strip().splitlines()[0]) if str(error).strip() else "no answer"

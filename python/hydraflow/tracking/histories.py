"""The completed runs' values of a metric at a step, for the stopping rule
(see `stopping.py`): from a SQLite store's pages, or a tracking server."""

from __future__ import annotations

import bisect
import contextlib
import functools
import hashlib
import math
import threading
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import polars as pl

from hydraflow._core import SqliteFileError
from hydraflow.analysis.reading import columns_frame, frame, open_snapshot, table_layout, with_nan
from hydraflow.errors import HydraflowError
from hydraflow.mlflow_schema import STOPPED_TAG
from hydraflow.remote import masked, why
from hydraflow.store import connect_read_only, retry_busy, sqlite_path, user_cache_folder

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.store.entities.paged_list import PagedList


class Histories(Protocol):
    def at_step(self, metric: str, step: int) -> list[float]:
        """The completed runs' values of `metric` at `step`."""
        ...

    def close(self) -> None: ...


class SqliteHistories:
    """A SQLite store, read-only. A completed run's history is final, so the
    completed runs' points of a metric are kept beside the store, in files
    sorted by step and memory-mapped (`Segments`): a step's values are a
    binary search away, in any process. Runs completed since are fetched
    through MLflow's index on (run, key, step), or, when there are many (a
    store never cached), from the metric's pages read by the Rust core as
    `load` reads them; they are written as a new file when the job ends."""

    REFRESH_SECONDS = 1.0
    # More runs to fetch than this: reading the whole metric is quicker.
    FETCH_LIMIT = 1000

    def __init__(self, path: Path, experiment_id: str, run_id: str) -> None:
        self.path = path
        self.connection = connect_read_only(path)
        self.experiment_id = int(experiment_id)
        self.run_id = run_id
        self.completed: frozenset[str] = frozenset()
        self.checked_at = -math.inf
        self.segments: dict[str, Segments] = {}

    def at_step(self, metric: str, step: int) -> list[float]:
        self.refresh()
        segments = self.segments.get(metric)
        if segments is None:
            folder = cache_folder(self.path, self.experiment_id, metric)
            segments = self.segments[metric] = Segments.load(folder)
        missing = self.completed - segments.included
        if missing:
            runs = sorted(missing)
            points = (
                self.read_all(metric)
                if len(runs) > self.FETCH_LIMIT
                else self.read_runs(metric, runs)
            )
            segments.add(points, runs)
        return segments.at_step(step, self.completed)

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self.checked_at >= self.REFRESH_SECONDS:
            self.checked_at = now
            query = (COMPLETED_QUERY, (self.experiment_id, self.run_id, STOPPED_TAG))
            self.completed = frozenset(run_id for (run_id,) in self.connection.execute(*query))

    def read_all(self, metric: str) -> pl.DataFrame:
        """The metric's points, from the file's pages when the core can read
        them (at the snapshot of a read transaction, as `load` does), else
        through SQL in the same transaction."""
        db = self.connection
        snapshot = open_snapshot(self.path)
        db.execute("BEGIN")
        try:
            db.execute("SELECT 1 FROM metrics LIMIT 1").fetchall()  # takes SQLite's read lock
            layout = table_layout(db, "metrics", ["key", *POINTS], defaults_ok=True)
            if layout is None or isinstance(snapshot, str):
                return self.query(f"{POINTS_QUERY} WHERE key = ? ORDER BY rowid", [metric])
            root, (key, *positions) = layout
            try:
                snapshot.pin()
                columns = snapshot.read_table(root, positions, key_column=key, exact=[metric])
                snapshot.check()
            except SqliteFileError:
                # The log moved under the read, or pages the core cannot read:
                # SQL in this transaction reads the same commit.
                return self.query(f"{POINTS_QUERY} WHERE key = ? ORDER BY rowid", [metric])
            points = columns_frame(columns, POINTS).fill_null(0)  # MLflow's defaults: 0
            return with_nan(points)
        finally:
            db.rollback()

    def read_runs(self, metric: str, run_ids: list[str]) -> pl.DataFrame:
        parts = []
        for start in range(0, len(run_ids), 500):  # within SQLite's variable limit
            chunk = run_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"{POINTS_QUERY} WHERE run_uuid IN ({marks}) AND key = ? ORDER BY rowid"
            parts.append(self.query(query, [*chunk, metric]))
        return pl.concat(parts)

    def query(self, sql: str, parameters: list[str]) -> pl.DataFrame:
        return with_nan(frame(self.connection.execute(sql, parameters), POINTS))

    def close(self) -> None:
        self.connection.close()
        for segments in self.segments.values():
            segments.save(self.completed)


# The completed runs: FINISHED, and not stopped early (their histories end short).
COMPLETED_QUERY = """
    SELECT run_uuid FROM runs
    WHERE experiment_id = ? AND run_uuid != ? AND status = 'FINISHED'
      AND lifecycle_stage = 'active'
      AND NOT EXISTS (SELECT 1 FROM tags WHERE tags.run_uuid = runs.run_uuid AND tags.key = ?)
"""
# Rows in rowid order: a step logged twice keeps its later value.
POINTS = {"run_uuid": pl.String, "step": pl.Int64, "value": pl.Float64, "is_nan": pl.Int64}
POINTS_QUERY = f"SELECT {', '.join(POINTS)} FROM metrics"

# A segment's points: sorted by step, the run as an index into its runs.
RECORD = np.dtype([("step", "<i8"), ("run", "<u4"), ("value", "<f8")])
CACHE_DIR = Path(".hydraflow") / "histories"
# More segments than this are merged into one when a job ends.
MAX_SEGMENTS = 16
# Part of every folder's key (a new format: new folders, never misread by an
# older hydraflow) and the first word of every file's header (`header`).
FORMAT = "hydraflow-histories-2"


def cache_folder(store: Path, experiment_id: int, metric: str) -> Path:
    """Beside the store; named by the store file, the experiment and the metric."""
    named = f"{store.name}\0{experiment_id}\0{metric}\0{FORMAT}"
    key = hashlib.sha256(named.encode()).hexdigest()
    return store.resolve().parent / CACHE_DIR / key[:32]


def header(folder: Path, runs: Iterable[str], records: np.ndarray) -> str:
    """The first line of a segment's `.runs` file: what the pair holds (the
    folder's key: the store or server, the experiment, the metric), how many
    runs and records, and a checksum of both. A file damaged, cut short,
    from another folder or paired with another's fails it."""
    runs = list(runs)
    return f"{FORMAT} {folder.name} {len(runs)} {len(records)} {checksum(runs, records)}"


def checksum(runs: list[str], records: np.ndarray) -> str:
    """CRC-32 of the run ids; the records' bytes summed as 8-byte words: a
    20 MB file is read at memory speed when a process maps it (a CRC of it
    costs 10-20 ms on this project's machine). The sum catches changed
    bytes, not records swapped in place."""
    data = np.ascontiguousarray(records).view(np.uint8).reshape(-1)
    whole = len(data) // 8 * 8
    total = int(data[:whole].view("<u8").sum(dtype=np.uint64))
    total ^= int.from_bytes(data[whole:].tobytes(), "little")
    return f"{total:016x}{zlib.crc32(chr(10).join(runs).encode()):08x}"


@dataclass
class Segment:
    """Completed runs' points of one metric: `runs` were fetched whole (a
    run without points too); `records` sorted by step. `counted` marks the
    runs this segment answers for: completed now, and not already in an
    earlier segment (two processes may have written the same run)."""

    runs: np.ndarray
    records: np.ndarray
    name: str | None = None
    counted: np.ndarray | None = None

    @classmethod
    def of(cls, points: pl.DataFrame, runs: list[str]) -> Segment:
        """From points in rowid order: a step logged twice keeps its later value."""
        numbers = pl.DataFrame(
            {"run_uuid": runs, "run": np.arange(len(runs), dtype=RECORD["run"])},
            schema={"run_uuid": pl.String, "run": pl.UInt32},
        )
        ordered = (
            points.join(numbers, on="run_uuid", maintain_order="left")
            .select("step", "run", "value")
            .sort("step", "run", maintain_order=True)
        )
        records = np.empty(len(ordered), dtype=RECORD)
        for column in ("step", "run", "value"):
            records[column] = ordered[column].to_numpy()
        # A step logged twice: its rows are now together, the later last.
        step, run = records["step"], records["run"]
        last = np.ones(len(records), dtype=bool)
        last[:-1] = (step[1:] != step[:-1]) | (run[1:] != run[:-1])
        records = records[last]
        return cls(np.array(runs, dtype=object), records)

    def values_at(self, step: int) -> list[float]:
        # bisect reads ~20 steps of the mapped file; numpy's searchsorted
        # would first copy the (strided) column whole.
        steps = self.records["step"]
        rows = self.records[bisect.bisect_left(steps, step) : bisect.bisect_right(steps, step)]
        assert self.counted is not None
        values: list[float] = rows["value"][self.counted[rows["run"]]].tolist()
        return values


class Segments:
    """The segments of one metric: those on disk, and those fetched here."""

    def __init__(self, folder: Path | None, stored: list[Segment]) -> None:
        self.folder = folder  # None: no cache, every run is fetched
        self.stored = stored
        self.fetched: list[Segment] = []
        self.counted_for: frozenset[str] | None = None

    @classmethod
    def load(cls, folder: Path | None) -> Segments:
        """The segments whole and this folder's; a damaged one is deleted,
        and its runs fetched again (and written again when the job ends)."""
        try:
            files = sorted(folder.glob("*.npy")) if folder is not None else []
        except OSError:
            files = []  # unreadable: every run is fetched
        stored = [segment for file in files if (segment := read_segment(file)) is not None]
        return cls(folder, stored)

    @property
    def all(self) -> list[Segment]:
        return [*self.stored, *self.fetched]

    @functools.cached_property
    def included(self) -> frozenset[str]:
        """The runs fetched whole, with or without points."""
        return frozenset(run for segment in self.all for run in segment.runs)

    def add(self, points: pl.DataFrame, runs: list[str]) -> None:
        self.fetched.append(Segment.of(points, runs))
        self.__dict__.pop("included", None)
        self.counted_for = None

    def at_step(self, step: int, completed: frozenset[str]) -> list[float]:
        if self.counted_for is not completed:
            self.count(completed)
        return [value for segment in self.all for value in segment.values_at(step)]

    def count(self, completed: frozenset[str]) -> None:
        seen: set[str] = set()
        for segment in self.all:
            counted = [run in completed and run not in seen for run in segment.runs]
            segment.counted = np.array(counted, dtype=bool)
            seen.update(segment.runs)
        self.counted_for = completed

    def save(self, completed: frozenset[str]) -> None:
        """Writes what was fetched as one more file, or, when there would be
        too many, all in one (only the runs still completed) in place of the
        others. A cache: what cannot be written is left out."""
        self.count(completed)
        folder = self.folder
        if folder is None:
            return
        try:
            if len(self.stored) + bool(self.fetched) > MAX_SEGMENTS:
                write_segment(folder, merged(self.all))
                for segment in self.stored:
                    for suffix in (".npy", ".runs"):
                        (folder / f"{segment.name}{suffix}").unlink(missing_ok=True)
            elif self.fetched:
                write_segment(folder, merged(self.fetched))
        except OSError:
            pass


def write_segment(folder: Path, segment: Segment) -> None:
    """A new pair of files; on a failure (a full disk), none of it is left."""
    folder.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex
    listed = [header(folder, segment.runs, segment.records), *segment.runs]
    runs = "\n".join(listed).encode()
    made: list[Path] = []
    try:
        # The runs first: a segment is whole once its .npy appears.
        for suffix, write in (
            (".runs", lambda out: out.write(runs)),
            (".npy", lambda out: np.save(out, segment.records)),
        ):
            partial = folder / f".{name}{suffix}.partial"
            made.append(partial)
            with open(partial, "wb") as out:
                write(out)
            made[-1] = partial.replace(folder / f"{name}{suffix}")
    except OSError:
        for path in made:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        raise


def read_segment(file: Path) -> Segment | None:
    """The segment of this `.npy` and its `.runs`; None if either is gone
    (replaced by a merge: its runs are fetched again) or damaged (deleted)."""
    try:
        first, _, rest = file.with_suffix(".runs").read_text().partition("\n")
        records = map_records(file)
    except OSError:
        return None
    except Exception:  # not a file of ours: numpy's and the decoder's errors alike
        discard(file)
        return None
    runs = rest.split()
    if records.dtype != RECORD or records.ndim != 1 or first != header(file.parent, runs, records):
        discard(file)
        return None
    return Segment(np.array(runs, dtype=object), records, file.stem)


def discard(file: Path) -> None:
    """Deletes a damaged segment (another reader may have already)."""
    for suffix in (".npy", ".runs"):
        with contextlib.suppress(OSError):
            file.with_suffix(suffix).unlink(missing_ok=True)


def map_records(file: Path) -> np.ndarray:
    try:
        records: np.ndarray = np.load(file, mmap_mode="r", allow_pickle=False)
    except ValueError:
        records = np.load(file, allow_pickle=False)  # an empty segment cannot be mapped
    return records


def merged(segments: list[Segment]) -> Segment:
    """One segment of the runs these count (see `Segments.count`), its
    records in step order."""
    runs: list[str] = []
    parts = []
    for segment in segments:
        assert segment.counted is not None
        kept = segment.counted
        position = np.zeros(len(kept), dtype=RECORD["run"])
        position[kept] = np.arange(len(runs), len(runs) + int(kept.sum()))
        runs.extend(segment.runs[kept])
        records = np.array(segment.records[kept[segment.records["run"]]])  # a copy
        records["run"] = position[records["run"]]
        parts.append(records)
    records = np.concatenate(parts) if parts else np.empty(0, dtype=RECORD)
    order = np.argsort(records["step"], kind="stable")
    return Segment(np.array(runs, dtype=object), records[order])


class ClientHistories:
    """A tracking server. The completed runs' points are kept as a SQLite
    store's are (`Segments`), in the user's cache folder, so a later process
    fetches only the runs completed since; those are fetched 100 at a time
    through the server's bulk history endpoint (`fetch`).

    The completed runs are found by searches: at most once a second, only
    the runs that ended lately (since the newest end seen, less a margin);
    every page in a thread of its own, every FULL_SEARCH_SECONDS (a search of
    10,000 runs takes seconds), to drop runs deleted or run again. The first
    call of a process searches every page itself, unless the cache holds
    the metric: then the runs the cache holds, and the runs that ended since
    the newest end its writers saw, until the first full search comes back."""

    REFRESH_SECONDS = 1.0
    FULL_SEARCH_SECONDS = 60.0
    # A run that ended this long before the newest one seen is still looked
    # for: end times come from the clients' clocks. Every search returns the
    # runs that ended within it (in full, as `search_runs` does): kept short.
    END_TIME_MARGIN_MS = 60_000
    # The ajax endpoint MLflow's UI draws charts with: one SQL query for up
    # to 100 runs (MLflow's limit), at most 25,000 points a response.
    BULK_ENDPOINT = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
    BULK_RUNS = 100
    BULK_POINTS = 25_000

    def __init__(self, client: MlflowClient, experiment_id: str, run_id: str) -> None:
        self.client = client
        self.uri = str(client.tracking_uri)
        self.experiment_id = experiment_id
        self.run_id = run_id
        self.completed: frozenset[str] = frozenset()
        self.newest_end = 0
        self.checked_at = self.searched_at = -math.inf
        self.segments: dict[str, Segments] = {}
        self.bulk = True  # until the server says it has no bulk endpoint
        # The full search under way (its thread, its answer), and the runs
        # the searches since it began found.
        self.full_search: tuple[threading.Thread, dict[str, Any]] | None = None
        self.recent: set[str] = set()

    def at_step(self, metric: str, step: int) -> list[float]:
        from mlflow.exceptions import MlflowException

        try:
            segments = self.segments.get(metric)
            if segments is None:
                folder = client_cache_folder(self.uri, self.experiment_id, metric)
                segments = self.segments[metric] = Segments.load(folder)
                if self.searched_at == -math.inf:
                    self.begin(segments)
            self.refresh()
            missing = self.completed - segments.included
            if missing:
                runs = sorted(missing)
                segments.add(self.fetch(metric, runs), runs)
        except (MlflowException, OSError) as error:  # requests' errors are OSErrors
            raise unreachable(self.uri, error) from None
        return segments.at_step(step, self.completed)

    def begin(self, segments: Segments) -> None:
        """The completed runs, the first time: from the cache when it has
        them (a full search follows in a thread), else by a full search."""
        newest_end = read_newest_end(segments.folder) if segments.folder else None
        if segments.stored and newest_end is not None:
            self.completed = segments.included - {self.run_id}
            self.newest_end = newest_end
            self.start_full_search()
        else:
            self.searched_at = time.monotonic()
            self.completed = frozenset(self.completed_since(None))
            self.checked_at = time.monotonic()

    def refresh(self) -> None:
        self.collect_full_search()
        now = time.monotonic()
        if now - self.checked_at < self.REFRESH_SECONDS:
            return
        self.checked_at = now
        if self.full_search is None and now - self.searched_at >= self.FULL_SEARCH_SECONDS:
            self.start_full_search()
        found = self.completed_since(self.newest_end - self.END_TIME_MARGIN_MS)
        self.recent |= found
        self.completed |= found

    def start_full_search(self) -> None:
        self.searched_at = time.monotonic()
        self.recent = set()
        answer: dict[str, Any] = {}

        def search_all() -> None:
            try:
                answer["runs"] = self.completed_since(None)
            except Exception as error:  # raised again by the caller's thread
                answer["error"] = error

        thread = threading.Thread(target=search_all, name="hydraflow-completed-runs", daemon=True)
        thread.start()
        self.full_search = (thread, answer)

    def collect_full_search(self) -> None:
        if self.full_search is None or self.full_search[0].is_alive():
            return
        answer = self.full_search[1]
        self.full_search = None
        if "error" in answer:
            raise answer["error"]
        self.completed = frozenset(answer["runs"] | self.recent)

    def completed_since(self, end: int | None) -> set[str]:
        """The completed runs that ended at `end` or later (all: None)."""
        query = "attributes.status = 'FINISHED'"
        if end is not None:
            query += f" AND attributes.end_time >= {end}"
        found = set()
        for run in self.search(query):
            self.newest_end = max(self.newest_end, run.info.end_time or 0)
            if run.info.run_id != self.run_id and STOPPED_TAG not in run.data.tags:
                found.add(run.info.run_id)
        return found

    def search(self, query: str) -> Iterator[Run]:
        token = None
        while True:
            page = retry_busy(functools.partial(self.page, query, token))
            yield from page
            token = page.token
            if not token:
                return

    def page(self, query: str, token: str | None) -> PagedList[Run]:
        return self.client.search_runs(
            [self.experiment_id], filter_string=query, max_results=10_000, page_token=token
        )

    def fetch(self, metric: str, runs: list[str]) -> pl.DataFrame:
        """The runs' points, each run's in MLflow's order (by timestamp: a
        step logged twice keeps its later value)."""
        parts = [
            self.fetch_some(metric, runs[start : start + self.BULK_RUNS])
            for start in range(0, len(runs), self.BULK_RUNS)
        ]
        return pl.concat(parts) if parts else pl.DataFrame(schema=POINTS)

    def fetch_some(self, metric: str, runs: list[str]) -> pl.DataFrame:
        """In one bulk request; a response cut at its limit is asked again
        in halves, a single run's through the client's paged history (as is
        every run's when the server has no bulk endpoint: MLflow's REST API
        proper reads one run's history a request)."""
        rows = self.fetch_bulk(metric, runs) if self.bulk else None
        if rows is not None and len(rows) < self.BULK_POINTS:
            return points_frame(rows)
        if rows is not None and len(runs) > 1:
            halves = (runs[: len(runs) // 2], runs[len(runs) // 2 :])
            return pl.concat([self.fetch_some(metric, half) for half in halves])
        return points_frame(
            (run_id, point.step, point.value, point.timestamp)
            for run_id in runs
            for point in retry_busy(
                functools.partial(self.client.get_metric_history, run_id, metric)
            )
        )

    def fetch_bulk(self, metric: str, runs: list[str]) -> list[tuple[str, int, float, int]] | None:
        """The points, or None when the server has no such endpoint."""
        from mlflow.utils.rest_utils import http_request

        store = self.client._tracking_client.store
        get_host_creds = getattr(store, "get_host_creds", None)
        if get_host_creds is None:
            self.bulk = False
            return None
        params = {"run_id": runs, "metric_key": metric, "max_results": self.BULK_POINTS}
        response = http_request(  # type: ignore[no-untyped-call]
            get_host_creds(), self.BULK_ENDPOINT, "GET", params=params
        )
        if response.status_code in (404, 405):  # an older server, or a proxy that hides it
            self.bulk = False
            return None
        response.raise_for_status()
        return [
            (m["run_id"], int(m["step"]), float(m["value"]), int(m["timestamp"]))
            for m in response.json().get("metrics", [])
        ]

    def close(self) -> None:
        for segments in self.segments.values():
            segments.save(self.completed)
            if segments.folder is not None:
                write_newest_end(segments.folder, self.newest_end)


NEWEST_END = "newest-end"


def read_newest_end(folder: Path) -> int | None:
    """The newest end of a completed run the cache's writers saw; None if
    the file is missing or damaged (a time too late would hide the runs
    that ended before it from the first searches)."""
    try:
        text, _, check = (folder / NEWEST_END).read_text().partition(" ")
        if check == newest_end_check(folder, text):
            return int(text)
    except (OSError, ValueError):
        pass
    return None


def newest_end_check(folder: Path, text: str) -> str:
    return f"{zlib.crc32(f'{FORMAT} {folder.name} {text}'.encode()):08x}"


def write_newest_end(folder: Path, newest_end: int) -> None:
    """The newest of this process's and the file's. Two writers at once may
    leave the older: later processes then search further back (no harm)."""
    newest = max(newest_end, read_newest_end(folder) or 0)
    partial = folder / f".{NEWEST_END}.{uuid.uuid4().hex}.partial"
    try:
        partial.write_text(f"{newest} {newest_end_check(folder, str(newest))}")
        partial.replace(folder / NEWEST_END)
    except OSError:
        partial.unlink(missing_ok=True)


def points_frame(rows: Iterable[tuple[str, int, float, int]]) -> pl.DataFrame:
    """Points as `Segment.of` takes them: each run's in timestamp order (a
    stable sort keeps MLflow's order of points logged at one timestamp)."""
    schema = {"run_uuid": pl.String, "step": pl.Int64, "value": pl.Float64, "timestamp": pl.Int64}
    points = pl.DataFrame(list(rows), schema=schema, orient="row")
    return points.sort("run_uuid", "timestamp", maintain_order=True).drop("timestamp")


def client_cache_folder(uri: str, experiment_id: str, metric: str) -> Path | None:
    """In the user's cache folder (None when the user has none); named by the
    tracking URI (hashed: it may hold a password), the experiment and the metric."""
    root = user_cache_folder()
    if root is None:
        return None
    key = hashlib.sha256(f"{uri}\0{experiment_id}\0{metric}\0{FORMAT}".encode()).hexdigest()
    return root / "histories" / key[:32]


def unreachable(uri: str, error: Exception) -> HydraflowError:
    """A server gone mid-sweep: one line, where a traceback would say no more."""
    return HydraflowError(
        f"early stopping could not read the completed runs from the tracking server "
        f"{masked(uri)}: {why(error)}"
    )


def open_histories(run: Run, client: MlflowClient) -> Histories:
    experiment_id, run_id = run.info.experiment_id, run.info.run_id
    path = sqlite_path(str(client.tracking_uri))
    if path is not None:
        return SqliteHistories(path, experiment_id, run_id)
    return ClientHistories(client, experiment_id, run_id)

//! The PyO3 module `hydraflow._core`: a thin binding over the pure core.

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::grammar::{sweep, ulid, SweepError};
use crate::store::pages::{self as sqlite, Cell, Selection};
use crate::store::{self, shape};

create_exception!(
    hydraflow._core,
    SweepSyntaxError,
    PyValueError,
    "A sweep string breaks the grammar. Attributes: argument, position, reason."
);

create_exception!(
    hydraflow._core,
    SqliteFileError,
    pyo3::exceptions::PyOSError,
    "A SQLite file StoreSnapshot cannot read. Attributes: unsupported (SQLite itself can read it), moved (the log changed underneath: read again)."
);

fn to_py_err(py: Python<'_>, err: SweepError) -> PyErr {
    let exception = SweepSyntaxError::new_err(err.to_string());
    if let Err(failure) = set_details(exception.value(py), &err) {
        return failure;
    }
    exception
}

fn set_details(
    value: &Bound<'_, pyo3::exceptions::PyBaseException>,
    err: &SweepError,
) -> PyResult<()> {
    value.setattr("argument", &err.argument)?;
    value.setattr("position", err.position())?;
    value.setattr("reason", &err.reason)
}

/// Arguments as Python passed them: one string to split, or a sequence.
enum Arguments {
    Text(String),
    Listed(Vec<String>),
}

impl Arguments {
    fn extract(args: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(text) = args.cast::<PyString>() {
            return Ok(Arguments::Text(text.to_str()?.to_owned()));
        }
        let listed =
            args.try_iter()?.map(|item| item?.extract::<String>()).collect::<PyResult<_>>()?;
        Ok(Arguments::Listed(listed))
    }

    /// Runs `work` on the split arguments without holding the GIL.
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        work: impl FnOnce(&[&str]) -> Result<T, SweepError> + Send,
    ) -> PyResult<T> {
        let result = py.detach(|| match self {
            Arguments::Text(text) => sweep::split(text).and_then(|split| work(&split)),
            Arguments::Listed(items) => work(&items.iter().map(String::as_str).collect::<Vec<_>>()),
        });
        result.map_err(|err| to_py_err(py, err))
    }
}

/// Walks the cartesian product of per-argument alternatives, first slowest,
/// holding each distinct value once as a shared Python string.
struct Grid {
    options: Vec<Vec<Py<PyString>>>,
    indices: Vec<usize>,
    remaining: u128,
}

impl Grid {
    fn new(py: Python<'_>, alternatives: Vec<Vec<String>>) -> Self {
        let remaining = alternatives.iter().map(|o| o.len() as u128).product();
        let options: Vec<Vec<Py<PyString>>> = alternatives
            .into_iter()
            .map(|values| values.iter().map(|v| PyString::new(py, v).unbind()).collect())
            .collect();
        let indices = vec![0; options.len()];
        Grid { options, indices, remaining }
    }

    fn next_row<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let row = self.options.iter().zip(&self.indices).map(|(values, &i)| values[i].bind(py));
        let list = PyList::new(py, row)?;
        self.remaining -= 1;
        for (index, values) in self.indices.iter_mut().zip(&self.options).rev() {
            *index += 1;
            if *index < values.len() {
                break;
            }
            *index = 0;
        }
        Ok(Some(list))
    }
}

/// Runs `build` with Python's cyclic garbage collector paused: allocating a
/// million lists would otherwise trigger it again and again for nothing.
fn with_gc_paused<T>(py: Python<'_>, build: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    let gc = py.import("gc")?;
    let was_enabled = gc.call_method0("isenabled")?.is_truthy()?;
    if was_enabled {
        gc.call_method0("disable")?;
    }
    let result = build();
    if was_enabled {
        gc.call_method0("enable")?;
    }
    result
}

/// Expands `each` arguments: one list of overrides per combination.
#[pyfunction]
#[pyo3(signature = (args, /))]
fn expand<'py>(py: Python<'py>, args: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
    let alternatives = Arguments::extract(args)?.run(py, |arguments| {
        sweep::check_grid(arguments)?;
        sweep::alternatives(arguments)
    })?;
    let mut grid = Grid::new(py, alternatives);
    with_gc_paused(py, || {
        let outer = PyList::empty(py);
        while grid.remaining > 0 {
            if let Some(row) = grid.next_row(py)? {
                outer.append(row)?;
            }
        }
        Ok(outer)
    })
}

/// Collects `all` arguments: one `KEY=v1,v2,...` per argument.
#[pyfunction]
#[pyo3(signature = (args, /))]
fn collect(py: Python<'_>, args: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    Arguments::extract(args)?.run(py, sweep::collect)
}

/// The number of combinations `expand` would make, without making them.
#[pyfunction]
#[pyo3(signature = (args, /))]
fn count(py: Python<'_>, args: &Bound<'_, PyAny>) -> PyResult<u128> {
    Arguments::extract(args)?.run(py, sweep::count)
}

/// A lazy `expand`: yields one combination at a time.
#[pyfunction]
#[pyo3(signature = (args, /))]
fn iter_expand(py: Python<'_>, args: &Bound<'_, PyAny>) -> PyResult<SweepIterator> {
    let alternatives = Arguments::extract(args)?.run(py, sweep::alternatives)?;
    Ok(SweepIterator { grid: Grid::new(py, alternatives) })
}

/// The values of one value list, optionally multiplied by a scale token.
#[pyfunction]
#[pyo3(signature = (values, scale = ""))]
fn expand_values(py: Python<'_>, values: &str, scale: &str) -> PyResult<Vec<String>> {
    py.detach(|| sweep::expand_values(values, scale)).map_err(|err| to_py_err(py, err))
}

/// Splits a sweep string into arguments, keeping quotes.
#[pyfunction]
#[pyo3(signature = (text, /))]
fn split(py: Python<'_>, text: &str) -> PyResult<Vec<String>> {
    let split = sweep::split(text).map_err(|err| to_py_err(py, err))?;
    Ok(split.into_iter().map(str::to_owned).collect())
}

/// A new ULID, greater than every earlier one from this process.
#[pyfunction(name = "ulid")]
fn new_ulid() -> String {
    ulid::ulid()
}

/// `n` new ULIDs, strictly increasing.
#[pyfunction(name = "ulids")]
#[pyo3(signature = (n, /))]
fn new_ulids(n: usize) -> Vec<String> {
    ulid::ulids(n)
}

/// A SQLite store read from its pages at the snapshot of the caller's read
/// transaction: made before the transaction begins, pinned after its first
/// read (see `store::Snapshot`).
#[pyclass(module = "hydraflow._core")]
struct StoreSnapshot {
    snapshot: store::Snapshot,
}

#[pymethods]
impl StoreSnapshot {
    #[new]
    #[pyo3(signature = (path, /))]
    fn new(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        let snapshot = store::Snapshot::open(&path).map_err(|err| sqlite_error(py, &err))?;
        Ok(StoreSnapshot { snapshot })
    }

    fn pin(&mut self, py: Python<'_>) -> PyResult<()> {
        self.snapshot.pin().map_err(|err| sqlite_error(py, &err))
    }

    fn check(&self, py: Python<'_>) -> PyResult<()> {
        self.snapshot.check().map_err(|err| sqlite_error(py, &err))
    }

    /// Selected columns of every row of the table rooted at page `root`:
    /// one list per column.
    #[pyo3(signature = (root, columns, /, *, key_column = None, exact = Vec::new(), prefixes = Vec::new()))]
    fn read_table(
        &self,
        py: Python<'_>,
        root: u32,
        columns: Vec<usize>,
        key_column: Option<usize>,
        exact: Vec<String>,
        prefixes: Vec<String>,
    ) -> PyResult<Vec<Py<PyList>>> {
        let selection = Selection { columns, key_column, exact, prefixes };
        let mut lists: Vec<Vec<Bound<'_, PyAny>>> = vec![Vec::new(); selection.columns.len()];
        let mut interned: Vec<Interned<'_>> =
            (0..lists.len()).map(|_| Interned::default()).collect();
        // Python objects are made as the pages are read: no copy of the cells.
        let read = self.snapshot.visit(root, &selection, |row| -> Result<(), TableError> {
            for ((list, cell), interned) in lists.iter_mut().zip(row).zip(&mut interned) {
                list.push(interned.object(py, cell)?);
            }
            Ok(())
        });
        read.map_err(|err| match err {
            TableError::Read(err) => sqlite_error(py, &err),
            TableError::Python(err) => err,
        })?;
        lists.into_iter().map(|items| Ok(PyList::new(py, items)?.unbind())).collect()
    }
}

enum TableError {
    Read(sqlite::ReadError),
    Python(PyErr),
}

impl From<sqlite::ReadError> for TableError {
    fn from(err: sqlite::ReadError) -> Self {
        TableError::Read(err)
    }
}

impl From<PyErr> for TableError {
    fn from(err: PyErr) -> Self {
        TableError::Python(err)
    }
}

fn sqlite_error(py: Python<'_>, err: &sqlite::ReadError) -> PyErr {
    let exception = SqliteFileError::new_err(err.to_string());
    let value = exception.value(py);
    let unsupported = matches!(err, sqlite::ReadError::Unsupported(_));
    let moved = matches!(err, sqlite::ReadError::Moved);
    match value.setattr("unsupported", unsupported).and(value.setattr("moved", moved)) {
        Ok(()) => exception,
        Err(failure) => failure,
    }
}

/// Python objects for the cells of one column, reusing the string objects of
/// its last few short texts: keys, statuses and the ids of a run's rows
/// repeat nearby. A column where that rarely pays stops looking.
#[derive(Default)]
struct Interned<'py> {
    recent: Vec<Bound<'py, PyString>>,
    next: usize,
    hits: usize,
    misses: usize,
}

impl<'py> Interned<'py> {
    const MAX_LEN: usize = 64;
    const KEPT: usize = 4;

    fn object(&mut self, py: Python<'py>, cell: &Cell<'_>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match *cell {
            Cell::Null => py.None().into_bound(py),
            Cell::Integer(n) => n.into_pyobject(py)?.into_any(),
            Cell::Real(x) => x.into_pyobject(py)?.into_any(),
            Cell::Text(bytes) if bytes.len() <= Self::MAX_LEN && self.pays() => {
                self.text(py, bytes).into_any()
            }
            Cell::Text(bytes) => PyString::new(py, &String::from_utf8_lossy(bytes)).into_any(),
            Cell::Blob(bytes) => PyBytes::new(py, bytes).into_any(),
        })
    }

    fn pays(&self) -> bool {
        self.misses < 1024 || self.hits * 8 >= self.misses
    }

    fn text(&mut self, py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
        let same =
            |kept: &&Bound<'py, PyString>| kept.to_str().is_ok_and(|t| t.as_bytes() == bytes);
        if let Some(kept) = self.recent.iter().find(same) {
            self.hits += 1;
            return kept.clone();
        }
        self.misses += 1;
        let text = PyString::new(py, &String::from_utf8_lossy(bytes));
        if self.recent.len() < Self::KEPT {
            self.recent.push(text.clone());
        } else {
            self.recent[self.next] = text.clone();
            self.next = (self.next + 1) % Self::KEPT;
        }
        text
    }
}

/// The index of the first of `texts` (JSON documents) of each distinct
/// shape: keys and value types, values left out. Inferring a polars type
/// from these documents alone gives the type of them all.
#[pyfunction]
#[pyo3(signature = (texts, /))]
fn json_representatives(texts: Vec<Option<Bound<'_, PyString>>>) -> PyResult<Vec<usize>> {
    let borrowed = texts
        .iter()
        .map(|text| text.as_ref().map(|t| t.to_str().map(str::as_bytes)).transpose())
        .collect::<PyResult<Vec<_>>>()?;
    Ok(shape::representatives(borrowed))
}

/// The iterator returned by `iter_expand`.
#[pyclass(module = "hydraflow._core")]
struct SweepIterator {
    grid: Grid,
}

#[pymethods]
impl SweepIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        self.grid.next_row(py)
    }

    fn __length_hint__(&self) -> usize {
        usize::try_from(self.grid.remaining).unwrap_or(usize::MAX)
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("SweepSyntaxError", m.py().get_type::<SweepSyntaxError>())?;
    m.add("SqliteFileError", m.py().get_type::<SqliteFileError>())?;
    m.add_class::<SweepIterator>()?;
    m.add_class::<StoreSnapshot>()?;
    m.add_function(wrap_pyfunction!(expand, m)?)?;
    m.add_function(wrap_pyfunction!(collect, m)?)?;
    m.add_function(wrap_pyfunction!(count, m)?)?;
    m.add_function(wrap_pyfunction!(iter_expand, m)?)?;
    m.add_function(wrap_pyfunction!(expand_values, m)?)?;
    m.add_function(wrap_pyfunction!(split, m)?)?;
    m.add_function(wrap_pyfunction!(new_ulid, m)?)?;
    m.add_function(wrap_pyfunction!(new_ulids, m)?)?;
    m.add_function(wrap_pyfunction!(json_representatives, m)?)?;
    let public = [
        "SqliteFileError",
        "StoreSnapshot",
        "SweepIterator",
        "SweepSyntaxError",
        "collect",
        "count",
        "expand",
        "expand_values",
        "iter_expand",
        "json_representatives",
        "split",
        "ulid",
        "ulids",
    ];
    m.add("__all__", public)?;
    Ok(())
}

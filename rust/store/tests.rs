use super::*;
use crate::rng::Rng;

/// One cell's value, with SQLite's storage classes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// Every selected column of the table rooted at `root`, in rowid order.
fn scan<P: Pages>(db: &Database<P>, root: u32, selection: &Selection) -> Result<Vec<Vec<Value>>> {
    let mut columns: Vec<Vec<Value>> = vec![Vec::new(); selection.columns.len()];
    db.visit(root, selection, |row| -> Result<()> {
        for (column, cell) in columns.iter_mut().zip(row) {
            column.push(match *cell {
                Cell::Null => Value::Null,
                Cell::Integer(n) => Value::Integer(n),
                Cell::Real(x) => Value::Real(x),
                Cell::Text(bytes) => Value::Text(String::from_utf8_lossy(bytes).into_owned()),
                Cell::Blob(bytes) => Value::Blob(bytes.to_vec()),
            });
        }
        Ok(())
    })?;
    Ok(columns)
}

const TABLES: &[u8] = include_bytes!("testdata/tables.db");
const ROWS: i64 = 200;
const T_ROOT: u32 = 2;
const K_ROOT: u32 = 305;

fn database(bytes: &[u8]) -> Result<Database<Arc<[u8]>>> {
    Database::new(Arc::from(bytes), None, None)
}

fn select(columns: &[usize]) -> Selection {
    Selection { columns: columns.to_vec(), ..Selection::default() }
}

/// The row `testdata/make_sqlite.py` wrote for `id`, as SQLite stores it.
fn expected(id: i64) -> Vec<Value> {
    let body_len = usize::try_from(id * 37 % 1300).unwrap();
    let data_len = usize::try_from(id % 5).unwrap();
    vec![
        Value::Integer(id),
        Value::Integer(id - 100),
        Value::Integer((id * 7919).pow(3) - (1 << 40)),
        Value::Real(id as f64 + 0.5),
        // SQLite stores a whole REAL as an integer: the caller applies the affinity.
        Value::Integer(id),
        Value::Text(format!("name-{id}")),
        Value::Text("x".repeat(body_len)),
        if data_len == 0 { Value::Null } else { Value::Blob(vec![(id % 256) as u8; data_len]) },
        if id >= ROWS { Value::Text(format!("extra-{id}")) } else { Value::Null },
    ]
}

#[test]
fn reads_every_row_and_type_in_rowid_order() {
    let db = database(TABLES).unwrap();
    let columns = scan(&db, T_ROOT, &select(&[0, 1, 2, 3, 4, 5, 6, 7, 8])).unwrap();
    let ids: Vec<i64> = (0..ROWS + 20).filter(|id| id % 10 != 3 || *id >= ROWS).collect();
    assert_eq!(columns[0].len(), ids.len());
    for (row, &id) in ids.iter().enumerate() {
        let got: Vec<Value> = columns.iter().map(|column| column[row].clone()).collect();
        assert_eq!(got, expected(id), "row of id {id}");
    }
}

#[test]
fn selects_columns_in_the_order_asked() {
    let db = database(TABLES).unwrap();
    let columns = scan(&db, T_ROOT, &select(&[5, 0, 12])).unwrap();
    assert_eq!(columns[0][1], Value::Text("name-1".into()));
    assert_eq!(columns[1][1], Value::Integer(1));
    assert!(columns[2].iter().all(|v| *v == Value::Null), "a column past the record is null");
}

#[test]
fn keeps_only_rows_whose_key_matches() {
    let db = database(TABLES).unwrap();
    let selection = Selection {
        columns: vec![0, 1],
        key_column: Some(0),
        exact: vec!["a.config".into()],
        prefixes: vec!["a.choice.".into()],
    };
    let columns = scan(&db, K_ROOT, &selection).unwrap();
    let keys: Vec<&Value> = columns[0].iter().collect();
    assert_eq!(
        keys,
        [
            &Value::Text("a.config".into()),
            &Value::Text("a.choice.db".into()),
            &Value::Text("a.choice.model".into())
        ]
    );
    assert_eq!(columns[1][0], Value::Text("v-a.config".into()));
}

#[test]
fn refuses_what_it_cannot_read_faithfully() {
    let mut unknown = TABLES.to_vec();
    unknown[18] = 3;
    assert!(matches!(database(&unknown), Err(ReadError::Unsupported(_))));
    let mut utf16 = TABLES.to_vec();
    utf16[56..60].copy_from_slice(&2u32.to_be_bytes());
    assert!(matches!(database(&utf16), Err(ReadError::Unsupported(_))));
    assert!(matches!(database(b"not a database"), Err(ReadError::Io(_))));
    let mut text = TABLES.to_vec();
    text[..16].copy_from_slice(b"Not SQLite here!");
    assert!(matches!(database(&text), Err(ReadError::Corrupt { .. })));
}

#[test]
fn an_index_or_missing_page_is_an_error() {
    let db = database(TABLES).unwrap();
    assert!(matches!(scan(&db, 0, &select(&[0])), Err(ReadError::Corrupt { .. })));
    assert!(matches!(scan(&db, 10_000, &select(&[0])), Err(ReadError::Corrupt { .. })));
}

#[test]
fn a_cycle_in_the_tree_is_an_error_not_a_hang() {
    // Page 2 is the root of `t`: point its right child at itself.
    let mut looped = TABLES.to_vec();
    let root = 512;
    assert_eq!(looped[root], INTERIOR_TABLE);
    looped[root + 8..root + 12].copy_from_slice(&2u32.to_be_bytes());
    let db = database(&looped).unwrap();
    assert!(matches!(scan(&db, T_ROOT, &select(&[0])), Err(ReadError::Corrupt { .. })));
}

#[test]
fn damaged_files_never_panic() {
    let mut rng = Rng(0x5EED);
    let selection = Selection { columns: (0..10).collect(), ..Selection::default() };
    for _ in 0..5_000 {
        let mut bytes = TABLES.to_vec();
        for _ in 0..1 + rng.next() % 8 {
            let at = (rng.next() % bytes.len() as u64) as usize;
            bytes[at] = rng.next() as u8;
        }
        if rng.next() % 10 == 0 {
            bytes.truncate((rng.next() % bytes.len() as u64) as usize);
        }
        if let Ok(db) = database(&bytes) {
            let _ = scan(&db, T_ROOT, &selection);
            let _ = scan(&db, K_ROOT, &selection);
        }
    }
}

#[test]
fn varints_of_every_length() {
    assert_eq!(varint(&[0x7F]), Some((0x7F, 1)));
    assert_eq!(varint(&[0x81, 0x00]), Some((0x80, 2)));
    assert_eq!(varint(&[0xFF; 9]), Some((u64::MAX, 9)));
    assert_eq!(varint(&[0x81]), None);
    assert_eq!(signed(&[0xFF, 0xFE]), -2);
    assert_eq!(signed(&[0x7F, 0, 0, 0, 0, 0]), 0x7F00_0000_0000);
}

/// A write-ahead log holding `frames` (page number, commit size, content)
/// after `salt`, with SQLite's running checksums (little-endian words), and
/// the wal-index header SQLite would publish for its last frame.
fn wal_log(frames: &[(u32, u32, &[u8])], salt: [u8; 8]) -> (Vec<u8>, Published) {
    let mut log = Vec::new();
    log.extend(0x377f_0682u32.to_be_bytes());
    log.extend(3_007_000u32.to_be_bytes());
    log.extend(512u32.to_be_bytes());
    log.extend(0u32.to_be_bytes());
    log.extend(salt);
    let mut sum = wal::checksum(&log, (0, 0), false);
    log.extend(sum.0.to_be_bytes());
    log.extend(sum.1.to_be_bytes());
    for &(page, commit, content) in frames {
        let mut header = Vec::new();
        header.extend(page.to_be_bytes());
        header.extend(commit.to_be_bytes());
        sum = wal::checksum(&header, sum, false);
        sum = wal::checksum(content, sum, false);
        header.extend(salt);
        header.extend(sum.0.to_be_bytes());
        header.extend(sum.1.to_be_bytes());
        log.extend(header);
        log.extend(content);
    }
    let commit = frames.last().map_or(0, |frame| frame.1);
    (log, Published::new(frames.len() as u32, commit, salt, sum))
}

fn page(number: u32) -> &'static [u8] {
    let start = (number as usize - 1) * 512;
    &TABLES[start..start + 512]
}

fn in_wal_mode() -> Arc<[u8]> {
    let mut bytes = TABLES.to_vec();
    bytes[18] = 2;
    bytes[19] = 2;
    Arc::from(bytes)
}

fn with_log(log: Vec<u8>, published: Published) -> Result<Database<Arc<[u8]>>> {
    Database::new(in_wal_mode(), Some(Arc::from(log)), Some(published))
}

fn keys_at<P: Pages>(db: &Database<P>, root: u32) -> usize {
    scan(db, root, &select(&[0])).map(|columns| columns[0].len()).unwrap_or(usize::MAX)
}

#[test]
fn the_snapshots_frames_replace_the_file_pages() {
    // The log puts table k's root page where table t's root was.
    let (log, published) = wal_log(&[(T_ROOT, 305, page(K_ROOT))], *b"saltsalt");
    assert_eq!(keys_at(&with_log(log.clone(), published).unwrap(), T_ROOT), 6);
    // Copied back into the file (nBackfill = mxFrame): the log is not read.
    let mut backfilled = published;
    backfilled.backfilled = 1;
    assert_eq!(keys_at(&with_log(log, backfilled).unwrap(), T_ROOT), 200);
}

#[test]
fn commits_after_the_snapshot_are_not_read() {
    let frames = [(T_ROOT, 305, page(T_ROOT)), (T_ROOT, 305, page(K_ROOT))];
    let (log, newest) = wal_log(&frames, *b"saltsalt");
    let (_, first) = wal_log(&frames[..1], *b"saltsalt");
    assert_eq!(keys_at(&with_log(log.clone(), first).unwrap(), T_ROOT), 200);
    assert_eq!(keys_at(&with_log(log, newest).unwrap(), T_ROOT), 6);
}

#[test]
fn a_log_unlike_its_published_snapshot_has_moved() {
    let (log, published) = wal_log(&[(T_ROOT, 305, page(K_ROOT))], *b"saltsalt");
    let (_, other_salts) = wal_log(&[(T_ROOT, 305, page(K_ROOT))], *b"newsalts");
    let (_, uncommitted) = wal_log(&[(T_ROOT, 0, page(K_ROOT))], *b"saltsalt");
    let (_, longer) = wal_log(&[(3, 0, page(3)), (T_ROOT, 305, page(K_ROOT))], *b"saltsalt");
    for snapshot in [other_salts, uncommitted, longer] {
        assert!(matches!(with_log(log.clone(), snapshot), Err(ReadError::Moved)));
    }
    let mut damaged = log.clone();
    *damaged.last_mut().unwrap() ^= 1;
    assert!(matches!(with_log(damaged, published), Err(ReadError::Moved)));
    // A WAL database read without its wal-index: its snapshot is unknown.
    let no_index = Database::new(in_wal_mode(), Some(Arc::from(log.clone())), None);
    assert!(matches!(no_index, Err(ReadError::Unsupported(_))));
    // A log beside a database in rollback-journal mode is a leftover: ignored.
    let file: Arc<[u8]> = Arc::from(TABLES);
    let db = Database::new(file, Some(Arc::from(log)), Some(published)).unwrap();
    assert_eq!(keys_at(&db, T_ROOT), 200);
}

/// A log that a writer restarts (new salts, frames overwritten from the
/// start) once `restart` is set: the race of a reader whose transaction
/// holds SQLite's read mark 0, which does not keep the log.
struct Restarted {
    before: Vec<u8>,
    after: Vec<u8>,
    restart: std::sync::atomic::AtomicBool,
}

impl Pages for Restarted {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let now = if self.restart.load(std::sync::atomic::Ordering::SeqCst) {
            &self.after
        } else {
            &self.before
        };
        now[..].read_exact_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.before.len().max(self.after.len()) as u64)
    }
}

/// The database file, or the log that restarts: one page source type.
enum Source {
    File(Arc<[u8]>),
    Log(Arc<Restarted>),
}

impl Pages for Source {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Source::File(bytes) => bytes.read_exact_at(buf, offset),
            Source::Log(log) => log.read_exact_at(buf, offset),
        }
    }

    fn size(&self) -> io::Result<u64> {
        match self {
            Source::File(bytes) => bytes.size(),
            Source::Log(log) => log.size(),
        }
    }
}

/// A database whose log will restart as `after` when told.
fn restarted(after: Vec<u8>) -> (Database<Source>, Arc<Restarted>) {
    let (before, published) = wal_log(&[(T_ROOT, 305, page(K_ROOT))], *b"saltsalt");
    let log = Arc::new(Restarted { before, after, restart: false.into() });
    let wal = Source::Log(Arc::clone(&log));
    (Database::new(Source::File(in_wal_mode()), Some(wal), Some(published)).unwrap(), log)
}

#[test]
fn a_log_restarted_between_index_and_read_is_moved_not_damage() {
    // The new log's first frame holds another page (a leaf of `k`, or page 3).
    for (page_number, content) in [(K_ROOT, page(K_ROOT)), (3, page(3)), (T_ROOT, page(4))] {
        let (after, _) = wal_log(&[(page_number, 305, content)], *b"newsalts");
        let (db, log) = restarted(after);
        log.restart.store(true, std::sync::atomic::Ordering::SeqCst);
        let read = scan(&db, T_ROOT, &select(&[0]));
        assert!(matches!(read, Err(ReadError::Moved)), "{page_number}: {read:?}");
    }
}

#[test]
fn a_log_restarted_after_the_read_fails_the_check() {
    let (after, _) = wal_log(&[], *b"newsalts");
    let (db, log) = restarted(after);
    assert_eq!(keys_at(&db, T_ROOT), 6);
    assert!(db.check_log().is_ok());
    log.restart.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(db.check_log(), Err(ReadError::Moved)));
}

#[test]
fn a_damaged_log_never_panics() {
    let mut rng = Rng(0x1057);
    let (log, published) = wal_log(&[(T_ROOT, 0, page(K_ROOT)), (3, 305, page(4))], *b"saltsalt");
    for _ in 0..2_000 {
        let mut bytes = log.clone();
        for _ in 0..1 + rng.next() % 4 {
            let at = (rng.next() % bytes.len() as u64) as usize;
            bytes[at] = rng.next() as u8;
        }
        bytes.truncate(bytes.len() - (rng.next() % 600) as usize);
        if let Ok(db) = with_log(bytes, published) {
            let _ = scan(&db, T_ROOT, &select(&[0, 1, 2]));
        }
    }
}

/// A `-shm` file's start as SQLite writes it: two copies of the wal-index
/// header (host byte order, checksummed), then `nBackfill`.
fn wal_index(max_frame: u32, page_count: u32, backfilled: u32) -> Vec<u8> {
    let mut header = [0u8; 48];
    header[12] = 1;
    header[16..20].copy_from_slice(&max_frame.to_ne_bytes());
    header[20..24].copy_from_slice(&page_count.to_ne_bytes());
    let sum = wal::checksum(&header[..40], (0, 0), cfg!(target_endian = "big"));
    header[40..44].copy_from_slice(&sum.0.to_ne_bytes());
    header[44..48].copy_from_slice(&sum.1.to_ne_bytes());
    let mut shm = [header, header].concat();
    shm.extend(backfilled.to_ne_bytes());
    shm.resize(32_768, 0);
    shm
}

#[test]
fn the_wal_index_header_tells_the_snapshot() {
    let shm = wal_index(7, 305, 3);
    let published = wal::published(&shm[..]).unwrap().unwrap();
    assert_eq!((published.max_frame, published.page_count, published.backfilled), (7, 305, 3));
    assert!(published.needs_log());
    let copied_back = wal::published(&wal_index(7, 305, 7)[..]).unwrap().unwrap();
    assert!(!copied_back.needs_log());
    assert!(published.same_commit(&copied_back), "nBackfill is no commit");
    let next = wal::published(&wal_index(8, 305, 3)[..]).unwrap().unwrap();
    assert!(!published.same_commit(&next));
    assert!(wal::published(&shm[..50]).unwrap().is_none(), "no reader opened the log yet");
    // A writer between the two copies, or a torn copy: not a snapshot.
    let mut torn = shm.clone();
    torn[48 + 16] ^= 1;
    assert!(matches!(wal::published(&torn[..]), Err(ReadError::Moved)));
    let mut unsummed = shm;
    unsummed[16] ^= 1;
    unsummed[48 + 16] ^= 1;
    assert!(matches!(wal::published(&unsummed[..]), Err(ReadError::Moved)));
}

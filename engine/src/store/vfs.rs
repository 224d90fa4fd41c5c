//! Tests of the store's SQLite VFS, `c/wal_coalesce.c` (built by `build.rs`): the default VFS of
//! the bundled SQLite, which writes a WAL commit to the file in one write call instead of two a
//! page. What it does and why is said in the C file.
//!
//! The write calls are counted by the thread's `syscw` in `/proc/thread-self/io`: a rusqlite
//! connection does its IO on the calling thread.

use rusqlite::{Connection, OpenFlags};

/// The name the VFS registers under.
const VFS: &str = "eventbus-wal";

/// Write calls this thread has made so far.
fn write_calls() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines().find_map(|l| l.strip_prefix("syscw: ")).unwrap().trim().parse().unwrap()
}

/// A new WAL database in `dir` with 1 KiB pages and no automatic checkpoint (the checkpoint's
/// writes are not the WAL's), opened with `vfs` (the default if none), and a table of 900-byte
/// rows (a page each).
fn open(dir: &std::path::Path, vfs: Option<&str>) -> Connection {
    let path = dir.join("t.db");
    let conn = match vfs {
        Some(vfs) => {
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
            Connection::open_with_flags_and_vfs(path, flags, vfs).unwrap()
        }
        None => Connection::open(path).unwrap(),
    };
    conn.execute_batch(
        "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
         PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (n INTEGER PRIMARY KEY, body BLOB NOT NULL);",
    )
    .unwrap();
    conn
}

/// Inserts rows `from..to` in one transaction; returns the write calls it made.
fn insert(conn: &Connection, from: i64, to: i64) -> u64 {
    let before = write_calls();
    conn.execute(
        "WITH RECURSIVE s(n) AS (SELECT ?1 UNION ALL SELECT n + 1 FROM s WHERE n + 1 < ?2) \
         INSERT INTO t SELECT n, randomblob(900) FROM s",
        (from, to),
    )
    .unwrap();
    write_calls() - before
}

/// Rows of `t` and the integrity check, read by another connection (as the store's readers do).
fn read_back(dir: &std::path::Path) -> (i64, String) {
    let conn = Connection::open(dir.join("t.db")).unwrap();
    let rows = conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
    let check = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    (rows, check)
}

/// It is the default VFS: a connection that names none (as sqlx's and the writer's do) writes
/// a commit in one call.
#[test]
fn the_store_vfs_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(dir.path(), None);
    assert_eq!(insert(&conn, 1, 21), 1);
}

/// A commit of 20 rows (a page each, and the pages above them) is one write call, where the
/// platform's VFS makes two a frame; another connection reads every row.
#[test]
fn a_commit_is_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(dir.path(), Some(VFS));
    assert_eq!(insert(&conn, 1, 21), 1);
    assert_eq!(insert(&conn, 21, 41), 1);
    assert_eq!(read_back(dir.path()), (40, "ok".to_owned()));

    let plain = tempfile::tempdir().unwrap();
    let conn = open(plain.path(), Some("unix"));
    let calls = insert(&conn, 1, 21);
    assert!(calls >= 42, "the platform's VFS: two writes a frame, {calls}");
}

/// A commit larger than a run (64 KiB) is written in runs of at most 64 KiB, in order: 300
/// pages of 1 KiB and their headers (some 307 KiB) take 5 or 6 writes; the rows read back whole.
#[test]
fn a_large_commit_is_written_in_runs() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(dir.path(), Some(VFS));
    let calls = insert(&conn, 1, 301);
    let frames_bytes: u64 = 300 * (1024 + 24);
    let runs = frames_bytes.div_ceil(64 * 1024);
    assert!((runs..=runs + 1).contains(&calls), "{calls} writes, runs of 64 KiB: {runs}");
    assert_eq!(read_back(dir.path()), (300, "ok".to_owned()));
}

/// A transaction larger than the page cache spills frames into the WAL before it commits and
/// reads them back: the reads see the gathered writes.
#[test]
fn a_transaction_reads_back_what_it_spilled() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(dir.path(), Some(VFS));
    conn.execute_batch("PRAGMA cache_size = 20").unwrap();
    conn.execute_batch("BEGIN").unwrap();
    insert(&conn, 1, 400);
    let sum: i64 = conn.query_row("SELECT SUM(length(body)) FROM t", [], |r| r.get(0)).unwrap();
    assert_eq!(sum, 399 * 900);
    conn.execute("UPDATE t SET body = randomblob(800) WHERE n % 3 = 0", []).unwrap();
    conn.execute_batch("COMMIT").unwrap();
    assert_eq!(read_back(dir.path()), (399, "ok".to_owned()));
    let after = Connection::open(dir.path().join("t.db")).unwrap();
    let short: i64 = after.query_row("SELECT COUNT(*) FROM t WHERE length(body) = 800", [], |r| r.get(0)).unwrap();
    assert_eq!(short, 133);
}

/// A checkpoint that empties the WAL, and commits after it that write the WAL from its start
/// again: two writes, since SQLite syncs a new WAL header before it writes frames after it (so
/// the header is sent alone), then one a commit; every row is in the database file afterwards.
#[test]
fn commits_after_a_truncating_checkpoint_start_the_wal_again() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(dir.path(), Some(VFS));
    for round in 0..3 {
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!(std::fs::metadata(dir.path().join("t.db-wal")).unwrap().len(), 0);
        let first = round * 60 + 1;
        assert_eq!(insert(&conn, first, first + 50), 2, "the header, then the commit");
        assert_eq!(insert(&conn, first + 50, first + 60), 1);
    }
    assert_eq!(read_back(dir.path()), (180, "ok".to_owned()));
}

/// What a crash leaves: the database and WAL files as they are right after a commit returned,
/// copied while the connection stays open (so nothing it still holds reaches them), opened by
/// another connection, which rebuilds the wal-index from the WAL and keeps its frames up to the
/// last commit whose checksums hold. A transaction that spilled frames and then changed their
/// pages again rewrites those frames in place and, at its commit, their headers' checksums
/// (after the commit frame): those must be in the file too.
#[test]
fn a_commit_that_rewrote_spilled_frames_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(dir.path(), Some(VFS));
    insert(&conn, 1, 11);
    conn.execute_batch("PRAGMA cache_size = 20").unwrap();
    conn.execute_batch("BEGIN").unwrap();
    insert(&conn, 11, 400);
    conn.execute("UPDATE t SET body = randomblob(800) WHERE n % 3 = 0", []).unwrap();
    conn.execute_batch("COMMIT").unwrap();

    let crashed = tempfile::tempdir().unwrap();
    for file in ["t.db", "t.db-wal"] {
        std::fs::copy(dir.path().join(file), crashed.path().join(file)).unwrap();
    }
    let after = Connection::open(crashed.path().join("t.db")).unwrap();
    let short: i64 = after.query_row("SELECT COUNT(*) FROM t WHERE length(body) = 800", [], |r| r.get(0)).unwrap();
    assert_eq!(short, 133);
    assert_eq!(read_back(crashed.path()), (399, "ok".to_owned()));
    drop(conn);
}

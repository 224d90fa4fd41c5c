//! The first connection of [`Store::open`](super::Store::open), made before the pool so that
//! a database that cannot be opened says why, once: the pool would retry a refused connection
//! until its timeout and then report only "pool timed out", and SQLite says "unable to open
//! database file" without the path or the operating system's reason. A new SQLite file gets its
//! page size here, before anything is written to it ([`set_up_new_file`]).

use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::AnyConnection;
use sqlx::Connection;
use sqlx::sqlite::SqliteConnectOptions;

use super::config::Backend;
use super::error::connect_failed;
use crate::error::{Error, Result};

/// Connects once to `url` and closes the connection; a SQLite file is first checked with the
/// file system ([`check_sqlite_file`]), and set up with `page_size` if it is new.
pub(super) async fn first_connection(backend: Backend, url: &str, timeout: Duration, page_size: u32) -> Result<()> {
    if backend == Backend::Sqlite && !url.contains(":memory:") && !url.contains("mode=memory") {
        let options = SqliteConnectOptions::from_str(url)?;
        let path = options.get_filename();
        check_sqlite_file(path)?;
        set_up_new_file(path, page_size)?;
    }
    let connect = AnyConnection::connect(url);
    let conn = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| Error::Unavailable(format!("no answer from the database within {timeout:?}").into()))?
        .map_err(connect_failed)?;
    let _ = conn.close().await;
    Ok(())
}

/// Checks that a SQLite file can be opened for writing, or created, and names the operating
/// system's reason when not (a missing directory, a read-only file or directory).
fn check_sqlite_file(path: &Path) -> Result<()> {
    let failed = |what: String, e: io::Error| Error::Unavailable(format!("{what}: {e}").into());
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            std::fs::metadata(dir).map_err(|e| failed(format!("directory {}", dir.display()), e))?;
            // An empty file is an empty SQLite database.
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(failed(format!("cannot create the file in {}", dir.display()), e)),
            }
        }
        Err(e) => Err(failed("cannot open the file for writing".to_owned(), e)),
    }
}

/// Gives an empty SQLite file (a new database) its page size and WAL mode, which fixes the page
/// size; an existing database keeps the page size it was created with.
///
/// The page size decides how many bytes a commit writes: every page a commit touches is written
/// whole to the WAL (and again at the checkpoint), and a publish touches the last leaf of a few
/// b-trees. With 1 KiB pages a paced publish writes less than half the bytes it writes with
/// SQLite's default of 4 KiB, for a database about a third larger (an event of more than about
/// 230 bytes keeps its tail in overflow pages).
fn set_up_new_file(path: &Path, page_size: u32) -> Result<()> {
    let failed = |e: rusqlite::Error| Error::Unavailable(format!("setting up {}: {e}", path.display()).into());
    if std::fs::metadata(path).map(|m| m.len()).unwrap_or(1) != 0 {
        return Ok(());
    }
    let conn = rusqlite::Connection::open(path).map_err(failed)?;
    conn.execute_batch(&format!("PRAGMA page_size={page_size}; PRAGMA journal_mode=WAL")).map_err(failed)?;
    conn.close().map_err(|(_, e)| failed(e))
}

/// Checks a page size for SQLite: a power of two from 512 to 65536.
pub(crate) fn check_page_size(page_size: u32) -> Result<()> {
    if (512..=65536).contains(&page_size) && page_size.is_power_of_two() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(vec![crate::error::FieldViolation::new(
            "sqlite_page_size",
            format!("must be a power of two from 512 to 65536, not {page_size}"),
        )]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_files_that_cannot_be_written_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir/x.db");
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, b"").unwrap();
        let cases = [
            (
                missing,
                format!(
                    "directory {}: No such file or directory (os error 2)",
                    dir.path().join("no/such/dir").display()
                ),
            ),
            (not_a_dir.join("x.db"), "cannot open the file for writing: Not a directory (os error 20)".to_owned()),
        ];
        for (path, message) in cases {
            let error = check_sqlite_file(&path).unwrap_err();
            assert_eq!(error.to_string(), format!("database unavailable: {message}"), "{}", path.display());
        }
        let fresh = dir.path().join("new.db");
        check_sqlite_file(&fresh).unwrap();
        assert!(fresh.exists(), "created, empty");
        check_sqlite_file(&fresh).unwrap();
    }

    #[test]
    fn a_new_file_gets_the_page_size_and_an_existing_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let page_size = |path: &Path| -> i64 {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap()
        };
        check_sqlite_file(&path).unwrap();
        set_up_new_file(&path, 1024).unwrap();
        assert_eq!(page_size(&path), 1024);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        drop(conn);
        set_up_new_file(&path, 8192).unwrap();
        assert_eq!(page_size(&path), 1024, "an existing database keeps its page size");
        for bad in [0, 256, 1000, 131_072] {
            let e = check_page_size(bad).unwrap_err();
            assert!(e.to_string().contains("sqlite_page_size"), "{e}");
        }
        for good in [512, 1024, 4096, 65536] {
            check_page_size(good).unwrap();
        }
    }
}

/// Migrations that copy tables keep every row as it was.
#[cfg(test)]
#[cfg(feature = "testkit")]
mod migrations {
    use rusqlite::types::Value;
    use sqlx::SqlitePool;

    use super::*;
    use crate::store::{Store, StoreConfig};
    use crate::testkit::TestDatabase;

    fn rows(conn: &rusqlite::Connection, sql: &str) -> Vec<Vec<Value>> {
        let mut q = conn.prepare(sql).unwrap();
        let columns = q.column_count();
        q.query_map([], |r| (0..columns).map(|i| r.get::<_, Value>(i)).collect())
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// Migration 0008 moves events and notifications from WITHOUT ROWID tables (which hold whole
    /// rows in their interior pages, so that every step down an insert read an event's overflow
    /// page) into rowid tables: every row and column copied, the same unique keys enforced, and
    /// the copy out of the WAL once the store is open.
    #[tokio::test]
    async fn events_and_notifications_move_into_rowid_tables_whole() {
        let db = TestDatabase::fresh(Backend::Sqlite).await;
        let path = db.url.trim_start_matches("sqlite://").to_owned();
        check_sqlite_file(Path::new(&path)).unwrap();
        set_up_new_file(Path::new(&path), 1024).unwrap();
        let pool = SqlitePool::connect(&db.url).await.unwrap();
        let mut before = sqlx::migrate!("migrations/sqlite");
        before.migrations = before.migrations.iter().filter(|m| m.version < 8).cloned().collect::<Vec<_>>().into();
        before.run(&pool).await.unwrap();
        pool.close().await;

        // Rows of the sizes the store writes (a 700-byte event, a 300-byte notification), in
        // three namespaces; every 100th notification replayed.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 3000) \
             INSERT INTO events (namespace, seq, source, id, type, subject, received_us, body) \
             SELECT 'ns' || (n % 3), n, '/orders', 'id-' || n, 'order.created', \
                 CASE WHEN n % 2 = 0 THEN 'order-' || n END, 1000 + n, hex(randomblob(300)) FROM s; \
             WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 3000) \
             INSERT INTO notifications (namespace, seq, fire_id, kind, listener_id, target, correlation, \
                 event_seqs, created_us, trace, replayed) \
             SELECT 'ns' || (n % 3), n, 'fire-' || n, 'start', 'listener-' || (n % 7), 'wf', '[]', \
                 '[' || n || ']', 1000 + n, hex(randomblob(100)), n % 100 = 0 FROM s;",
        )
        .unwrap();
        let events = "SELECT * FROM events ORDER BY namespace, seq";
        let notifications = "SELECT * FROM notifications ORDER BY namespace, seq";
        let (events_before, notifications_before) = (rows(&conn, events), rows(&conn, notifications));
        assert_eq!((events_before.len(), notifications_before.len()), (3000, 3000));

        let _store = Store::open(StoreConfig::new(db.url.clone())).await.expect("opening the store (migrations)");
        let wal = std::fs::metadata(crate::store::checkpoint::wal_path(Path::new(&path))).unwrap();
        assert_eq!(wal.len(), 0, "the copy is checkpointed and the WAL emptied before the store starts");
        assert_eq!(rows(&conn, events), events_before);
        assert_eq!(rows(&conn, notifications), notifications_before);
        let tables = rows(&conn, "SELECT sql FROM sqlite_master WHERE name IN ('events', 'notifications')");
        assert_eq!(tables.len(), 2);
        for table in tables {
            let Value::Text(sql) = &table[0] else { panic!("{table:?}") };
            assert!(!sql.contains("WITHOUT ROWID"), "{sql}");
        }
        let indexes = rows(
            &conn,
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('events', 'notifications') \
             ORDER BY name",
        );
        let names: Vec<&Value> = indexes.iter().map(|r| &r[0]).collect();
        let expected = [
            "events_by_key",
            "notifications_replayed_by_fire",
            "sqlite_autoindex_events_1",
            "sqlite_autoindex_notifications_1",
        ];
        assert_eq!(names, expected.map(|n| Value::Text(n.to_owned())).iter().collect::<Vec<_>>());

        // The unique keys: (namespace, seq) of both, (namespace, source, id) of events,
        // (namespace, fire_id) of replayed notifications.
        let refused = [
            "INSERT INTO events SELECT namespace, seq, source, 'other', type, subject, received_us, body \
             FROM events WHERE namespace = 'ns1' AND seq = 1",
            "INSERT INTO events SELECT namespace, 9999, source, id, type, subject, received_us, body \
             FROM events WHERE namespace = 'ns1' AND seq = 1",
            "INSERT INTO notifications SELECT namespace, seq, 'other', kind, listener_id, target, correlation, \
             event_seqs, created_us, trace, replayed FROM notifications WHERE namespace = 'ns1' AND seq = 1",
            "INSERT INTO notifications SELECT namespace, 9999, fire_id, kind, listener_id, target, correlation, \
             event_seqs, created_us, trace, 1 FROM notifications WHERE namespace = 'ns1' AND seq = 100",
        ];
        for sql in refused {
            let e = conn.execute(sql, []).unwrap_err();
            assert!(e.to_string().contains("UNIQUE constraint failed"), "{sql}: {e}");
        }
        let live_firing_again = "INSERT INTO notifications SELECT namespace, 9999, fire_id, kind, listener_id, \
             target, correlation, event_seqs, created_us, trace, 0 FROM notifications \
             WHERE namespace = 'ns1' AND seq = 100";
        assert_eq!(conn.execute(live_firing_again, []).unwrap(), 1);
    }
}

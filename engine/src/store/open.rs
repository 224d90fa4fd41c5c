//! The first connection of [`Store::open`](super::Store::open), made before the pool so that
//! a database that cannot be opened says why, once: the pool would retry a refused connection
//! until its timeout and then report only "pool timed out", and SQLite says "unable to open
//! database file" without the path or the operating system's reason.

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
/// file system ([`check_sqlite_file`]).
pub(super) async fn first_connection(backend: Backend, url: &str, timeout: Duration) -> Result<()> {
    if backend == Backend::Sqlite && !url.contains(":memory:") && !url.contains("mode=memory") {
        let options = SqliteConnectOptions::from_str(url)?;
        check_sqlite_file(options.get_filename())?;
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
}

//! The database drivers' errors as [`Error`]s: one conversion per driver (sqlx for the read pool
//! and the Postgres writer, rusqlite for the SQLite writer), each deciding which failures mean
//! the database cannot be reached ([`Error::Unavailable`], worth retrying) and which are
//! [`Error::Database`] (internal).
//!
//! They live here, not in [`crate::error`], so that the pure core builds without the drivers.
//! Hazard: `?` on a driver's result goes through these conversions, so a new variant or error
//! code that means "unreachable" must be added here, or callers see an internal error.

use crate::error::Error;

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if sqlx_unavailable(&e) { Self::Unavailable(e.into()) } else { Self::Database(e.into()) }
    }
}

/// Returns whether a sqlx error means the database could not be reached or could not serve the
/// statement for now, so the same call may succeed later (UNAVAILABLE), rather than that the
/// statement or the data is wrong (INTERNAL).
///
/// Unavailable: every I/O error (connection refused or reset, broken pipe, end of stream),
/// TLS, protocol errors (a connection cut in the middle of a message, or left out of step by a
/// call given up on), the pool's timeout and closing, a crashed SQLite worker, and the database
/// errors of [`sqlstate_unavailable`] and [`sqlite_unavailable`].
fn sqlx_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // A SQLSTATE has five characters; SQLite's (extended) result codes are at most four digits.
        sqlx::Error::Database(db) => db.code().is_some_and(|code| match code.parse::<u32>() {
            Ok(sqlite) if code.len() < 5 => sqlite_unavailable(sqlite),
            _ => sqlstate_unavailable(&code),
        }),
        _ => false,
    }
}

/// Returns whether a Postgres SQLSTATE means the server went away or cannot serve for now:
/// connection exceptions (class 08), insufficient resources (class 53: too many connections,
/// disk full, out of memory), operator intervention (57P01 administrator shutdown, 57P02 crash
/// shutdown, 57P03 cannot connect now, 57P05 idle session timeout, 57014 statement timeout or
/// cancel), the I/O error 58030, and 25P03 (idle in transaction timeout: the session is gone).
/// Deadlocks and serialization failures (class 40) are not: the writer retries those itself.
fn sqlstate_unavailable(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "57P05" | "57014" | "58030" | "25P03")
}

/// Returns whether a SQLite result code (primary or extended) means the file is busy, locked,
/// cannot be opened, read or written, or the disk is full: the same codes as the writer's
/// [`rusqlite`] errors.
fn sqlite_unavailable(code: u32) -> bool {
    const BUSY: u32 = 5;
    const LOCKED: u32 = 6;
    const IOERR: u32 = 10;
    const FULL: u32 = 13;
    const CANTOPEN: u32 = 14;
    matches!(code & 0xff, BUSY | LOCKED | IOERR | FULL | CANTOPEN)
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, SystemIoFailure};
        match e.sqlite_error_code() {
            // The file cannot be reached or written, or another process held it too long.
            Some(CannotOpen | SystemIoFailure | DiskFull | DatabaseBusy | DatabaseLocked) => {
                Self::Unavailable(e.into())
            }
            _ => Self::Database(e.into()),
        }
    }
}

/// Returns the error of a first connection that failed: as [`From<sqlx::Error>`] decides, but
/// a database's answer (`database "x" does not exist`) is said by its message and code alone,
/// without the driver's and the server's wrapping ("error returned from database", "at line
/// 948" of a Postgres source file).
pub(crate) fn connect_failed(e: sqlx::Error) -> Error {
    let sqlx::Error::Database(db) = &e else { return e.into() };
    let text = match db.code() {
        Some(code) => format!("{} (code {code})", db.message()),
        None => db.message().to_owned(),
    };
    if sqlx_unavailable(&e) { Error::Unavailable(text.into()) } else { Error::Database(text.into()) }
}

/// Returns the error of embedded migrations that could not be applied: a database error (an
/// internal one, whatever the cause: the store does not open).
pub(crate) fn migration_failed(e: sqlx::migrate::MigrateError) -> Error {
    Error::Database(e.into())
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::fmt;
    use std::io;

    use super::*;
    use crate::error::ErrorKind;

    /// A database error with a given code, as Postgres (SQLSTATE) or SQLite (result code) report.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl fmt::Display for Coded {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "error {}", self.0)
        }
    }

    impl std::error::Error for Coded {}

    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            self.0
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn db(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Coded(code)))
    }

    fn io(kind: io::ErrorKind) -> sqlx::Error {
        sqlx::Error::Io(io::Error::new(kind, "test"))
    }

    #[test]
    fn sqlx_errors_are_classified() {
        use ErrorKind::{Internal, Unavailable};
        let cases = [
            ("connection refused", io(io::ErrorKind::ConnectionRefused), Unavailable),
            ("connection reset", io(io::ErrorKind::ConnectionReset), Unavailable),
            ("broken pipe", io(io::ErrorKind::BrokenPipe), Unavailable),
            ("end of stream", io(io::ErrorKind::UnexpectedEof), Unavailable),
            (
                "protocol error of a cut connection",
                sqlx::Error::Protocol("unknown message type: '\\0'".into()),
                Unavailable,
            ),
            ("tls", sqlx::Error::Tls("handshake".into()), Unavailable),
            ("pool timeout", sqlx::Error::PoolTimedOut, Unavailable),
            ("pool closed", sqlx::Error::PoolClosed, Unavailable),
            ("sqlite worker crashed", sqlx::Error::WorkerCrashed, Unavailable),
            ("57P01 administrator shutdown", db("57P01"), Unavailable),
            ("57P02 crash shutdown", db("57P02"), Unavailable),
            ("57P03 cannot connect now", db("57P03"), Unavailable),
            ("57P05 idle session timeout", db("57P05"), Unavailable),
            ("57014 statement timeout", db("57014"), Unavailable),
            ("25P03 idle in transaction timeout", db("25P03"), Unavailable),
            ("08006 connection failure", db("08006"), Unavailable),
            ("08P01 protocol violation", db("08P01"), Unavailable),
            ("53300 too many connections", db("53300"), Unavailable),
            ("53100 disk full", db("53100"), Unavailable),
            ("58030 io error", db("58030"), Unavailable),
            ("57P04 database dropped", db("57P04"), Internal),
            ("23505 unique violation", db("23505"), Internal),
            ("42P01 undefined table", db("42P01"), Internal),
            ("40P01 deadlock, retried by the writer", db("40P01"), Internal),
            ("40001 serialization failure", db("40001"), Internal),
            ("XX000 internal", db("XX000"), Internal),
            ("sqlite busy", db("5"), Unavailable),
            ("sqlite busy snapshot", db("517"), Unavailable),
            ("sqlite busy timeout", db("773"), Unavailable),
            ("sqlite locked", db("6"), Unavailable),
            ("sqlite io error", db("10"), Unavailable),
            ("sqlite io error fsync", db("1034"), Unavailable),
            ("sqlite disk full", db("13"), Unavailable),
            ("sqlite cannot open", db("14"), Unavailable),
            ("sqlite constraint", db("19"), Internal),
            ("sqlite unique constraint", db("2067"), Internal),
            ("sqlite generic error", db("1"), Internal),
            ("row not found", sqlx::Error::RowNotFound, Internal),
            ("column not found", sqlx::Error::ColumnNotFound("x".into()), Internal),
            ("decode", sqlx::Error::Decode("bad".into()), Internal),
        ];
        for (what, e, kind) in cases {
            assert_eq!(Error::from(e).kind(), kind, "{what}");
        }
    }

    #[test]
    fn rusqlite_errors_are_classified() {
        use ErrorKind::{Internal, Unavailable};
        use rusqlite::ffi;
        let cases = [
            ("busy", ffi::SQLITE_BUSY, Unavailable),
            ("locked", ffi::SQLITE_LOCKED, Unavailable),
            ("io error", ffi::SQLITE_IOERR_FSYNC, Unavailable),
            ("disk full", ffi::SQLITE_FULL, Unavailable),
            ("cannot open", ffi::SQLITE_CANTOPEN, Unavailable),
            ("constraint", ffi::SQLITE_CONSTRAINT_UNIQUE, Internal),
            ("corrupt", ffi::SQLITE_CORRUPT, Internal),
        ];
        for (what, code, kind) in cases {
            let e = rusqlite::Error::SqliteFailure(ffi::Error::new(code), None);
            assert_eq!(Error::from(e).kind(), kind, "{what}");
        }
    }

    #[test]
    fn a_failed_migration_is_internal() {
        let e = migration_failed(sqlx::migrate::MigrateError::VersionMissing(3));
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(e.to_string().contains("migration 3"), "{e}");
    }
}

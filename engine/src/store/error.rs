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
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => Self::Unavailable(e.into()),
            _ => Self::Database(e.into()),
        }
    }
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

/// Returns the error of embedded migrations that could not be applied: a database error (an
/// internal one, whatever the cause: the store does not open).
pub(crate) fn migration_failed(e: sqlx::migrate::MigrateError) -> Error {
    Error::Database(e.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn sqlx_errors_by_kind() {
        let cases = [
            (sqlx::Error::PoolTimedOut, ErrorKind::Unavailable),
            (sqlx::Error::PoolClosed, ErrorKind::Unavailable),
            (sqlx::Error::WorkerCrashed, ErrorKind::Unavailable),
            (sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into()), ErrorKind::Unavailable),
            (sqlx::Error::RowNotFound, ErrorKind::Internal),
            (sqlx::Error::Protocol("bad message".into()), ErrorKind::Internal),
        ];
        for (e, kind) in cases {
            let shown = e.to_string();
            assert_eq!(Error::from(e).kind(), kind, "{shown}");
        }
    }

    #[test]
    fn rusqlite_errors_by_kind() {
        use rusqlite::ffi;
        let cases = [
            (ffi::SQLITE_BUSY, ErrorKind::Unavailable),
            (ffi::SQLITE_LOCKED, ErrorKind::Unavailable),
            (ffi::SQLITE_CANTOPEN, ErrorKind::Unavailable),
            (ffi::SQLITE_IOERR, ErrorKind::Unavailable),
            (ffi::SQLITE_FULL, ErrorKind::Unavailable),
            (ffi::SQLITE_CONSTRAINT, ErrorKind::Internal),
            (ffi::SQLITE_CORRUPT, ErrorKind::Internal),
        ];
        for (code, kind) in cases {
            let e = rusqlite::Error::SqliteFailure(ffi::Error::new(code), None);
            assert_eq!(Error::from(e).kind(), kind, "sqlite code {code}");
        }
        assert_eq!(Error::from(rusqlite::Error::QueryReturnedNoRows).kind(), ErrorKind::Internal);
    }

    #[test]
    fn a_failed_migration_is_internal() {
        let e = migration_failed(sqlx::migrate::MigrateError::VersionMissing(3));
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(e.to_string().contains("migration 3"), "{e}");
    }
}

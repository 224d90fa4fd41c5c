//! How the store is configured: the database, the durability of acknowledged writes, batch
//! sizes and retention. Parsed by the server from its settings; the store never reads the
//! environment.
//!
//! Hazard: [`Durability::Relaxed`] acknowledges writes a crash of the machine may lose.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use super::Observer;
use crate::error::{Error, Result};

/// Whether an acknowledged write is on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledged after the commit is flushed to disk (SQLite `synchronous=FULL`, Postgres
    /// `synchronous_commit=on`).
    #[default]
    Full,
    /// Acknowledged after the commit; a crash of the machine may lose the last writes
    /// (SQLite `synchronous=NORMAL` in WAL mode, Postgres `synchronous_commit=off`). The
    /// database stays consistent.
    Relaxed,
}

/// How the store connects and behaves.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub database_url: String,
    pub durability: Durability,
    /// Connections for reads (and, on Postgres, for the writer too).
    pub pool_size: u32,
    /// Most events one writer transaction takes from the queue.
    pub max_batch_events: usize,
    /// Events and finished notifications and listeners older than this are deleted in the
    /// background; `None` keeps them forever.
    pub retention: Option<Duration>,
    /// How often the background sweeper runs (deadlines, retention).
    pub sweep_interval: Duration,
    /// Rows the retention sweeper deletes per table per transaction.
    pub retention_batch: u32,
    /// Told about fired triggers after each commit; `None` skips that work.
    pub observer: Option<Arc<dyn Observer>>,
    /// SQLite: the size in bytes the WAL file is kept under (see the checkpointer's docs for
    /// when it cannot be).
    pub sqlite_wal_limit: u64,
    /// SQLite: the page size, in bytes, of a database this store creates (a power of two from
    /// 512 to 65536); an existing database keeps its own. See [`DEFAULT_SQLITE_PAGE_SIZE`].
    pub sqlite_page_size: u32,
    /// How long the writer waits for more commands before a transaction while commands keep
    /// arriving during commits (group commit under paced load); zero turns it off. On SQLite
    /// each commit writes every page it touched to the WAL, so committing several publishes at
    /// once writes fewer bytes per event; on Postgres, whose single writer is bound by statement
    /// round trips, fewer transactions keep up with more (the wait is at least a millisecond
    /// there: the runtime's timer resolution). A lone caller never waits: the writer only waits
    /// when a command arrived while the last commit ran, and its batch is still small (under 32
    /// events: a writer kept busy by many publishes in flight does not wait).
    pub commit_delay: Duration,
    /// Longest a call waits for the database (queueing for the writer, a connection, its
    /// statements) before it fails with `Unavailable`. On Postgres also the `statement_timeout`
    /// of the writer's transactions and the `idle_in_transaction_session_timeout` of every
    /// session, so the server gives up on what the store stopped waiting for and releases its
    /// locks.
    pub database_timeout: Duration,
}

impl StoreConfig {
    /// Returns where the database is, for the start line and errors, without secrets: the
    /// absolute path of a SQLite file, or `postgres://USER@HOST:PORT/DATABASE` (no password, no
    /// parameters). A URL that does not parse is returned with everything after `://` up to `@`
    /// cut.
    pub fn database_location(&self) -> String {
        let url = self.database_url.as_str();
        match Backend::from_url(url) {
            Ok(Backend::Sqlite) if url.contains(":memory:") || url.contains("mode=memory") => "sqlite::memory:".into(),
            Ok(Backend::Sqlite) => match SqliteConnectOptions::from_str(url) {
                Ok(o) => {
                    let file = o.get_filename();
                    std::path::absolute(file).unwrap_or_else(|_| file.to_owned()).display().to_string()
                }
                Err(_) => url.to_owned(),
            },
            Ok(Backend::Postgres) => match PgConnectOptions::from_str(url) {
                Ok(o) => {
                    let user = o.get_username();
                    let db = o.get_database().unwrap_or(user);
                    format!("postgres://{user}@{}:{}/{db}", o.get_host(), o.get_port())
                }
                Err(_) => redact(url),
            },
            Err(_) => redact(url),
        }
    }
}

/// Returns a URL without the user information (which may hold a password).
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://{}", &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// The default of [`StoreConfig::commit_delay`].
pub const DEFAULT_COMMIT_DELAY: Duration = Duration::from_micros(200);

/// The default of [`StoreConfig::sqlite_page_size`]: 1 KiB, not SQLite's 4 KiB. Each commit
/// writes every page it touched, whole, so smaller pages write fewer bytes per event under paced
/// load (measured: 8.2 against 19.4 kB per event at 5,000 events/s), for a larger file (1.39
/// against 1.06 kB per 631-byte event).
pub const DEFAULT_SQLITE_PAGE_SIZE: u32 = 1024;

/// The default of [`StoreConfig::sqlite_wal_limit`]: 64 MiB.
pub const DEFAULT_SQLITE_WAL_LIMIT: u64 = 64 << 20;

impl StoreConfig {
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            durability: Durability::Full,
            pool_size: 8,
            max_batch_events: 2048,
            retention: None,
            sweep_interval: Duration::from_secs(1),
            retention_batch: 1000,
            observer: None,
            sqlite_wal_limit: DEFAULT_SQLITE_WAL_LIMIT,
            sqlite_page_size: DEFAULT_SQLITE_PAGE_SIZE,
            database_timeout: Duration::from_secs(5),
            commit_delay: DEFAULT_COMMIT_DELAY,
        }
    }
}

/// The database behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            Err(Error::invalid("database_url", "must start with sqlite: or postgres:"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_the_file_or_the_server_without_secrets() {
        let cwd = std::env::current_dir().unwrap();
        let cases = [
            ("sqlite:///var/lib/eventbus/x.db", "/var/lib/eventbus/x.db".to_owned()),
            ("sqlite://x.db?mode=rwc", cwd.join("x.db").display().to_string()),
            (
                "postgres://u:secret@db.internal:6543/events?sslmode=require",
                "postgres://u@db.internal:6543/events".into(),
            ),
            ("postgres://u@h/d", "postgres://u@h:5432/d".into()),
            ("sqlite::memory:", "sqlite::memory:".into()),
            ("mysql://u:secret@h/d", "mysql://h/d".into()),
        ];
        for (url, location) in cases {
            assert_eq!(StoreConfig::new(url).database_location(), location, "{url}");
        }
    }
}

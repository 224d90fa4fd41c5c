//! A fresh database per test case, on either backend: the one harness of the store suite and
//! the end-to-end suites (cargo feature `testkit`, together with `store`; for dev-dependencies
//! and test crates only).
//!
//! [`TestDatabase::fresh`] makes a temp SQLite file, or a schema of its own on the Postgres
//! server named by `EVENTBUS_TEST_DATABASE_URL`: without that variable the case fails, it is
//! never skipped. [`backend_cases!`](crate::backend_cases) runs each case once per backend.
//!
//! Hazards:
//! - The schema is dropped when the last handle on it is dropped, also when the case panics.
//!   That drop blocks the dropping thread for the few milliseconds it takes: a `Drop` cannot
//!   await, and the case's runtime may be shutting down, so it runs on a thread of its own with
//!   a runtime of its own. Sessions that still hold locks in the schema (a server the case did
//!   not stop, a transaction it left open) are terminated first.
//! - A process killed mid-case leaves its schema behind. The first [`TestDatabase::fresh`] on
//!   Postgres of each process drops the leftovers of this harness that are over an hour old.
//! - A failed drop fails the case (unless it is already failing): a leak is not silent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor, PgConnection};
use tempfile::TempDir;

use crate::store::Backend;

/// The variable that names the Postgres server of the tests.
pub const DATABASE_URL_VAR: &str = "EVENTBUS_TEST_DATABASE_URL";

/// The prefix of every schema this harness makes, followed by a UUIDv7 (so its age is known).
pub const SCHEMA_PREFIX: &str = "testkit_";

/// How old a schema of this harness must be before another process drops it as a leftover.
const LEFTOVER_AGE: Duration = Duration::from_secs(3600);

/// Terminates every other session holding, or waiting for, a lock on a relation of schema `$1`.
const TERMINATE_LOCKERS: &str = "SELECT pg_terminate_backend(pid) FROM (SELECT DISTINCT l.pid FROM pg_locks l \
     JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = $1 AND l.pid <> pg_backend_pid()) AS lockers";

/// A fresh database for one test case. Clones and the handles of [`Self::through`] and
/// [`Self::named`] share it: it is removed when the last of them is dropped.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    /// The URL the store connects to: `sqlite://<temp dir>/eventbus.db`, or the Postgres URL
    /// with `search_path` set to the case's schema.
    pub url: String,
    /// The temp directory of the SQLite file (SQLite only).
    pub dir: Option<Arc<TempDir>>,
    /// The case's Postgres schema (Postgres only).
    schema: Option<Arc<Schema>>,
}

impl TestDatabase {
    /// Makes a fresh database: a temp SQLite file, or a new schema on the server at
    /// `EVENTBUS_TEST_DATABASE_URL`.
    ///
    /// # Panics
    /// When the variable is unset (Postgres) or the database cannot be made.
    pub async fn fresh(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("making a temp dir");
                let url = format!("sqlite://{}", dir.path().join("eventbus.db").display());
                Self { url, dir: Some(Arc::new(dir)), schema: None }
            }
            Backend::Postgres => {
                let base = std::env::var(DATABASE_URL_VAR).unwrap_or_else(|_| {
                    panic!("{DATABASE_URL_VAR} is not set: the Postgres half of the suites needs a server (./tests/run.sh starts one)")
                });
                let schema = Schema::create(&base).await;
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-c%20search_path%3D{}", schema.name);
                Self { url, dir: None, schema: Some(Arc::new(schema)) }
            }
        }
    }

    /// Returns the backend of this database.
    pub fn backend(&self) -> Backend {
        if self.schema.is_some() { Backend::Postgres } else { Backend::Sqlite }
    }

    /// Returns the name of the case's Postgres schema (Postgres only).
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref().map(|s| s.name.as_str())
    }

    /// Runs `sql` on this database over a connection of its own, behind the store's back.
    pub async fn execute(&self, sql: impl sqlx::SqlSafeStr) {
        sqlx::any::install_default_drivers();
        let url = &self.url;
        let admin = sqlx::AnyPool::connect(url).await.unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        admin.execute(sql.into_sql_str()).await.expect("running the statement");
        admin.close().await;
    }

    /// Runs a query that returns one integer (a `COUNT(*)`) on this database, behind the server's
    /// back.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::any::install_default_drivers();
        let url = &self.url;
        let pool = sqlx::AnyPool::connect(url).await.unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&pool).await.expect("counting");
        pool.close().await;
        n
    }

    /// Returns the address of the database server (Postgres only).
    pub async fn server_addr(&self) -> SocketAddr {
        let url = self.url_parts();
        let host_port =
            if url.host_port.contains(':') { url.host_port.to_owned() } else { format!("{}:5432", url.host_port) };
        let mut addrs = tokio::net::lookup_host(&host_port).await.expect("looking up the database host");
        addrs.next().expect("the database host resolves")
    }

    /// Returns this database reached through `addr` instead (Postgres only): same user,
    /// database and schema.
    pub fn through(&self, addr: SocketAddr) -> Self {
        let UrlParts { scheme, user, tail, .. } = self.url_parts();
        Self { url: format!("{scheme}://{user}{addr}{tail}"), ..self.clone() }
    }

    /// Returns this database with `application_name` set on every connection (Postgres only),
    /// so that a test can find the server's sessions in `pg_stat_activity`.
    pub fn named(&self, application_name: &str) -> Self {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        Self { url: format!("{}{sep}application_name={application_name}", self.url), ..self.clone() }
    }

    /// Splits `scheme://[user@]host[:port][/path][?query]`.
    fn url_parts(&self) -> UrlParts<'_> {
        let (scheme, rest) = self.url.split_once("://").expect("a URL");
        let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let (user, host_port) = authority.split_at(authority.rfind('@').map_or(0, |at| at + 1));
        UrlParts { scheme, user, host_port, tail }
    }
}

/// The parts of a database URL that [`TestDatabase::server_addr`] and
/// [`TestDatabase::through`] use.
struct UrlParts<'a> {
    scheme: &'a str,
    /// `user[:password]@`, or empty.
    user: &'a str,
    host_port: &'a str,
    /// The path and query, from the first `/` or `?`.
    tail: &'a str,
}

/// A Postgres schema of one case, dropped with this value.
#[derive(Debug)]
struct Schema {
    /// `EVENTBUS_TEST_DATABASE_URL`, without the schema.
    admin_url: String,
    name: String,
}

impl Schema {
    /// Creates a schema named [`SCHEMA_PREFIX`] + a UUIDv7, after dropping the leftovers of
    /// killed processes once per process.
    async fn create(admin_url: &str) -> Self {
        static SWEPT: AtomicBool = AtomicBool::new(false);
        let mut admin =
            PgConnection::connect(admin_url).await.unwrap_or_else(|e| panic!("connecting to {admin_url}: {e}"));
        if !SWEPT.swap(true, Ordering::Relaxed) {
            drop_leftovers(&mut admin).await;
        }
        let name = format!("{SCHEMA_PREFIX}{}", uuid::Uuid::now_v7().simple());
        admin.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}"))).await.expect("creating the schema");
        let _ = admin.close().await;
        Self { admin_url: admin_url.to_owned(), name }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (admin_url, name) = (&self.admin_url, &self.name);
        let result = std::thread::scope(|scope| {
            let dropper = scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(drop_schema(admin_url, name)).map_err(std::io::Error::other)
            });
            dropper.join()
        });
        let failure = match result {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the dropping thread panicked".to_owned(),
        };
        if std::thread::panicking() {
            eprintln!("testkit: schema {name} left behind: {failure}");
        } else {
            panic!("testkit: schema {name} left behind: {failure}");
        }
    }
}

/// Drops `schema` and all it holds, terminating the sessions that hold locks in it (up to five
/// times, for sessions that come back, as a server's pool does).
async fn drop_schema(admin_url: &str, schema: &str) -> Result<(), sqlx::Error> {
    let mut admin = PgConnection::connect(admin_url).await?;
    admin.execute("SET lock_timeout = '2s'").await?;
    let mut attempts = 0;
    loop {
        sqlx::query(TERMINATE_LOCKERS).bind(schema).execute(&mut admin).await?;
        match admin.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).await {
            Ok(_) => return admin.close().await,
            Err(e) if attempts < 5 && e.as_database_error().is_some() => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Drops the schemas of this harness older than [`LEFTOVER_AGE`]: those of killed processes
/// (no case runs that long). Failures are only reported: a leftover harms no case.
async fn drop_leftovers(admin: &mut PgConnection) {
    let pattern = format!("{}%", SCHEMA_PREFIX.replace('_', "\\_"));
    let listed = sqlx::query_scalar::<_, String>("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1")
        .bind(pattern)
        .fetch_all(&mut *admin)
        .await;
    let names = match listed {
        Ok(names) => names,
        Err(e) => return eprintln!("testkit: listing leftover schemas: {e}"),
    };
    // A leftover still locked by a hung process is left for a later run.
    if let Err(e) = sqlx::query("SET lock_timeout = '1s'").execute(&mut *admin).await {
        return eprintln!("testkit: {e}");
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    for name in names {
        let Some(created) = schema_created(&name) else { continue };
        if now.saturating_sub(created) < LEFTOVER_AGE {
            continue;
        }
        let sql = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *admin).await {
            eprintln!("testkit: dropping leftover schema {name}: {e}");
        }
    }
}

/// Returns when a schema of this harness was made (since the Unix epoch), from its UUIDv7.
fn schema_created(name: &str) -> Option<Duration> {
    let id = uuid::Uuid::parse_str(name.strip_prefix(SCHEMA_PREFIX)?).ok()?;
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    Some(Duration::new(secs, nanos))
}

/// Runs each named `async fn case(db: TestDatabase)` of the calling module on both backends,
/// as `sqlite::case` and `postgres::case`, each on a fresh [`TestDatabase`].
///
/// - `backend_cases!(postgres only: case, ...)` runs them on Postgres alone, as
///   `postgres_only::case`.
/// - `backend_cases!(by reference: case, ...)` passes `&db` instead of `db`.
/// - A case may take its own type instead of `TestDatabase`, if it implements
///   `From<TestDatabase>`.
///
/// The calling crate must depend on `tokio`.
#[macro_export]
macro_rules! backend_cases {
    (@module $module:ident, $backend:ident, $pass:ident, $($name:ident),*) => {
        mod $module {
            $(#[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[allow(clippy::useless_conversion)]
            async fn $name() {
                let db = $crate::testkit::TestDatabase::fresh($crate::store::Backend::$backend).await;
                let db = ::core::convert::From::from(db);
                super::$name($crate::backend_cases!(@pass $pass db)).await;
            })*
        }
    };
    (@pass by_value $db:ident) => { $db };
    (@pass by_reference $db:ident) => { &$db };
    (postgres only: by reference: $($name:ident),* $(,)?) => {
        $crate::backend_cases!(@module postgres_only, Postgres, by_reference, $($name),*);
    };
    (postgres only: $($name:ident),* $(,)?) => {
        $crate::backend_cases!(@module postgres_only, Postgres, by_value, $($name),*);
    };
    (by reference: $($name:ident),* $(,)?) => {
        $crate::backend_cases!(@module sqlite, Sqlite, by_reference, $($name),*);
        $crate::backend_cases!(@module postgres, Postgres, by_reference, $($name),*);
    };
    ($($name:ident),* $(,)?) => {
        $crate::backend_cases!(@module sqlite, Sqlite, by_value, $($name),*);
        $crate::backend_cases!(@module postgres, Postgres, by_value, $($name),*);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_age_comes_from_its_name() {
        let id = uuid::Uuid::now_v7();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let created = schema_created(&format!("{SCHEMA_PREFIX}{}", id.simple()));
        let age = now.saturating_sub(created.unwrap_or_default());
        assert!(age < Duration::from_secs(5), "{age:?}");
        assert_eq!(schema_created("t_0190f0c2d3e47c1a8b2f3a4b5c6d7e8f"), None);
        assert_eq!(schema_created(&format!("{SCHEMA_PREFIX}not-a-uuid")), None);
    }
}

//! The writer's connection: its transactions, its statements and the rows they return, the same
//! for both backends.
//!
//! SQLite: the writer runs on a thread of its own ([`super::writer::spawn`]) that owns a rusqlite
//! connection, so every statement is a plain function call on that thread. (sqlx runs each
//! SQLite statement on the connection's worker thread and waits for the answer: two thread
//! switches per statement, which on small machines cost more than the statements themselves.)
//! The reads of the other tasks stay on sqlx's pool: WAL lets them read while the writer writes.
//! The WAL is copied back into the database file, and kept under its limit, by a thread of its
//! own ([`super::checkpoint`]).
//!
//! Postgres: the writer is a task on the runtime and runs the statements over sqlx, in a
//! transaction on a connection of the shared pool ([`PgTx`]). A transaction has the database
//! timeout to finish, from waiting for its connection to its commit: a statement still
//! unanswered then fails as `Unavailable`, and a connection left in a transaction is closed,
//! never returned to the pool (a dead server or a cut network may never answer it).
//!
//! Statements are written with `$1..$n` placeholders on both backends, and hold no other `$`
//! (values are always bound). SQLite would take `$n` as a named parameter, whose index is found
//! by a linear search per parameter; the SQLite side sends `?n` instead, whose index is `n`.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

use sqlx::any::AnyTypeInfoKind;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, AssertSqlSafe, Column, Executor as _, Row as _, TypeInfo as _, ValueRef as _};
use tokio::time::Instant;

use super::checkpoint::{self, Checkpointer};
use super::{Backend, Durability};
use crate::error::{Error, Result};

/// A value bound to a statement or read from a row. Nulls keep the type of their column, which
/// Postgres wants for a bound parameter; a SQLite null reads as [`Value::NullText`], and both
/// nulls read as `None` of either type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Int(i64),
    Text(String),
    NullInt,
    NullText,
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Self::Text(v.clone())
    }
}

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Self::NullInt, Self::Int)
    }
}

impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        v.map_or(Self::NullText, Self::Text)
    }
}

impl From<Option<&str>> for Value {
    fn from(v: Option<&str>) -> Self {
        v.map_or(Self::NullText, Self::from)
    }
}

/// A statement and its values, `$1` first.
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    sql: Cow<'static, str>,
    values: Vec<Value>,
}

impl Statement {
    pub(crate) fn new(sql: impl Into<Cow<'static, str>>) -> Self {
        Self { sql: sql.into(), values: Vec::new() }
    }

    /// The statement with `values` bound as `$1..$n`.
    pub(crate) fn with(sql: impl Into<Cow<'static, str>>, values: Vec<Value>) -> Self {
        Self { sql: sql.into(), values }
    }

    /// Binds the next placeholder.
    pub(crate) fn bind(mut self, value: impl Into<Value>) -> Self {
        self.values.push(value.into());
        self
    }
}

/// A row read by the writer.
#[derive(Debug)]
pub(crate) struct Row(Vec<Value>);

impl Row {
    /// Returns column `i` (0-based) as `T`.
    pub(crate) fn get<T: FromValue>(&self, i: usize) -> Result<T> {
        let value = self.0.get(i).ok_or_else(|| Error::Internal(format!("no column {i} in the row")))?;
        T::from_value(value).ok_or_else(|| Error::Internal(format!("column {i} holds {value:?}")))
    }
}

/// A Rust type a column is read as.
pub(crate) trait FromValue: Sized {
    /// `None` if the value is not of this type.
    fn from_value(value: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(t) => Some(t.clone()),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::NullInt | Value::NullText => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// How long a SQLite statement waits for another connection's lock before it fails (about).
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite busy handlers, called with the number of tries so far; `true` tries again.
///
/// SQLite's own handler (`busy_timeout`) sleeps 1, 2, 5, 10, 15 ... ms between tries, so a
/// writer held off by a checkpoint for a hundred microseconds would sleep for milliseconds.
/// These try every [`BUSY_STEP`] at first.
pub(crate) mod busy {
    use std::time::Duration;

    /// The pause between the first tries.
    const BUSY_STEP: Duration = Duration::from_micros(50);
    /// Tries at [`BUSY_STEP`] before pausing a millisecond: 20 ms.
    const QUICK_TRIES: i32 = 400;

    /// Waits about [`super::SQLITE_BUSY_TIMEOUT`]: quick tries for 20 ms, then every millisecond.
    pub(crate) fn wait_long(tries: i32) -> bool {
        let slow_tries = (super::SQLITE_BUSY_TIMEOUT.as_millis() as i32).saturating_sub(20);
        if tries < QUICK_TRIES {
            std::thread::sleep(BUSY_STEP);
            true
        } else if tries < QUICK_TRIES + slow_tries {
            std::thread::sleep(Duration::from_millis(1));
            true
        } else {
            false
        }
    }

    /// Waits about 100 ms, in quick tries (a checkpoint that holds the writer off).
    pub(crate) fn wait_briefly(tries: i32) -> bool {
        if tries < 2000 {
            std::thread::sleep(BUSY_STEP);
            true
        } else {
            false
        }
    }
}

/// The writer's way to the database.
#[derive(Debug)]
pub(crate) enum Conn {
    Sqlite(Box<SqliteWriter>),
    Postgres { pool: AnyPool, durability: Durability, timeout: Duration },
}

/// The writer's SQLite connection, opened on first use and again after it broke.
#[derive(Debug)]
pub(crate) struct SqliteWriter {
    path: PathBuf,
    durability: Durability,
    conn: Option<rusqlite::Connection>,
    /// The `synchronous` setting of the connection, if known.
    synchronous: Option<&'static str>,
    /// `journal_size_limit`: the WAL file is cut back to this when the WAL starts over.
    wal_keep: u64,
    checkpointer: Checkpointer,
}

impl Conn {
    /// The writer's connection to the SQLite database at `path`, whose WAL file is kept under
    /// `wal_limit` bytes.
    pub(crate) fn sqlite(path: PathBuf, durability: Durability, wal_limit: u64) -> Result<Self> {
        let checkpointer = Checkpointer::spawn(path.clone(), wal_limit)?;
        let wal_keep = checkpoint::restart_size(wal_limit);
        Ok(Self::Sqlite(Box::new(SqliteWriter {
            path,
            durability,
            conn: None,
            synchronous: None,
            wal_keep,
            checkpointer,
        })))
    }

    /// Opens a transaction. Under [`Durability::Full`] its commit waits for the disk unless
    /// `leases_only` (see the writer's module docs); under relaxed durability it never does.
    pub(crate) async fn begin(&mut self, leases_only: bool) -> Result<Tx> {
        match self {
            Self::Sqlite(w) => w.begin(leases_only).map(Tx::Sqlite),
            Self::Postgres { pool, durability, timeout } => {
                let deadline = Instant::now() + *timeout;
                let conn = PgTx::bounded(deadline, *timeout, pool.acquire()).await?;
                let mut tx = PgTx { conn, deadline, timeout: *timeout, open: true };
                // The server, too, gives up on a statement the writer stopped waiting for.
                let mut begin = format!("BEGIN; SET LOCAL statement_timeout = {}", timeout.as_millis().max(1));
                // Relaxed durability turned it off for the whole session already.
                if leases_only && *durability == Durability::Full {
                    begin.push_str("; SET LOCAL synchronous_commit = off");
                }
                tx.run(begin).await?;
                Ok(Tx::Postgres(tx))
            }
        }
    }

    /// Commits `tx`; a failed commit is rolled back.
    pub(crate) async fn commit(&mut self, tx: Tx) -> Result<()> {
        match (self, tx) {
            (Self::Sqlite(w), Tx::Sqlite(conn)) => match conn.execute_batch("COMMIT") {
                Ok(()) => {
                    w.checkpointer.committed(&conn);
                    w.conn = Some(conn);
                    Ok(())
                }
                Err(e) => {
                    w.rollback(conn);
                    Err(e.into())
                }
            },
            (Self::Postgres { .. }, Tx::Postgres(mut tx)) => match tx.run("COMMIT").await {
                Ok(()) => {
                    tx.open = false;
                    Ok(())
                }
                Err(e) => {
                    tx.rollback().await;
                    Err(e)
                }
            },
            _ => Err(Error::Internal("a transaction of the other backend".into())),
        }
    }

    pub(crate) async fn rollback(&mut self, tx: Tx) {
        match (self, tx) {
            (Self::Sqlite(w), Tx::Sqlite(conn)) => w.rollback(conn),
            (_, Tx::Postgres(mut tx)) => tx.rollback().await,
            (Self::Postgres { .. }, Tx::Sqlite(_)) => {}
        }
    }
}

impl SqliteWriter {
    fn begin(&mut self, leases_only: bool) -> Result<rusqlite::Connection> {
        let conn = match self.conn.take() {
            Some(c) => c,
            None => {
                self.synchronous = None;
                self.open()?
            }
        };
        // A setting of the connection: sent only when it changes (it does no I/O either way).
        let synchronous = match self.durability {
            Durability::Full if !leases_only => "FULL",
            Durability::Full | Durability::Relaxed => "NORMAL",
        };
        let sql: Cow<'_, str> = if self.synchronous == Some(synchronous) {
            "BEGIN IMMEDIATE".into()
        } else {
            format!("PRAGMA synchronous={synchronous}; BEGIN IMMEDIATE").into()
        };
        match conn.execute_batch(&sql) {
            Ok(()) => {
                self.synchronous = Some(synchronous);
                Ok(conn)
            }
            Err(e) => {
                self.synchronous = None;
                // Nothing was opened (another process held the lock too long): keep it.
                if conn.is_autocommit() {
                    self.conn = Some(conn);
                }
                Err(e.into())
            }
        }
    }

    fn open(&self) -> Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_handler(Some(busy::wait_long))?;
        // The checkpointer copies the WAL back, not the commits.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit={}",
            self.wal_keep
        ))?;
        // Enough for every distinct statement of the writer (chunked statements vary in size).
        conn.set_prepared_statement_cache_capacity(256);
        Ok(conn)
    }

    /// Rolls back and keeps the connection; one that cannot roll back is closed (the next
    /// transaction opens a new one).
    fn rollback(&mut self, conn: rusqlite::Connection) {
        if conn.is_autocommit() || conn.execute_batch("ROLLBACK").is_ok() {
            self.conn = Some(conn);
        } else {
            self.synchronous = None;
        }
    }
}

/// An open transaction of the writer.
#[derive(Debug)]
pub(crate) enum Tx {
    Sqlite(rusqlite::Connection),
    Postgres(PgTx),
}

/// A Postgres transaction of the writer: its connection and when it must be done by. Dropped
/// while still open (a failed rollback, a cancelled writer), it closes its connection.
#[derive(Debug)]
pub(crate) struct PgTx {
    conn: PoolConnection<Any>,
    deadline: Instant,
    /// The database timeout, for the error message.
    timeout: Duration,
    /// Whether the connection may be in a transaction.
    open: bool,
}

impl PgTx {
    /// Awaits `f` until `deadline`; `Unavailable` once it has passed.
    async fn bounded<T>(deadline: Instant, timeout: Duration, f: impl Future<Output = sqlx::Result<T>>) -> Result<T> {
        match tokio::time::timeout_at(deadline, f).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(super::no_answer(timeout)),
        }
    }

    /// Runs statements without values (the simple query protocol: several may be sent at once).
    async fn run(&mut self, sql: impl Into<String>) -> Result<()> {
        let sql = AssertSqlSafe(sql.into());
        Self::bounded(self.deadline, self.timeout, self.conn.execute(sql)).await.map(drop)
    }

    /// Rolls back before the deadline; otherwise the connection is closed when `self` drops.
    async fn rollback(&mut self) {
        if self.run("ROLLBACK").await.is_ok() {
            self.open = false;
        }
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

impl Tx {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs a statement; returns the number of rows it changed.
    pub(crate) async fn execute(&mut self, statement: Statement) -> Result<u64> {
        match self {
            Self::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(&sqlite_sql(&statement.sql))?;
                bind_sqlite(&mut stmt, &statement.values)?;
                Ok(stmt.raw_execute()? as u64)
            }
            Self::Postgres(tx) => {
                let done = PgTx::bounded(tx.deadline, tx.timeout, any_query(&statement).execute(&mut *tx.conn));
                Ok(done.await?.rows_affected())
            }
        }
    }

    /// Runs a statement and returns its rows.
    pub(crate) async fn fetch_all(&mut self, statement: Statement) -> Result<Vec<Row>> {
        match self {
            Self::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(&sqlite_sql(&statement.sql))?;
                bind_sqlite(&mut stmt, &statement.values)?;
                let columns = stmt.column_count();
                let mut rows = stmt.raw_query();
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    out.push(Row((0..columns).map(|i| sqlite_value(row.get_ref(i)?)).collect::<Result<_>>()?));
                }
                Ok(out)
            }
            Self::Postgres(tx) => {
                let rows =
                    PgTx::bounded(tx.deadline, tx.timeout, any_query(&statement).fetch_all(&mut *tx.conn)).await?;
                rows.iter().map(any_row).collect()
            }
        }
    }

    /// Runs a statement and returns its first row, if any.
    pub(crate) async fn fetch_optional(&mut self, statement: Statement) -> Result<Option<Row>> {
        Ok(self.fetch_all(statement).await?.into_iter().next())
    }
}

/// The statement with its placeholders `$n` written `?n` (see the module docs).
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

/// Binds `?n` to `values[n - 1]`.
fn bind_sqlite(stmt: &mut rusqlite::Statement<'_>, values: &[Value]) -> Result<()> {
    // The number of parameters is the largest `n`.
    let count = stmt.parameter_count();
    if count != values.len() {
        return Err(Error::Internal(format!("{count} parameters, {} values", values.len())));
    }
    for (index, value) in (1..).zip(values) {
        match value {
            Value::Int(i) => stmt.raw_bind_parameter(index, i)?,
            Value::Text(t) => stmt.raw_bind_parameter(index, t.as_str())?,
            Value::NullInt | Value::NullText => stmt.raw_bind_parameter(index, rusqlite::types::Null)?,
        }
    }
    Ok(())
}

fn sqlite_value(value: rusqlite::types::ValueRef<'_>) -> Result<Value> {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => Ok(Value::NullText),
        ValueRef::Integer(i) => Ok(Value::Int(i)),
        ValueRef::Text(t) => {
            Ok(Value::Text(String::from_utf8(t.to_vec()).map_err(|e| Error::Internal(format!("stored text: {e}")))?))
        }
        other => Err(Error::Internal(format!("unexpected stored value of type {}", other.data_type()))),
    }
}

/// Runs a read on a connection of sqlx's pool (either backend) and returns its rows, mapped as
/// the writer's are.
pub(crate) async fn fetch_pooled(conn: &mut sqlx::AnyConnection, statement: Statement) -> Result<Vec<Row>> {
    let rows = any_query(&statement).fetch_all(conn).await?;
    rows.iter().map(any_row).collect()
}

type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

/// The statement for sqlx's Any driver: the Postgres writer's and every read of the pool.
fn any_query(statement: &Statement) -> AnyQuery<'_> {
    let mut q = sqlx::query(AssertSqlSafe(statement.sql.as_ref()));
    for v in &statement.values {
        q = match v {
            Value::Int(i) => q.bind(*i),
            Value::Text(t) => q.bind(t.as_str()),
            Value::NullInt => q.bind(None::<i64>),
            Value::NullText => q.bind(None::<&str>),
        };
    }
    q
}

/// Maps a row of sqlx's Any driver: integers and text, null or not (all the schema holds).
fn any_row(row: &sqlx::any::AnyRow) -> Result<Row> {
    let mut values = Vec::with_capacity(row.columns().len());
    for (i, column) in row.columns().iter().enumerate() {
        // A SQLite expression (`COUNT(*)`) has no declared type: its value's type decides.
        let kind = match column.type_info().kind() {
            AnyTypeInfoKind::Null => row.try_get_raw(i)?.type_info().kind(),
            kind => kind,
        };
        let value = match kind {
            AnyTypeInfoKind::SmallInt | AnyTypeInfoKind::Integer | AnyTypeInfoKind::BigInt => {
                row.try_get::<Option<i64>, _>(i)?.into()
            }
            AnyTypeInfoKind::Text | AnyTypeInfoKind::Null => row.try_get::<Option<String>, _>(i)?.into(),
            _ => {
                return Err(Error::Internal(format!(
                    "column {:?} has unexpected type {}",
                    column.name(),
                    column.type_info().name()
                )));
            }
        };
        values.push(value);
    }
    Ok(Row(values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_binds_placeholders_by_number() -> Result<()> {
        let conn = rusqlite::Connection::open_in_memory()?;
        let mut tx = Tx::Sqlite(conn);
        let rows = futures::executor::block_on(
            tx.fetch_all(Statement::new("SELECT $2, $1, $2 || 'x', $3").bind(1_i64).bind("b").bind(None::<i64>)),
        )?;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<String>(0)?, "b");
        assert_eq!(rows[0].get::<i64>(1)?, 1);
        assert_eq!(rows[0].get::<String>(2)?, "bx");
        assert_eq!(rows[0].get::<Option<i64>>(3)?, None);
        assert!(rows[0].get::<i64>(0).is_err(), "text does not read as a number");
        Ok(())
    }

    /// The bundled SQLite is built with the workspace's options (`.cargo/config.toml`): no
    /// global mutex around every allocation.
    #[test]
    fn bundled_sqlite_keeps_no_memory_statistics() -> Result<()> {
        let conn = rusqlite::Connection::open_in_memory()?;
        let mut statement = conn.prepare("PRAGMA compile_options")?;
        let options = statement.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
        assert!(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "compile options: {options:?}");
        Ok(())
    }
}

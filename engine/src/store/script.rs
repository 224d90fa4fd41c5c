//! Writes the writer does not need an answer to, kept back and sent together.
//!
//! sqlx runs each SQLite statement on the connection's worker thread and waits for its answer:
//! two thread switches per statement, which cost more than the statement itself on small
//! machines. The writer queues the rows it writes after evaluating a batch (events,
//! notifications, partial state, deliveries, counters) and sends them as one script just
//! before a statement that may read them, or together with the `COMMIT`: on SQLite one trip to
//! the worker thread for all of them. Postgres cannot take several statements with bound
//! parameters in one message, so there they still go one by one.

use sqlx::{Any, AnyConnection, AssertSqlSafe};

use super::Backend;
use crate::error::Result;

/// A value bound to a queued statement.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Int(i64),
    Text(String),
    OptInt(Option<i64>),
    OptText(Option<String>),
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

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        Self::OptInt(v)
    }
}

impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        Self::OptText(v)
    }
}

impl From<Option<&str>> for Value {
    fn from(v: Option<&str>) -> Self {
        Self::OptText(v.map(str::to_owned))
    }
}

/// Statements queued in one transaction, in the order they are to run. Each is written with
/// its own placeholders `$1..$n`.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    statements: Vec<(String, Vec<Value>)>,
}

impl Writes {
    pub(crate) fn push(&mut self, sql: String, values: Vec<Value>) {
        self.statements.push((sql, values));
    }

    /// Runs the queued statements and forgets them. On SQLite, `then` (a statement without
    /// parameters, such as `COMMIT`) runs at the end of the same script; on Postgres the caller
    /// runs it.
    pub(crate) async fn run(&mut self, backend: Backend, tx: &mut AnyConnection, then: Option<&str>) -> Result<()> {
        let statements = std::mem::take(&mut self.statements);
        match backend {
            Backend::Postgres => {
                for (sql, values) in &statements {
                    bind(sqlx::query(AssertSqlSafe(sql.as_str())), values).execute(&mut *tx).await?;
                }
            }
            Backend::Sqlite => {
                let mut script = String::new();
                let mut offset = 0;
                for (sql, values) in &statements {
                    renumber(sql, offset, &mut script);
                    script.push_str(";\n");
                    offset += values.len();
                }
                script.push_str(then.unwrap_or_default());
                if script.is_empty() {
                    return Ok(());
                }
                let values: Vec<&Value> = statements.iter().flat_map(|(_, v)| v).collect();
                let mut q = sqlx::query(AssertSqlSafe(script));
                for v in values {
                    q = bind_one(q, v);
                }
                q.execute(&mut *tx).await?;
            }
        }
        Ok(())
    }
}

type Query<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

fn bind<'q>(mut q: Query<'q>, values: &'q [Value]) -> Query<'q> {
    for v in values {
        q = bind_one(q, v);
    }
    q
}

fn bind_one<'q>(q: Query<'q>, value: &'q Value) -> Query<'q> {
    match value {
        Value::Int(i) => q.bind(*i),
        Value::Text(t) => q.bind(t.as_str()),
        Value::OptInt(i) => q.bind(*i),
        Value::OptText(t) => q.bind(t.as_deref()),
    }
}

/// Appends `sql` to `out` with every placeholder `$n` written as `$(n + offset)`. The
/// statements are the writer's own: no `$` occurs in them except in placeholders.
fn renumber(sql: &str, offset: usize, out: &mut String) {
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumbers_placeholders() {
        let mut out = String::new();
        renumber("UPDATE t SET a = $1 WHERE b IN ($2, $10)", 5, &mut out);
        assert_eq!(out, "UPDATE t SET a = $6 WHERE b IN ($7, $15)");
        out.clear();
        renumber("SELECT 1", 3, &mut out);
        assert_eq!(out, "SELECT 1");
    }
}

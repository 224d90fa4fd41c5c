//! The few places where SQLite and Postgres differ, helpers for statements with a variable
//! number of rows, the statements that find a few rows of a namespace, whose Postgres plans
//! must not depend on statistics (the test module `plans` checks them), and the monitoring
//! counts, which must not read a backlog (`sqlite_plans`).

use super::Backend;
use super::conn::Statement;
use super::rows::{DeliveryState, EVENT_COLUMNS};

impl Backend {
    /// Suffix that locks selected rows until commit (Postgres); SQLite's single writer
    /// transaction already excludes every other writer.
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE",
        }
    }

    /// Like [`Self::for_update`], but skipping rows another transaction holds.
    pub(crate) fn for_update_skip_locked(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

/// Returns `(p, p+1, .., p+cols-1), ...` for `rows` rows of `cols` placeholders, numbered from
/// `first`.
pub(crate) fn placeholders(rows: usize, cols: usize, first: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            s.push('$');
            s.push_str(&(first + r * cols + c).to_string());
        }
        s.push(')');
    }
    s
}

/// Returns the statement that finds stored events by (source, id) for `rows` keys bound from
/// `$2` on (`$1` is the namespace): one row per key, with the sequence of the stored event or
/// NULL. Each key is a subquery of its own, so each is an index probe whatever the planner knows
/// of the table: a join against the `VALUES` list is planned as a scan of the whole table while
/// it has no statistics yet (a new database on Postgres), and a scan per key at that. The
/// namespace is compared with [`SAME_NAMESPACE`].
pub(crate) fn events_by_keys(rows: usize) -> String {
    format!(
        "WITH k(source, id) AS (VALUES {}) SELECT k.source, k.id, (SELECT e.seq FROM events e \
         WHERE e.source = k.source AND e.id = k.id AND e.namespace {SAME_NAMESPACE} $1) FROM k",
        placeholders(rows, 2, 2)
    )
}

/// How a lookup of events by (source, id) compares the namespace: `IS NOT DISTINCT FROM` (the
/// column is never null, so it means `=`), which no Postgres index serves, so that the planner
/// probes the index by source and id (`events_by_source_id` there). With `=` it may read the whole
/// namespace by the primary key instead: it takes a namespace that is new since the last ANALYZE
/// for one row, and that namespace may have grown by millions since. SQLite serves it from an
/// index like `=`.
pub(crate) const SAME_NAMESPACE: &str = "IS NOT DISTINCT FROM";

/// Returns the statement that finds, in a namespace's rows of `table` (`$1`), the lowest sequence
/// from which on the time `column` is at least `$2`: a binary search over the primary key,
/// about 2 log2(rows) index probes, instead of an index on the time that every insert would
/// write. It answers one row and column: that sequence, one past the last row if every row is
/// older, or NULL if the namespace has no rows.
///
/// Hazard: it relies on times growing with the sequence, which holds while the servers' clocks
/// do not step back; around such a step, rows on the wrong side of the bound are missed.
pub(crate) fn first_seq_at(table: &str, column: &str) -> String {
    first_seq_at_with(table, column, "$1", "$2")
}

/// Like [`first_seq_at`], with the namespace and the time in the placeholders given (to be
/// used as a scalar subquery of a larger statement).
pub(crate) fn first_seq_at_with(table: &str, column: &str, ns: &str, t: &str) -> String {
    let probe =
        format!("(SELECT {column} FROM {table} WHERE namespace = {ns} AND seq >= (lo + hi) / 2 ORDER BY seq LIMIT 1)");
    format!(
        "WITH RECURSIVE search(lo, hi) AS (\
           SELECT (SELECT MIN(seq) FROM {table} WHERE namespace = {ns}), \
                  (SELECT MAX(seq) FROM {table} WHERE namespace = {ns}) + 1 \
           UNION ALL \
           SELECT CASE WHEN {probe} IS NULL OR {probe} >= {t} THEN lo ELSE (lo + hi) / 2 + 1 END, \
                  CASE WHEN {probe} IS NULL OR {probe} >= {t} THEN (lo + hi) / 2 ELSE hi END \
           FROM search WHERE lo < hi) \
         SELECT MAX(lo) FROM search"
    )
}

/// Returns `$first, $first+1, ...` (n placeholders) for an `IN (...)` list.
pub(crate) fn list(n: usize, first: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// The condition `seq BETWEEN $first AND $first+1 AND seq IN ($first+2, ..)` for `n` sequences,
/// bound by [`bind_seqs`]. The range bounds the index scan whatever the planner believes: Postgres
/// takes a namespace that is new since the last ANALYZE for a single row, and may then scan the
/// index by the namespace alone and filter the list, reading the whole namespace, however large it
/// has grown since; a range on the key is always a condition of the scan.
pub(crate) fn seqs_in(n: usize, first: usize) -> String {
    format!("seq BETWEEN ${first} AND ${} AND seq IN ({})", first + 1, list(n, first + 2))
}

/// Binds the values of [`seqs_in`]: the lowest and the highest sequence, then each (stored
/// sequences, `u64` or `i64`, all below `i64::MAX`).
pub(crate) fn bind_seqs<S: Copy + TryInto<i64>>(mut q: Statement, seqs: &[S]) -> Statement {
    let seq = |s: S| s.try_into().unwrap_or(i64::MAX);
    let lo = seqs.iter().map(|&s| seq(s)).min().unwrap_or(0);
    let hi = seqs.iter().map(|&s| seq(s)).max().unwrap_or(-1);
    q = q.bind(lo).bind(hi);
    for &s in seqs {
        q = q.bind(seq(s));
    }
    q
}

/// Returns the statement that reads `n` events of a namespace (`$1`) by sequence (bound from
/// `$2` by [`bind_seqs`]).
pub(crate) fn events_by_seqs(n: usize) -> String {
    format!("SELECT {EVENT_COLUMNS} FROM events WHERE namespace = $1 AND {}", seqs_in(n, 2))
}

/// Returns the statement that reads the event of a namespace (`$1`) with a source (`$2`) and id
/// (`$3`), the namespace compared with [`SAME_NAMESPACE`].
pub(crate) fn event_by_source_id() -> String {
    format!("SELECT {EVENT_COLUMNS} FROM events WHERE source = $2 AND id = $3 AND namespace {SAME_NAMESPACE} $1")
}

/// Returns the statement that reads `columns` of `n` notifications of a namespace (`$1`) by
/// sequence (bound from `$2` by [`bind_seqs`]).
pub(crate) fn notifications_by_seqs(columns: &str, n: usize) -> String {
    format!("SELECT {columns} FROM notifications WHERE namespace = $1 AND {}", seqs_in(n, 2))
}

/// Returns the statement that acks `n` deliveries of a group: deletes those of namespace `$1`
/// and group `$2` with the sequences bound from `$3` by [`bind_seqs`] that are not dead letters,
/// returning each one's consumer and sequence.
///
/// The state is compared with `IS DISTINCT FROM` (it is never null): with `<>`, Postgres may
/// take the partial index of ready and leased deliveries, whose predicate that matches, and read
/// every delivery of the group (and the dead rows of acked ones since the last vacuum) instead of
/// the primary key's few.
pub(crate) fn ack_deliveries(n: usize) -> String {
    format!(
        "DELETE FROM deliveries WHERE namespace = $1 AND group_name = $2 AND state IS DISTINCT FROM '{}' \
         AND {} RETURNING consumer, seq",
        DeliveryState::Dead,
        seqs_in(n, 3)
    )
}

/// Every consumer group with what its unread count is made of ([`crate::store::Store::group_backlogs`]):
/// namespace, name, read position, the namespace's next notification sequence and its oldest
/// stored notification's (NULL if none).
pub(crate) const GROUP_POSITIONS: &str = "SELECT g.namespace, g.name, g.read_seq, n.next_notification_seq, \
     (SELECT MIN(m.seq) FROM notifications m WHERE m.namespace = g.namespace) \
     FROM consumer_groups g JOIN namespaces n ON n.name = g.namespace";

/// What a group that takes every notification has unread, past its read position (`$2`) in
/// namespace `$1` ([`crate::store::Store::get_group`]): the namespace's next notification
/// sequence, its oldest stored notification's and the creation time of the first one past the
/// position (NULLs if none).
pub(crate) const GROUP_UNREAD: &str = "SELECT n.next_notification_seq, \
     (SELECT MIN(m.seq) FROM notifications m WHERE m.namespace = $1), \
     (SELECT m.created_us FROM notifications m WHERE m.namespace = $1 AND m.seq > $2 ORDER BY m.seq LIMIT 1) \
     FROM namespaces n WHERE n.name = $1";

/// Counts the ready and leased deliveries of each group, through their partial index.
pub(crate) fn live_deliveries_by_group() -> String {
    format!(
        "SELECT namespace, group_name, state, COUNT(*) FROM deliveries WHERE state <> '{}' \
         GROUP BY namespace, group_name, state",
        DeliveryState::Dead
    )
}

/// Counts the dead letters of each group, through their partial index (migration 0007).
pub(crate) fn dead_letters_by_group() -> String {
    format!(
        "SELECT namespace, group_name, COUNT(*) FROM deliveries WHERE state = '{}' GROUP BY namespace, group_name",
        DeliveryState::Dead
    )
}

/// Keys per lookup and rows per narrow statement: few distinct statements to prepare, few
/// round trips.
pub(crate) const CHUNK: usize = 64;

/// Rows per wide multi-row INSERT. SQLite looks bound parameters up by name linearly, so the
/// cost of a statement grows with the square of its parameters: wide rows go in smaller chunks.
pub(crate) const INSERT_CHUNK: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_rows() {
        assert_eq!(placeholders(2, 3, 1), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders(1, 2, 3), "($3, $4)");
        assert_eq!(list(3, 2), "$2, $3, $4");
        assert!(events_by_keys(2).starts_with("WITH k(source, id) AS (VALUES ($2, $3), ($4, $5)) SELECT"));
    }
}

/// SQLite: the monitoring counts scan no table but the groups' own and do not walk a backlog:
/// a scrape must not cost more as a group falls behind or dead letters pile up.
#[cfg(test)]
#[cfg(feature = "testkit")]
mod sqlite_plans {
    use sqlx::{Connection, Row, SqliteConnection};

    use super::*;
    use crate::store::{Store, StoreConfig};
    use crate::testkit::TestDatabase;

    #[tokio::test]
    async fn monitoring_counts_read_indexes_only() {
        let db = TestDatabase::fresh(Backend::Sqlite).await;
        Store::open(StoreConfig::new(db.url.clone())).await.expect("opening the store (migrations)");
        let mut conn = SqliteConnection::connect(&db.url).await.unwrap();
        let statements =
            [GROUP_POSITIONS.to_owned(), GROUP_UNREAD.to_owned(), live_deliveries_by_group(), dead_letters_by_group()];
        for sql in statements {
            let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>(3))
                .collect();
            // A SCAN without an index reads a table's rows; the groups' own (`g`) are the list
            // being counted for.
            let whole_tables: Vec<&String> =
                plan.iter().filter(|s| s.starts_with("SCAN ") && !s.contains("INDEX") && *s != "SCAN g").collect();
            assert!(whole_tables.is_empty(), "{sql}: {plan:?}");
        }
    }

    /// A group 20,000 notifications behind: its unread count takes a few steps, not a step per
    /// notification.
    #[tokio::test]
    async fn unread_counts_do_not_walk_the_backlog() {
        let db = TestDatabase::fresh(Backend::Sqlite).await;
        Store::open(StoreConfig::new(db.url.clone())).await.expect("opening the store (migrations)");
        let path = db.url.trim_start_matches("sqlite://");
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(
            "INSERT INTO namespaces (name, next_notification_seq) VALUES ('ns', 20001); \
             INSERT INTO consumer_groups (namespace, name, settings, read_seq, created_us) \
                 VALUES ('ns', 'g', '{}', 0, 0); \
             WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 20000) \
             INSERT INTO notifications (namespace, seq, fire_id, kind, listener_id, target, correlation, \
                 event_seqs, created_us, trace) \
             SELECT 'ns', n, 'f' || n, 'start', 'l', 'wf', '[]', '[1]', n, '{}' FROM s;",
        )
        .unwrap();
        let mut q = conn.prepare(GROUP_POSITIONS).unwrap();
        let (read_seq, next, oldest): (i64, i64, Option<i64>) =
            q.query_row([], |r| Ok((r.get(2)?, r.get(3)?, r.get(4)?))).unwrap();
        assert_eq!(crate::store::read::stored_past(read_seq, next, oldest), 20_000);
        let steps = q.get_status(rusqlite::StatementStatus::VmStep);
        assert!(steps < 500, "{steps} steps of the VM for a group 20,000 behind");
    }
}

/// The statements that find a few rows of a namespace, by sequence or by (source, id), are index
/// probes on Postgres whatever its statistics say: a namespace that is new since the last
/// ANALYZE is estimated at one row, and plans that trusted that read all of the namespace per
/// call once it had grown (issue 12).
#[cfg(test)]
#[cfg(feature = "testkit")]
mod plans {
    use serde_json::Value;
    use sqlx::{Connection, PgConnection};

    use super::*;
    use crate::store::{Store, StoreConfig};
    use crate::testkit::TestDatabase;

    /// Rows of each table per namespace: their pages number in the hundreds.
    const ROWS: i64 = 20_000;

    /// At most this many buffers for a statement that finds two rows: a few index levels and
    /// the rows. Reading the namespace takes hundreds.
    const MAX_BUFFERS: u64 = 40;

    /// Fills `ns` with `ROWS` events, notifications and deliveries of group `g`, as the store
    /// writes them (sizes alike; every 10th delivery dead, the rest ready).
    async fn fill(conn: &mut PgConnection, ns: &str) {
        let statements = [
            "INSERT INTO events (namespace, seq, source, id, type, subject, received_us, body) \
             SELECT $1, g, 'bench', 'id-' || g, 'order.created', NULL, g, repeat('x', 600) \
             FROM generate_series(1, $2) g",
            "INSERT INTO notifications (namespace, seq, fire_id, kind, listener_id, target, correlation, \
             event_seqs, created_us, trace) SELECT $1, g, md5(g::text), 'start', md5('l'), 'wf', '[]', \
             '[' || g || ']', g, '{}' FROM generate_series(1, $2) g",
            "INSERT INTO deliveries (namespace, group_name, seq, state, attempt, available_us) \
             SELECT $1, 'g', g, CASE WHEN g % 10 = 0 THEN 'dead' ELSE 'ready' END, 1, g \
             FROM generate_series(1, $2) g",
        ];
        for sql in statements {
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(ns).bind(ROWS).execute(&mut *conn).await.unwrap();
        }
    }

    /// Runs `EXPLAIN (ANALYZE, BUFFERS)` of `sql` with `binds` in a transaction it rolls back;
    /// returns the buffers the statement touched and the plan.
    async fn buffers(conn: &mut PgConnection, sql: &str, binds: &[Value]) -> (u64, Value) {
        let mut tx = conn.begin().await.unwrap();
        let explain = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}");
        let mut q = sqlx::query_scalar::<_, Value>(sqlx::AssertSqlSafe(explain));
        for b in binds {
            q = match b {
                Value::String(s) => q.bind(s.clone()),
                other => q.bind(other.as_i64().unwrap()),
            };
        }
        let plan = q.fetch_one(&mut *tx).await.unwrap_or_else(|e| panic!("explaining {sql}: {e}"));
        tx.rollback().await.unwrap();
        let top = &plan[0]["Plan"];
        let n = |key: &str| top[key].as_u64().unwrap_or_else(|| panic!("no {key:?} in the plan of {sql}: {plan:#}"));
        (n("Shared Hit Blocks") + n("Shared Read Blocks"), plan)
    }

    #[tokio::test]
    async fn probes_read_a_few_buffers_in_a_namespace_new_since_analyze() {
        let db = TestDatabase::fresh(Backend::Postgres).await;
        Store::open(StoreConfig::new(db.url.clone())).await.expect("opening the store (migrations)");
        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        fill(&mut conn, "old").await;
        sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
        fill(&mut conn, "new").await;

        let (ns, seqs) = (Value::from("new"), [Value::from(ROWS / 2 + 1), Value::from(ROWS / 2 + 7)]);
        let by_seqs = |first: Vec<Value>| -> Vec<Value> {
            let mut binds = first;
            binds.extend([seqs[0].clone(), seqs[1].clone()]);
            binds.extend(seqs.iter().cloned());
            binds
        };
        let key = |g: i64| vec![Value::from("bench"), Value::from(format!("id-{g}"))];
        let two_keys = [vec![ns.clone()], key(ROWS / 2), key(ROWS / 3)].concat();
        let cases: Vec<(&str, String, Vec<Value>)> = vec![
            ("the dedup lookup", events_by_keys(2), two_keys),
            ("GetEvent by source and id", event_by_source_id(), [vec![ns.clone()], key(ROWS / 2)].concat()),
            ("a notification's events", events_by_seqs(2), by_seqs(vec![ns.clone()])),
            ("claimed notifications", notifications_by_seqs("seq, trace", 2), by_seqs(vec![ns.clone()])),
            ("acks", ack_deliveries(2), by_seqs(vec![ns.clone(), Value::from("g")])),
        ];
        for (what, sql, binds) in cases {
            let (n, plan) = buffers(&mut conn, &sql, &binds).await;
            assert!(n <= MAX_BUFFERS, "{what}: {n} buffers (at most {MAX_BUFFERS}): {sql}\n{plan:#}");
        }
    }
}

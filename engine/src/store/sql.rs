//! The few places where SQLite and Postgres differ, and helpers for statements with a
//! variable number of rows.

use super::Backend;
use super::conn::Statement;

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

/// Binds the values of [`seqs_in`]: the lowest and the highest sequence, then each.
pub(crate) fn bind_seqs(mut q: Statement, seqs: &[i64]) -> Statement {
    let (lo, hi) = (seqs.iter().min().copied().unwrap_or(0), seqs.iter().max().copied().unwrap_or(-1));
    q = q.bind(lo).bind(hi);
    for s in seqs {
        q = q.bind(*s);
    }
    q
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

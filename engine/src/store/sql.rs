//! The few places where SQLite and Postgres differ, and helpers for statements with a
//! variable number of rows.

use super::Backend;

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

    /// The statement that opens a writer transaction.
    pub(crate) fn begin(self) -> &'static str {
        match self {
            // Take the write lock up front rather than on the first write.
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres => "BEGIN",
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

/// Returns `(k = $1 AND a = $p AND b = $p+1) OR ...` for `rows` pairs numbered from `first`,
/// with `$1` bound to the shared key `k`. Every term names a whole index prefix, so SQLite and
/// Postgres answer each from the index (a row-value `IN (VALUES ...)`, or the shared key outside
/// the `OR`, lets SQLite scan instead).
pub(crate) fn keyed_pairs(k: &str, a: &str, b: &str, rows: usize, first: usize) -> String {
    (0..rows)
        .map(|r| format!("({k} = $1 AND {a} = ${} AND {b} = ${})", first + 2 * r, first + 2 * r + 1))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Returns `$first, $first+1, ...` (n placeholders) for an `IN (...)` list.
pub(crate) fn list(n: usize, first: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
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
        assert_eq!(
            keyed_pairs("k", "a", "b", 2, 2),
            "(k = $1 AND a = $2 AND b = $3) OR (k = $1 AND a = $4 AND b = $5)"
        );
    }
}

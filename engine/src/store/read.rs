//! Reads: straight from the pool, never through the writer. Every query that serves a request is
//! scoped by namespace, so another namespace's data is never read or revealed; only the
//! operator's monitoring counts ([`Store::group_backlogs`]) span namespaces.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::conn::{Row, Statement, Value, fetch_pooled};
use super::rows::{
    DeliveryState, EVENT_COLUMNS, EventRow, LISTENER_COLUMNS, ListenerRow, NOTIFICATION_COLUMNS, NotificationRow,
    STATUS_ACTIVE, STATUS_DELETED, STATUS_FIRED, STATUS_TIMED_OUT, StoredRow, from_micros, kind_str, micros,
};
use super::sql::{self, CHUNK, bind_seqs};
use super::{
    DEFAULT_PAGE_SIZE, DeadLetter, EventKey, EventQuery, GroupBacklog, ListenerQuery, MAX_PAGE_SIZE, Notification,
    Page, PoolStats, Store,
};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::listener::{Listener, ListenerKind};

mod admin;
mod tokens;

/// A value bound to a dynamically built query (the values of the writer's statements: one way to
/// bind and to map rows for the whole store).
type Bind = Value;

pub(super) fn page_size(requested: u32) -> i64 {
    i64::from(if requested == 0 { DEFAULT_PAGE_SIZE } else { requested.min(MAX_PAGE_SIZE) })
}

/// Cuts a listing fetched with `size + 1` rows to `size` and returns the next page's token: the
/// key of the last row kept, when more rows follow, bound to the listing.
fn split_page<T>(mut rows: Vec<T>, size: i64, binding: Binding, key: impl Fn(&T) -> i64) -> (Vec<T>, Option<String>) {
    if rows.len() as i64 <= size {
        return (rows, None);
    }
    rows.truncate(size as usize);
    let next = rows.last().map(|r| binding.token(key(r)));
    (rows, next)
}

/// What a page token is bound to: the listing it continues (which call, namespace, filters), as
/// a 64-bit FNV-1a hash, stable across processes and versions. A token carries the key of the
/// last row of its page and this hash, so a token used in another namespace or with other
/// filters is refused (INVALID_ARGUMENT on `page_token`) instead of silently skipping rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Binding(u64);

impl Binding {
    pub(super) fn new(listing: &str, namespace: &str) -> Self {
        Self(0xcbf2_9ce4_8422_2325).with(Some(listing.as_bytes())).with(Some(namespace.as_bytes()))
    }

    /// Adds one filter; `None` (the filter unset) differs from every value.
    fn with(mut self, part: Option<&[u8]>) -> Self {
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        match part {
            None => eat(&[0]),
            Some(p) => {
                eat(&[1]);
                eat(&(p.len() as u64).to_le_bytes());
                eat(p);
            }
        }
        self
    }

    pub(super) fn with_str(self, part: Option<&str>) -> Self {
        self.with(part.map(str::as_bytes))
    }

    pub(super) fn with_int(self, part: Option<i64>) -> Self {
        self.with(part.map(i64::to_le_bytes).as_ref().map(|b| &b[..]))
    }

    pub(super) fn token(self, key: i64) -> String {
        format!("{key}.{:016x}", self.0)
    }

    /// Returns the key of a token bound to this listing; 0 for no token.
    pub(super) fn parse(self, token: Option<&str>) -> Result<i64> {
        let Some(token) = token.filter(|t| !t.is_empty()) else { return Ok(0) };
        let key = token
            .split_once('.')
            .filter(|(_, hash)| u64::from_str_radix(hash, 16).ok() == Some(self.0) && hash.len() == 16)
            .and_then(|(key, _)| key.parse::<i64>().ok())
            .filter(|key| *key >= 0);
        key.ok_or_else(|| {
            Error::invalid("page_token", "is not a token this server issued for this namespace and these filters")
        })
    }
}

fn listeners_binding(namespace: &str, query: &ListenerQuery) -> Binding {
    Binding::new("listeners", namespace)
        .with_str(query.kind.map(kind_str))
        .with_str(query.workflow_id.as_deref())
        .with_str(query.instance_id.as_deref())
        .with_int(Some(i64::from(query.include_finished)))
}

fn events_binding(namespace: &str, query: &EventQuery) -> Binding {
    Binding::new("events", namespace)
        .with_str(query.event_type.as_deref())
        .with_str(query.source.as_deref())
        .with_str(query.subject.as_deref())
        .with_int(query.start.map(micros))
        .with_int(query.end.map(micros))
}

impl Store {
    /// Runs `read` on a connection of the read pool, within the database timeout (waiting for the
    /// connection included); `Unavailable` once it has passed. A connection whose statement did
    /// not answer in time is closed instead of going back to the pool: it may never answer.
    pub(crate) async fn read<T>(&self, read: impl AsyncFnOnce(&mut AnyConnection) -> Result<T>) -> Result<T> {
        let timeout = self.inner.config.database_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut conn = match tokio::time::timeout_at(deadline, self.inner.read.acquire()).await {
            Ok(conn) => conn?,
            Err(_) => return Err(super::no_answer(timeout)),
        };
        match tokio::time::timeout_at(deadline, read(&mut conn)).await {
            Ok(result) => result,
            Err(_) => {
                conn.close_on_drop();
                Err(super::no_answer(timeout))
            }
        }
    }

    /// Returns a listener of the namespace, active or finished.
    pub async fn get_listener(&self, namespace: &str, id: Uuid) -> Result<Listener> {
        let sql = format!(
            "SELECT {LISTENER_COLUMNS} FROM listeners WHERE namespace = $1 AND id = $2 AND status <> '{STATUS_DELETED}'"
        );
        let row: Option<ListenerRow> = self.fetch_one(Statement::new(sql).bind(namespace).bind(id.to_string())).await?;
        row.ok_or_else(|| Error::NotFound(format!("listener {id}")))?.into_listener()
    }

    /// Lists listeners in creation order.
    pub async fn list_listeners(&self, namespace: &str, query: ListenerQuery) -> Result<Page<Listener>> {
        let binding = listeners_binding(namespace, &query);
        let after = binding.parse(query.page_token.as_deref())?;
        let mut sql = format!("SELECT {LISTENER_COLUMNS} FROM listeners WHERE namespace = $1 AND ord > $2");
        let mut binds = vec![Bind::Text(namespace.to_owned()), Bind::Int(after)];
        let mut and = |clause: &str, value: Bind, binds: &mut Vec<Bind>| {
            binds.push(value);
            sql.push_str(&format!(" AND {clause} ${}", binds.len()));
        };
        if let Some(kind) = query.kind {
            and("kind =", Bind::Text(kind_str(kind).into()), &mut binds);
        }
        if let Some(w) = query.workflow_id {
            and("kind = 'start' AND target =", Bind::Text(w), &mut binds);
        }
        if let Some(i) = query.instance_id {
            and("kind = 'wait' AND target =", Bind::Text(i), &mut binds);
        }
        let statuses = if query.include_finished {
            format!("'{STATUS_ACTIVE}', '{STATUS_FIRED}', '{STATUS_TIMED_OUT}'")
        } else {
            format!("'{STATUS_ACTIVE}'")
        };
        let size = page_size(query.page_size);
        sql.push_str(&format!(" AND status IN ({statuses}) ORDER BY ord LIMIT {}", size + 1));
        let rows: Vec<ListenerRow> = self.fetch(sql, binds).await?;
        let (rows, next) = split_page(rows, size, binding, |r| r.ord);
        let items = rows.into_iter().map(ListenerRow::into_listener).collect::<Result<_>>()?;
        Ok(Page { items, next_page_token: next })
    }

    /// Returns a stored event of the namespace.
    pub async fn get_event(&self, namespace: &str, key: EventKey) -> Result<Event> {
        let row: Option<EventRow> = match &key {
            EventKey::Sequence(seq) => {
                let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE namespace = $1 AND seq = $2");
                self.fetch_one(Statement::new(sql).bind(namespace).bind(*seq as i64)).await?
            }
            EventKey::SourceId { source, id } => {
                let q = Statement::new(sql::event_by_source_id()).bind(namespace);
                self.fetch_one(q.bind(source.as_str()).bind(id.as_str())).await?
            }
        };
        let what = match key {
            EventKey::Sequence(seq) => format!("event with sequence {seq}"),
            EventKey::SourceId { source, id } => format!("event {id:?} from {source:?}"),
        };
        row.ok_or(Error::NotFound(what))?.into_event()
    }

    /// Lists stored events in sequence order.
    pub async fn list_events(&self, namespace: &str, query: EventQuery) -> Result<Page<Event>> {
        let binding = events_binding(namespace, &query);
        let mut after = binding.parse(query.page_token.as_deref())?.max(query.after_sequence.unwrap_or(0) as i64);
        // Times bound the scan through sequence bounds (there is no index on times), and are
        // checked on each row. The start joins the one lower bound: SQLite seeks on one of
        // several, and may pick the other.
        if let Some(t) = query.start
            && let Some(first) = self.first_seq_at("events", "received_us", namespace, t).await?
        {
            after = after.max(first - 1);
        }
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE namespace = $1 AND seq > $2");
        let mut binds = vec![Bind::Text(namespace.to_owned()), Bind::Int(after)];
        let mut and = |clause: &str, value: Bind, binds: &mut Vec<Bind>| {
            binds.push(value);
            sql.push_str(&format!(" AND {clause} ${}", binds.len()));
        };
        if let Some(t) = query.event_type {
            and("type =", Bind::Text(t), &mut binds);
        }
        if let Some(s) = query.source {
            and("source =", Bind::Text(s), &mut binds);
        }
        if let Some(s) = query.subject {
            and("subject =", Bind::Text(s), &mut binds);
        }
        if let Some(t) = query.start {
            and("received_us >=", Bind::Int(micros(t)), &mut binds);
        }
        if let Some(t) = query.end {
            if let Some(first) = self.first_seq_at("events", "received_us", namespace, t).await? {
                and("seq <", Bind::Int(first), &mut binds);
            }
            and("received_us <", Bind::Int(micros(t)), &mut binds);
        }
        let size = page_size(query.page_size);
        sql.push_str(&format!(" ORDER BY seq LIMIT {}", size + 1));
        let rows: Vec<EventRow> = self.fetch(sql, binds).await?;
        let (rows, next) = split_page(rows, size, binding, |r| r.seq);
        let items = rows.into_iter().map(EventRow::into_event).collect::<Result<_>>()?;
        Ok(Page { items, next_page_token: next })
    }

    /// Runs a listing query built at run time with its bound values.
    pub(super) async fn fetch<O: StoredRow>(&self, sql: String, binds: Vec<Bind>) -> Result<Vec<O>> {
        self.rows(Statement::with(sql, binds)).await?.iter().map(O::read).collect()
    }

    /// Returns the lowest sequence of `table` in `namespace` from which on `column` is at least
    /// `t` (see [`sql::first_seq_at`]); None if the namespace has no rows.
    async fn first_seq_at(&self, table: &str, column: &str, namespace: &str, t: DateTime<Utc>) -> Result<Option<i64>> {
        let q = Statement::new(sql::first_seq_at(table, column)).bind(namespace).bind(micros(t));
        match self.rows(q).await?.first() {
            Some(row) => row.get(0),
            None => Ok(None),
        }
    }

    /// Runs a query and returns its first row, if any.
    async fn fetch_one<O: StoredRow>(&self, statement: Statement) -> Result<Option<O>> {
        self.rows(statement).await?.first().map(O::read).transpose()
    }

    /// Runs a query on the read pool, within the database timeout.
    async fn rows(&self, statement: Statement) -> Result<Vec<Row>> {
        self.read(async |c| fetch_pooled(c, statement).await).await
    }

    /// Runs a `SELECT COUNT(*)` query.
    async fn count(&self, statement: Statement) -> Result<u64> {
        let rows = self.rows(statement).await?;
        let row = rows.first().ok_or_else(|| Error::Internal("a count returned no row".into()))?;
        Ok(row.get::<i64>(0)? as u64)
    }

    /// Lists a group's dead letters in sequence order; NotFound if the group does not exist.
    pub async fn list_dead_letters(
        &self,
        namespace: &str,
        group: &str,
        page_size_requested: u32,
        page_token: Option<&str>,
    ) -> Result<Page<DeadLetter>> {
        let binding = Binding::new("dead_letters", namespace).with_str(Some(group));
        let after = binding.parse(page_token)?;
        let size = page_size(page_size_requested);
        let columns = NOTIFICATION_COLUMNS.split(", ").map(|c| format!("n.{c}")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT {columns}, d.attempt, d.last_error, d.dead_us FROM deliveries d \
             JOIN notifications n ON n.namespace = d.namespace AND n.seq = d.seq \
             WHERE d.namespace = $1 AND d.group_name = $2 AND d.state = '{}' AND d.seq > $3 \
             ORDER BY d.seq LIMIT {}",
            DeliveryState::Dead,
            size + 1
        );
        let rows = self.rows(Statement::new(sql).bind(namespace).bind(group).bind(after)).await?;
        if rows.is_empty() && !self.group_exists(namespace, group).await? {
            return Err(super::writer::group_not_found(group));
        }
        let mut notifications = rows
            .iter()
            .map(|row| NotificationRow::read(row).and_then(NotificationRow::into_notification))
            .collect::<Result<Vec<_>>>()?;
        self.load_events(namespace, &mut notifications).await?;
        let mut items = Vec::with_capacity(rows.len());
        for (row, notification) in rows.iter().zip(notifications) {
            items.push(DeadLetter {
                notification,
                // The columns after the notification's.
                attempt: row.get::<i64>(10)? as u32,
                last_error: row.get::<Option<String>>(11)?.unwrap_or_default(),
                dead_at: from_micros(row.get::<Option<i64>>(12)?.unwrap_or_default()),
            });
        }
        let next = (items.len() as i64 > size).then(|| {
            items.truncate(size as usize);
            items.last().map(|d| binding.token(d.notification.sequence as i64))
        });
        Ok(Page { items, next_page_token: next.flatten() })
    }

    async fn group_exists(&self, namespace: &str, group: &str) -> Result<bool> {
        let q = Statement::new("SELECT 1 FROM consumer_groups WHERE namespace = $1 AND name = $2");
        Ok(!self.rows(q.bind(namespace).bind(group)).await?.is_empty())
    }

    /// Loads the contributing events of notifications of one namespace that are still
    /// retained, in each notification's order: one query per [`CHUNK`] distinct events, however
    /// many notifications share them.
    pub(crate) async fn load_events(&self, namespace: &str, notifications: &mut [Notification]) -> Result<()> {
        let mut seqs: Vec<u64> = notifications.iter().flat_map(|n| n.event_sequences.iter().copied()).collect();
        seqs.sort_unstable();
        seqs.dedup();
        let mut by_seq: HashMap<u64, Event> = HashMap::with_capacity(seqs.len());
        for chunk in seqs.chunks(CHUNK) {
            let q = bind_seqs(Statement::new(sql::events_by_seqs(chunk.len())).bind(namespace), chunk);
            for row in self.rows(q).await? {
                let e = EventRow::read(&row)?.into_event()?;
                by_seq.insert(e.sequence, e);
            }
        }
        for n in notifications {
            n.events = n.event_sequences.iter().filter_map(|s| by_seq.get(s).cloned()).collect();
        }
        Ok(())
    }

    /// Counts every consumer group's notifications by state, at a cost that does not grow with
    /// the backlog: this runs at every scrape of the metrics.
    ///
    /// Those past a group's read position are not counted row by row: a namespace's
    /// notification sequences have no gaps past any group's read position (retention only
    /// removes notifications every group has read; a purge of the namespace, which removes its
    /// groups too, may leave the counts off while it runs), so they are the namespace's last
    /// sequence less the later of the read position and the one before its oldest stored
    /// notification (a group that starts at the earliest after retention). Deliveries are
    /// counted through the two partial indexes, live (ready and leased) and dead (Postgres may
    /// scan the table instead where its statistics say most deliveries are live).
    pub async fn group_backlogs(&self) -> Result<Vec<GroupBacklog>> {
        let mut out: BTreeMap<(String, String), GroupBacklog> = BTreeMap::new();
        let unread = self.rows(Statement::new(sql::GROUP_POSITIONS)).await?;
        for row in unread {
            let (namespace, group): (String, String) = (row.get(0)?, row.get(1)?);
            let (read_seq, next): (i64, i64) = (row.get(2)?, row.get(3)?);
            let pending = stored_past(read_seq, next, row.get(4)?);
            let key = (namespace.clone(), group.clone());
            out.insert(key, GroupBacklog { namespace, group, pending, leased: 0, dead: 0 });
        }
        let live = self.rows(Statement::new(sql::live_deliveries_by_group())).await?;
        for row in live {
            let key: (String, String) = (row.get(0)?, row.get(1)?);
            let state: String = row.get(2)?;
            let n = row.get::<i64>(3)? as u64;
            let Some(b) = out.get_mut(&key) else { continue };
            // Only ready and leased rows come here (dead letters are counted below).
            if matches!(state.parse(), Ok(DeliveryState::Leased)) {
                b.leased += n;
            } else {
                b.pending += n;
            }
        }
        let dead = self.rows(Statement::new(sql::dead_letters_by_group())).await?;
        for row in dead {
            let key: (String, String) = (row.get(0)?, row.get(1)?);
            if let Some(b) = out.get_mut(&key) {
                b.dead += row.get::<i64>(2)? as u64;
            }
        }
        Ok(out.into_values().collect())
    }

    /// Returns the read pool's size and use.
    pub fn pool_stats(&self) -> PoolStats {
        let pool = &self.inner.read;
        PoolStats { max: self.inner.config.pool_size.max(1), open: pool.size(), idle: pool.num_idle() as u32 }
    }

    /// Counts the listeners with partial state for `kind` listeners of the namespace (for
    /// tests and diagnostics).
    pub async fn partial_count(&self, namespace: &str, kind: Option<ListenerKind>) -> Result<u64> {
        let kind_clause = kind.map(|k| format!(" AND l.kind = '{}'", kind_str(k))).unwrap_or_default();
        let sql = format!(
            "SELECT COUNT(*) FROM partials p JOIN listeners l ON l.id = p.listener_id WHERE l.namespace = $1{kind_clause}"
        );
        self.count(Statement::new(sql).bind(namespace)).await
    }
}

/// How many rows of a namespace's sequence (its events or its notifications) are stored past
/// `position`, from the next sequence to give and the oldest stored one (none: nothing is
/// stored), where the stored ones have no gaps past `position`: a group's unread notifications
/// (see [`Store::group_backlogs`]), or every stored event (`position` 0, see
/// [`Store::list_namespaces`]).
pub(crate) fn stored_past(position: i64, next_seq: i64, oldest: Option<i64>) -> u64 {
    match oldest {
        Some(oldest) => (next_seq - 1 - position.max(oldest - 1)).max(0) as u64,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_their_listing() {
        let query = EventQuery { event_type: Some("a".into()), ..EventQuery::default() };
        let binding = events_binding("ns", &query);
        let token = binding.token(42);
        assert_eq!(binding.parse(Some(&token)).unwrap(), 42);
        assert_eq!(binding.parse(None).unwrap(), 0);
        assert_eq!(binding.parse(Some("")).unwrap(), 0);
        let others = [
            events_binding("other", &query),
            events_binding("ns", &EventQuery::default()),
            events_binding("ns", &EventQuery { source: Some("a".into()), ..EventQuery::default() }),
            events_binding("ns", &EventQuery { start: Some(chrono::Utc::now()), ..query.clone() }),
            listeners_binding("ns", &ListenerQuery::default()),
            Binding::new("dead_letters", "ns").with_str(Some("g")),
        ];
        for other in others {
            assert_ne!(other, binding);
            let err = other.parse(Some(&token)).unwrap_err();
            assert!(matches!(&err, Error::InvalidArgument(v) if v[0].field == "page_token"), "{err:?}");
        }
        for junk in ["42", "x.y", "-1.0000000000000000", &format!("{token}0"), &token.replace("42.", "x.")] {
            assert!(binding.parse(Some(junk)).is_err(), "{junk}");
        }
    }

    #[test]
    fn unset_filters_differ_from_every_value() {
        let unset = events_binding("ns", &EventQuery::default());
        let empty = events_binding("ns", &EventQuery { event_type: Some(String::new()), ..EventQuery::default() });
        let shifted = events_binding("ns", &EventQuery { source: Some(String::new()), ..EventQuery::default() });
        assert_ne!(unset, empty);
        assert_ne!(empty, shifted);
    }
}

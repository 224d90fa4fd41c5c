//! Reads: straight from the pool, never through the writer. Every query that serves a request is
//! scoped by namespace, so another namespace's data is never read or revealed; only the
//! operator's monitoring counts ([`Store::group_backlogs`]) span namespaces.

use std::collections::{BTreeMap, HashMap};

use sqlx::{AnyConnection, AssertSqlSafe, FromRow, Row};
use uuid::Uuid;

use super::rows::{
    EVENT_COLUMNS, EventRow, LISTENER_COLUMNS, ListenerRow, NOTIFICATION_COLUMNS, NotificationRow, STATUS_ACTIVE,
    STATUS_DELETED, STATUS_FIRED, STATUS_TIMED_OUT, from_micros, kind_str, micros,
};
use super::sql::{CHUNK, list};
use super::{
    DEFAULT_PAGE_SIZE, DeadLetter, EventKey, EventQuery, GroupBacklog, ListenerQuery, MAX_PAGE_SIZE, Notification,
    Page, PoolStats, Store,
};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::listener::{Listener, ListenerKind};

/// A value bound to a dynamically built query.
enum Bind {
    Int(i64),
    Text(String),
}

fn page_size(requested: u32) -> i64 {
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
struct Binding(u64);

impl Binding {
    fn new(listing: &str, namespace: &str) -> Self {
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

    fn with_str(self, part: Option<&str>) -> Self {
        self.with(part.map(str::as_bytes))
    }

    fn with_int(self, part: Option<i64>) -> Self {
        self.with(part.map(i64::to_le_bytes).as_ref().map(|b| &b[..]))
    }

    fn token(self, key: i64) -> String {
        format!("{key}.{:016x}", self.0)
    }

    /// Returns the key of a token bound to this listing; 0 for no token.
    fn parse(self, token: Option<&str>) -> Result<i64> {
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
    pub(crate) async fn read<T>(&self, read: impl AsyncFnOnce(&mut AnyConnection) -> sqlx::Result<T>) -> Result<T> {
        let timeout = self.inner.config.database_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut conn = match tokio::time::timeout_at(deadline, self.inner.read.acquire()).await {
            Ok(conn) => conn?,
            Err(_) => return Err(super::no_answer(timeout)),
        };
        match tokio::time::timeout_at(deadline, read(&mut conn)).await {
            Ok(result) => Ok(result?),
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
        let row: Option<ListenerRow> = self
            .read(async |c| {
                sqlx::query_as(AssertSqlSafe(sql)).bind(namespace).bind(id.to_string()).fetch_optional(c).await
            })
            .await?;
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
                self.read(async |c| {
                    sqlx::query_as(AssertSqlSafe(sql)).bind(namespace).bind(*seq as i64).fetch_optional(c).await
                })
                .await?
            }
            EventKey::SourceId { source, id } => {
                let sql =
                    format!("SELECT {EVENT_COLUMNS} FROM events WHERE namespace = $1 AND source = $2 AND id = $3");
                self.read(async |c| {
                    let q = sqlx::query_as(AssertSqlSafe(sql)).bind(namespace).bind(source.as_str());
                    q.bind(id.as_str()).fetch_optional(c).await
                })
                .await?
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
        let after = binding.parse(query.page_token.as_deref())?.max(query.after_sequence.unwrap_or(0) as i64);
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
    async fn fetch<O>(&self, sql: String, binds: Vec<Bind>) -> Result<Vec<O>>
    where
        O: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        let mut q = sqlx::query_as::<_, O>(AssertSqlSafe(sql));
        for b in binds {
            q = match b {
                Bind::Int(i) => q.bind(i),
                Bind::Text(t) => q.bind(t),
            };
        }
        self.read(async |c| q.fetch_all(c).await).await
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
             WHERE d.namespace = $1 AND d.group_name = $2 AND d.state = 'dead' AND d.seq > $3 \
             ORDER BY d.seq LIMIT {}",
            size + 1
        );
        let rows = self
            .read(async |c| sqlx::query(AssertSqlSafe(sql)).bind(namespace).bind(group).bind(after).fetch_all(c).await)
            .await?;
        if rows.is_empty() && !self.group_exists(namespace, group).await? {
            return Err(super::writer::group_not_found(group));
        }
        let mut notifications = rows
            .iter()
            .map(|row| NotificationRow::from_row(row).map_err(Error::from).and_then(NotificationRow::into_notification))
            .collect::<Result<Vec<_>>>()?;
        self.load_events(namespace, &mut notifications).await?;
        let mut items = Vec::with_capacity(rows.len());
        for (row, notification) in rows.iter().zip(notifications) {
            items.push(DeadLetter {
                notification,
                attempt: row.try_get::<i64, _>("attempt")? as u32,
                last_error: row.try_get::<Option<String>, _>("last_error")?.unwrap_or_default(),
                dead_at: from_micros(row.try_get::<Option<i64>, _>("dead_us")?.unwrap_or_default()),
            });
        }
        let next = (items.len() as i64 > size).then(|| {
            items.truncate(size as usize);
            items.last().map(|d| binding.token(d.notification.sequence as i64))
        });
        Ok(Page { items, next_page_token: next.flatten() })
    }

    async fn group_exists(&self, namespace: &str, group: &str) -> Result<bool> {
        let found = self
            .read(async |c| {
                let q = sqlx::query("SELECT 1 FROM consumer_groups WHERE namespace = $1 AND name = $2");
                q.bind(namespace).bind(group).fetch_optional(c).await
            })
            .await?;
        Ok(found.is_some())
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
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE namespace = $1 AND seq IN ({})",
                list(chunk.len(), 2)
            );
            let mut q = sqlx::query_as::<_, EventRow>(AssertSqlSafe(sql)).bind(namespace);
            for s in chunk {
                q = q.bind(*s as i64);
            }
            for row in self.read(async |c| q.fetch_all(c).await).await? {
                let e = row.into_event()?;
                by_seq.insert(e.sequence, e);
            }
        }
        for n in notifications {
            n.events = n.event_sequences.iter().filter_map(|s| by_seq.get(s).cloned()).collect();
        }
        Ok(())
    }

    /// Counts the notifications leased to `consumer` whose lease has not expired.
    pub async fn leased_count(&self, namespace: &str, group: &str, consumer: &str) -> Result<u64> {
        let q = sqlx::query_scalar(
            "SELECT COUNT(*) FROM deliveries WHERE namespace = $1 AND group_name = $2 AND consumer = $3 \
             AND state = 'leased' AND available_us > $4",
        )
        .bind(namespace)
        .bind(group)
        .bind(consumer)
        .bind(micros(chrono::Utc::now()));
        let n: i64 = self.read(async |c| q.fetch_one(c).await).await?;
        Ok(n as u64)
    }

    /// Counts every consumer group's notifications by state.
    pub async fn group_backlogs(&self) -> Result<Vec<GroupBacklog>> {
        let mut out: BTreeMap<(String, String), GroupBacklog> = BTreeMap::new();
        let unread = sqlx::query(
            "SELECT g.namespace, g.name, (SELECT COUNT(*) FROM notifications n \
             WHERE n.namespace = g.namespace AND n.seq > g.read_seq) FROM consumer_groups g",
        );
        let unread = self.read(async |c| unread.fetch_all(c).await).await?;
        for row in unread {
            let (namespace, group): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            let pending = row.try_get::<i64, _>(2)? as u64;
            let key = (namespace.clone(), group.clone());
            out.insert(key, GroupBacklog { namespace, group, pending, leased: 0, dead: 0 });
        }
        let states = sqlx::query(
            "SELECT namespace, group_name, state, COUNT(*) FROM deliveries GROUP BY namespace, group_name, state",
        );
        let states = self.read(async |c| states.fetch_all(c).await).await?;
        for row in states {
            let key: (String, String) = (row.try_get(0)?, row.try_get(1)?);
            let state: String = row.try_get(2)?;
            let n = row.try_get::<i64, _>(3)? as u64;
            let Some(b) = out.get_mut(&key) else { continue };
            match state.as_str() {
                "leased" => b.leased += n,
                "dead" => b.dead += n,
                _ => b.pending += n,
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
        let n: i64 =
            self.read(async |c| sqlx::query_scalar(AssertSqlSafe(sql)).bind(namespace).fetch_one(c).await).await?;
        Ok(n as u64)
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

//! Reads: straight from the pool, never through the writer. Every query that serves a request is
//! scoped by namespace, so another namespace's data is never read or revealed; only the
//! operator's monitoring counts ([`Store::group_backlogs`]) span namespaces.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::conn::{Row, Statement, Value, fetch_pooled};
use super::rows::{
    DeliveryState, EVENT_COLUMNS, EventRow, LISTENER_COLUMNS, ListenerRow, NOTIFICATION_COLUMNS, NotificationRow,
    STATUS_ACTIVE, STATUS_DELETED, STATUS_FIRED, STATUS_TIMED_OUT, StoredRow, from_micros, kind_str, micros,
};
use super::sql::{CHUNK, list};
use super::{
    DEFAULT_PAGE_SIZE, DeadLetter, EventKey, EventQuery, GroupBacklog, ListenerQuery, MAX_PAGE_SIZE, Notification,
    Page, PoolStats, Store,
};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::listener::{Listener, ListenerKind};

/// A value bound to a dynamically built query (the values of the writer's statements: one way to
/// bind and to map rows for the whole store).
type Bind = Value;

fn page_size(requested: u32) -> i64 {
    i64::from(if requested == 0 { DEFAULT_PAGE_SIZE } else { requested.min(MAX_PAGE_SIZE) })
}

/// Cuts a listing fetched with `size + 1` rows to `size` and returns the next page's token: the
/// key of the last row kept, when more rows follow.
fn split_page<T>(mut rows: Vec<T>, size: i64, key: impl Fn(&T) -> i64) -> (Vec<T>, Option<String>) {
    if rows.len() as i64 <= size {
        return (rows, None);
    }
    rows.truncate(size as usize);
    let next = rows.last().map(|r| key(r).to_string());
    (rows, next)
}

fn parse_token(token: Option<&str>) -> Result<i64> {
    match token {
        None | Some("") => Ok(0),
        Some(t) => t
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| Error::invalid("page_token", "is not a token this server issued")),
    }
}

impl Store {
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
        let after = parse_token(query.page_token.as_deref())?;
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
        let (rows, next) = split_page(rows, size, |r| r.ord);
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
                let sql =
                    format!("SELECT {EVENT_COLUMNS} FROM events WHERE namespace = $1 AND source = $2 AND id = $3");
                self.fetch_one(Statement::new(sql).bind(namespace).bind(source.as_str()).bind(id.as_str())).await?
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
        let after = parse_token(query.page_token.as_deref())?.max(query.after_sequence.unwrap_or(0) as i64);
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
        let (rows, next) = split_page(rows, size, |r| r.seq);
        let items = rows.into_iter().map(EventRow::into_event).collect::<Result<_>>()?;
        Ok(Page { items, next_page_token: next })
    }

    /// Runs a listing query built at run time with its bound values.
    async fn fetch<O: StoredRow>(&self, sql: String, binds: Vec<Bind>) -> Result<Vec<O>> {
        self.rows(Statement::with(sql, binds)).await?.iter().map(O::read).collect()
    }

    /// Runs a query and returns its first row, if any.
    async fn fetch_one<O: StoredRow>(&self, statement: Statement) -> Result<Option<O>> {
        self.rows(statement).await?.first().map(O::read).transpose()
    }

    /// Runs a query on the read pool.
    async fn rows(&self, statement: Statement) -> Result<Vec<Row>> {
        fetch_pooled(&self.inner.read, statement).await
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
        let after = parse_token(page_token)?;
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
            items.last().map(|d| d.notification.sequence.to_string())
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
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE namespace = $1 AND seq IN ({})",
                list(chunk.len(), 2)
            );
            let mut q = Statement::new(sql).bind(namespace);
            for s in chunk {
                q = q.bind(*s as i64);
            }
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

    /// Counts the notifications leased to `consumer` whose lease has not expired.
    pub async fn leased_count(&self, namespace: &str, group: &str, consumer: &str) -> Result<u64> {
        let sql = format!(
            "SELECT COUNT(*) FROM deliveries WHERE namespace = $1 AND group_name = $2 AND consumer = $3 \
             AND state = '{}' AND available_us > $4",
            DeliveryState::Leased
        );
        let q = Statement::new(sql).bind(namespace).bind(group).bind(consumer).bind(micros(chrono::Utc::now()));
        self.count(q).await
    }

    /// Counts every consumer group's notifications by state.
    pub async fn group_backlogs(&self) -> Result<Vec<GroupBacklog>> {
        let mut out: BTreeMap<(String, String), GroupBacklog> = BTreeMap::new();
        let unread = self
            .rows(Statement::new(
                "SELECT g.namespace, g.name, (SELECT COUNT(*) FROM notifications n \
                 WHERE n.namespace = g.namespace AND n.seq > g.read_seq) FROM consumer_groups g",
            ))
            .await?;
        for row in unread {
            let (namespace, group): (String, String) = (row.get(0)?, row.get(1)?);
            let pending = row.get::<i64>(2)? as u64;
            let key = (namespace.clone(), group.clone());
            out.insert(key, GroupBacklog { namespace, group, pending, leased: 0, dead: 0 });
        }
        let states = self
            .rows(Statement::new(
                "SELECT namespace, group_name, state, COUNT(*) FROM deliveries GROUP BY namespace, group_name, state",
            ))
            .await?;
        for row in states {
            let key: (String, String) = (row.get(0)?, row.get(1)?);
            let state: String = row.get(2)?;
            let n = row.get::<i64>(3)? as u64;
            let Some(b) = out.get_mut(&key) else { continue };
            match state.parse() {
                Ok(DeliveryState::Leased) => b.leased += n,
                Ok(DeliveryState::Dead) => b.dead += n,
                Ok(DeliveryState::Ready) | Err(_) => b.pending += n,
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

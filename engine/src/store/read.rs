//! Reads: straight from the pool, never through the writer. Every query that serves a request is
//! scoped by namespace, so another namespace's data is never read or revealed; only the
//! operator's monitoring counts ([`Store::group_backlogs`]) span namespaces.

use std::collections::{BTreeMap, HashMap};

use sqlx::{AssertSqlSafe, FromRow, Row};
use uuid::Uuid;

use super::rows::{
    DeliveryState, EVENT_COLUMNS, EventRow, LISTENER_COLUMNS, ListenerRow, NOTIFICATION_COLUMNS, NotificationRow,
    STATUS_ACTIVE, STATUS_DELETED, STATUS_FIRED, STATUS_TIMED_OUT, from_micros, kind_str, micros,
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
        let row: Option<ListenerRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(namespace)
            .bind(id.to_string())
            .fetch_optional(&self.inner.read)
            .await?;
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
                sqlx::query_as(AssertSqlSafe(sql))
                    .bind(namespace)
                    .bind(*seq as i64)
                    .fetch_optional(&self.inner.read)
                    .await?
            }
            EventKey::SourceId { source, id } => {
                let sql =
                    format!("SELECT {EVENT_COLUMNS} FROM events WHERE namespace = $1 AND source = $2 AND id = $3");
                sqlx::query_as(AssertSqlSafe(sql))
                    .bind(namespace)
                    .bind(source.as_str())
                    .bind(id.as_str())
                    .fetch_optional(&self.inner.read)
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
        Ok(q.fetch_all(&self.inner.read).await?)
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
        let rows =
            sqlx::query(AssertSqlSafe(sql)).bind(namespace).bind(group).bind(after).fetch_all(&self.inner.read).await?;
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
            items.last().map(|d| d.notification.sequence.to_string())
        });
        Ok(Page { items, next_page_token: next.flatten() })
    }

    async fn group_exists(&self, namespace: &str, group: &str) -> Result<bool> {
        let found = sqlx::query("SELECT 1 FROM consumer_groups WHERE namespace = $1 AND name = $2")
            .bind(namespace)
            .bind(group)
            .fetch_optional(&self.inner.read)
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
            for row in q.fetch_all(&self.inner.read).await? {
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
        let sql = format!(
            "SELECT COUNT(*) FROM deliveries WHERE namespace = $1 AND group_name = $2 AND consumer = $3 \
             AND state = '{}' AND available_us > $4",
            DeliveryState::Leased
        );
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(namespace)
            .bind(group)
            .bind(consumer)
            .bind(micros(chrono::Utc::now()))
            .fetch_one(&self.inner.read)
            .await?;
        Ok(n as u64)
    }

    /// Counts every consumer group's notifications by state.
    pub async fn group_backlogs(&self) -> Result<Vec<GroupBacklog>> {
        let mut out: BTreeMap<(String, String), GroupBacklog> = BTreeMap::new();
        let unread = sqlx::query(
            "SELECT g.namespace, g.name, (SELECT COUNT(*) FROM notifications n \
             WHERE n.namespace = g.namespace AND n.seq > g.read_seq) FROM consumer_groups g",
        )
        .fetch_all(&self.inner.read)
        .await?;
        for row in unread {
            let (namespace, group): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            let pending = row.try_get::<i64, _>(2)? as u64;
            let key = (namespace.clone(), group.clone());
            out.insert(key, GroupBacklog { namespace, group, pending, leased: 0, dead: 0 });
        }
        let states = sqlx::query(
            "SELECT namespace, group_name, state, COUNT(*) FROM deliveries GROUP BY namespace, group_name, state",
        )
        .fetch_all(&self.inner.read)
        .await?;
        for row in states {
            let key: (String, String) = (row.try_get(0)?, row.try_get(1)?);
            let state: String = row.try_get(2)?;
            let n = row.try_get::<i64, _>(3)? as u64;
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
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql)).bind(namespace).fetch_one(&self.inner.read).await?;
        Ok(n as u64)
    }
}

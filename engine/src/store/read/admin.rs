//! Reads of the administration calls: namespaces with their counts, consumer groups with their
//! backlog, and the partial state of ALL listeners.
//!
//! Hazard: each count is its own statement, so the counts of one answer are not one snapshot:
//! a publish or a claim between two of them shows in one and not the other. A group's unread
//! notifications are counted from sequences when it takes every notification; with filters
//! (kinds, workflows) they are counted one by one, so a far-behind filtered group makes the
//! call slow, not wrong.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Bind, Binding, page_size, stored_past};
use crate::error::{Error, Result};
use crate::event::EventRef;
use crate::listener::Condition;
use crate::store::conn::Statement;
use crate::store::rows::{DeliveryState, GroupSettings, STATUS_ACTIVE, from_json, from_micros};
use crate::store::{
    CollectedEvent, ConsumerGroup, NamespaceHead, NamespaceInfo, Page, PartialState, PartialStates, Store, writer,
};

/// Most partial states [`Store::partial_states`] returns.
pub(crate) const MAX_PARTIAL_STATES: usize = 1000;

impl Binding {
    /// Returns a token that continues a listing ordered by name after `name`.
    pub(super) fn name_token(self, name: &str) -> String {
        format!("{name}.{:016x}", self.0)
    }

    /// Returns the name a token of [`Self::name_token`] continues after; `None` for no token.
    pub(super) fn parse_name(self, token: Option<&str>) -> Result<Option<String>> {
        let Some(token) = token.filter(|t| !t.is_empty()) else { return Ok(None) };
        let name = token
            .rsplit_once('.')
            .filter(|(name, hash)| {
                !name.is_empty() && hash.len() == 16 && u64::from_str_radix(hash, 16).ok() == Some(self.0)
            })
            .map(|(name, _)| name.to_owned());
        name.map(Some).ok_or_else(|| Error::invalid("page_token", "is not a token this server issued for this listing"))
    }
}

/// Cuts a listing by name fetched with `size + 1` rows and returns the next page's token.
pub(super) fn split_named<T>(
    mut rows: Vec<T>,
    size: i64,
    binding: Binding,
    name: impl Fn(&T) -> &str,
) -> (Vec<T>, Option<String>) {
    if rows.len() as i64 <= size {
        return (rows, None);
    }
    rows.truncate(size as usize);
    let next = rows.last().map(|r| binding.name_token(name(r)));
    (rows, next)
}

impl Store {
    /// Lists the namespaces in name order, with their counts. Stored events are counted from
    /// sequences, not row by row: a namespace's event sequences have no gaps from its oldest
    /// stored one on (retention removes the oldest first; a purge leaves the count off while it
    /// runs, and so does a step back of the clock, as for time bounds).
    pub async fn list_namespaces(
        &self,
        page_size_requested: u32,
        page_token: Option<&str>,
    ) -> Result<Page<NamespaceInfo>> {
        let binding = Binding::new("namespaces", "");
        let after = binding.parse_name(page_token)?.unwrap_or_default();
        let size = page_size(page_size_requested);
        let sql = format!(
            "SELECT n.name, n.next_event_seq, n.next_notification_seq, \
             (SELECT MIN(e.seq) FROM events e WHERE e.namespace = n.name), \
             (SELECT COUNT(*) FROM listeners l WHERE l.namespace = n.name AND l.status = '{STATUS_ACTIVE}'), \
             (SELECT COUNT(*) FROM consumer_groups g WHERE g.namespace = n.name) \
             FROM namespaces n WHERE n.name > $1 ORDER BY n.name LIMIT {}",
            size + 1
        );
        let rows = self.rows(Statement::new(sql).bind(after)).await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let next_event_seq: i64 = row.get(1)?;
            items.push(NamespaceInfo {
                name: row.get(0)?,
                last_event_sequence: (next_event_seq - 1).max(0) as u64,
                last_notification_sequence: (row.get::<i64>(2)? - 1).max(0) as u64,
                events: stored_past(0, next_event_seq, row.get(3)?),
                active_listeners: row.get::<i64>(4)? as u64,
                consumer_groups: row.get::<i64>(5)? as u64,
            });
        }
        let (items, next) = split_named(items, size, binding, |n| n.name.as_str());
        Ok(Page { items, next_page_token: next })
    }

    /// Returns where a namespace's sequences stand, from its row alone (no counting); NotFound
    /// if the server holds no namespace of that name.
    pub async fn namespace_head(&self, namespace: &str) -> Result<NamespaceHead> {
        let q = Statement::new("SELECT next_event_seq, next_notification_seq FROM namespaces WHERE name = $1");
        let rows = self.rows(q.bind(namespace)).await?;
        let row = rows.first().ok_or_else(|| Error::NotFound(format!("namespace {namespace:?}")))?;
        Ok(NamespaceHead {
            last_event_sequence: (row.get::<i64>(0)? - 1).max(0) as u64,
            last_notification_sequence: (row.get::<i64>(1)? - 1).max(0) as u64,
        })
    }

    /// Lists a namespace's consumer groups in name order, with their backlog.
    pub async fn list_groups(
        &self,
        namespace: &str,
        page_size_requested: u32,
        page_token: Option<&str>,
    ) -> Result<Page<ConsumerGroup>> {
        let binding = Binding::new("consumer_groups", namespace);
        let after = binding.parse_name(page_token)?.unwrap_or_default();
        let size = page_size(page_size_requested);
        let sql = format!(
            "SELECT name, settings, read_seq, created_us FROM consumer_groups WHERE namespace = $1 AND name > $2 \
             ORDER BY name LIMIT {}",
            size + 1
        );
        let rows = self.rows(Statement::new(sql).bind(namespace).bind(after)).await?;
        let mut groups = Vec::with_capacity(rows.len());
        for row in &rows {
            let settings: GroupSettings = from_json(&row.get::<String>(1)?)?;
            groups.push(self.group_detail(namespace, row.get(0)?, settings, row.get(2)?, row.get(3)?).await?);
        }
        let (items, next) = split_named(groups, size, binding, |g| g.name.as_str());
        Ok(Page { items, next_page_token: next })
    }

    /// Returns one consumer group with its backlog; NotFound if it does not exist.
    pub async fn get_group(&self, namespace: &str, group: &str) -> Result<ConsumerGroup> {
        let q = Statement::new(
            "SELECT settings, read_seq, created_us FROM consumer_groups WHERE namespace = $1 AND name = $2",
        );
        let rows = self.rows(q.bind(namespace).bind(group)).await?;
        let row = rows.first().ok_or_else(|| writer::group_not_found(group))?;
        let settings: GroupSettings = from_json(&row.get::<String>(0)?)?;
        self.group_detail(namespace, group.to_owned(), settings, row.get(1)?, row.get(2)?).await
    }

    /// Counts a group's deliveries by state and its unread notifications that pass its filters.
    async fn group_detail(
        &self,
        namespace: &str,
        name: String,
        settings: GroupSettings,
        read_seq: i64,
        created_us: i64,
    ) -> Result<ConsumerGroup> {
        let q = Statement::new(
            "SELECT state, COUNT(*) FROM deliveries WHERE namespace = $1 AND group_name = $2 GROUP BY state",
        );
        let (mut ready, mut leased, mut dead) = (0, 0, 0);
        for row in self.rows(q.bind(namespace).bind(name.as_str())).await? {
            let n = row.get::<i64>(1)? as u64;
            match row.get::<String>(0)?.parse::<DeliveryState>()? {
                DeliveryState::Ready => ready += n,
                DeliveryState::Leased => leased += n,
                DeliveryState::Dead => dead += n,
            }
        }
        let q = Statement::new(format!(
            "SELECT MIN(n.created_us) FROM deliveries d JOIN notifications n ON n.namespace = d.namespace \
             AND n.seq = d.seq WHERE d.namespace = $1 AND d.group_name = $2 AND d.state = '{}'",
            DeliveryState::Ready
        ));
        let oldest_ready = self.min_time(q.bind(namespace).bind(name.as_str())).await?;
        let (clause, filter_binds) = unread_filter(&settings);
        let (unread, oldest_unread) = if clause.is_empty() {
            // Every notification is the group's: counted from sequences, like the metrics.
            let q = Statement::new(crate::store::sql::GROUP_UNREAD);
            match self.rows(q.bind(namespace).bind(read_seq)).await?.first() {
                Some(row) => (stored_past(read_seq, row.get(0)?, row.get(1)?), row.get::<Option<i64>>(2)?),
                None => (0, None),
            }
        } else {
            let sql = format!(
                "SELECT COUNT(*), MIN(created_us) FROM notifications WHERE namespace = $1 AND seq > $2{clause}"
            );
            let mut binds = vec![Bind::Text(namespace.to_owned()), Bind::Int(read_seq)];
            binds.extend(filter_binds);
            let rows = self.rows(Statement::with(sql, binds)).await?;
            let row = rows.first().ok_or_else(|| Error::Internal("a count returned no row".into()))?;
            (row.get::<i64>(0)? as u64, row.get::<Option<i64>>(1)?)
        };
        let oldest_unread = oldest_unread.map(from_micros);
        let oldest_pending = [oldest_ready, oldest_unread].into_iter().flatten().min();
        Ok(ConsumerGroup {
            connected: self.inner.slots.of(namespace).iter().filter(|s| s.group == name).count() as u32,
            namespace: namespace.to_owned(),
            name,
            kinds: settings.kinds,
            workflow_ids: settings.workflow_ids,
            max_attempts: settings.max_attempts,
            read_sequence: read_seq.max(0) as u64,
            created_at: from_micros(created_us),
            pending: ready + unread,
            leased,
            dead,
            oldest_pending,
        })
    }

    /// Runs a `SELECT MIN(<micros>)` query.
    async fn min_time(&self, statement: Statement) -> Result<Option<DateTime<Utc>>> {
        let rows = self.rows(statement).await?;
        Ok(match rows.first() {
            Some(row) => row.get::<Option<i64>>(0)?.map(from_micros),
            None => None,
        })
    }

    /// Returns what an ALL listener of the namespace has collected per correlation key (at most
    /// [`MAX_PARTIAL_STATES`] keys), without the events whose lifespan ran out at `now`;
    /// NotFound if the namespace has no such listener. Empty for ONE and ANY listeners.
    pub async fn partial_states(&self, namespace: &str, id: Uuid, now: DateTime<Utc>) -> Result<PartialStates> {
        let listener = self.get_listener(namespace, id).await?;
        let spec = listener.spec;
        if spec.condition != Condition::All {
            return Ok(PartialStates { states: Vec::new(), truncated: false });
        }
        let lifespan = spec
            .lifespan
            .filter(|d| !d.is_zero())
            .map(|d| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX));
        let sql = format!(
            "SELECT corr_key, events FROM partials WHERE listener_id = $1 ORDER BY corr_key LIMIT {}",
            MAX_PARTIAL_STATES + 1
        );
        let rows = self.rows(Statement::new(sql).bind(id.to_string())).await?;
        let truncated = rows.len() > MAX_PARTIAL_STATES;
        let mut states = Vec::new();
        for row in rows.iter().take(MAX_PARTIAL_STATES) {
            let key: Vec<String> = from_json(&row.get::<String>(0)?)?;
            let collected: Vec<EventRef> = from_json(&row.get::<String>(1)?)?;
            let events: Vec<CollectedEvent> = collected
                .into_iter()
                .map(|e| CollectedEvent {
                    expires_at: lifespan.and_then(|l| e.received_at.checked_add_signed(l)),
                    event_type: e.event_type,
                    source: e.source,
                    id: e.id,
                    sequence: e.sequence,
                    received_at: e.received_at,
                })
                .filter(|e| e.expires_at.is_none_or(|end| end > now))
                .collect();
            if events.is_empty() {
                continue;
            }
            let missing_types =
                spec.types.iter().filter(|t| !events.iter().any(|e| &e.event_type == *t)).cloned().collect();
            let correlation = spec.correlate_by.iter().cloned().zip(key).collect();
            states.push(PartialState { correlation, events, missing_types });
        }
        Ok(PartialStates { states, truncated })
    }
}

/// Returns the SQL (from ` AND`) and the values (bound from `$3`) of a group's filters on
/// notifications.
fn unread_filter(settings: &GroupSettings) -> (String, Vec<Bind>) {
    let mut clause = String::new();
    if !settings.kinds.is_empty() {
        let kinds: Vec<String> = settings.kinds.iter().map(|k| format!("'{}'", k.as_str())).collect();
        clause.push_str(&format!(" AND kind IN ({})", kinds.join(", ")));
    }
    let mut binds = Vec::new();
    if !settings.workflow_ids.is_empty() {
        let list = crate::store::sql::list(settings.workflow_ids.len(), 3);
        clause.push_str(&format!(" AND kind = 'start' AND target IN ({list})"));
        binds.extend(settings.workflow_ids.iter().map(|w| Bind::Text(w.clone())));
    }
    (clause, binds)
}

//! Publishing: validation, deduplication by (source, id), sequencing, evaluation by the trigger
//! engine, and the staging of what it decided (events, notifications, partial state, finished
//! listeners) as rows that [`Writer::flush`] queues in bulk.
//!
//! Hazards: staged rows are not in the database until flushed and written, so a command that
//! may read them flushes first (the batch loop does so before every command that is not a
//! publish). Duplicates are found among stored events (looked up once per batch, after the
//! namespace rows are locked: [`lookup_existing`]) and among the events of earlier publishes of
//! the transaction ([`NsState::stored`](super::namespace::NsState)); a duplicate keeps the
//! original's sequence and is not evaluated again. A publish is validated before anything is
//! staged: a rejected publish leaves no trace in the batch.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Batch, Command, CommandError, Handled, Writer};
use crate::error::{Error, FieldViolation, Result};
use crate::event::{Event, EventRef, TraceContext};
use crate::listener::ListenerStatus;
use crate::store::conn::{Statement, Tx, Value};
use crate::store::rows::{EVENT_COLUMNS, NOTIFICATION_COLUMNS, event_body, micros, status_columns, to_json};
use crate::store::sql::{CHUNK, INSERT_CHUNK, events_by_keys, placeholders};
use crate::store::{Fired, Notification, NotificationKind, Published, trigger_span_id};
use crate::trigger::{ActionKind, CorrelationKey, Outcome};

/// Rows staged by publishes, written in bulk.
#[derive(Debug, Default)]
pub(super) struct Staged {
    pub(super) events: Vec<Event>,
    pub(super) notifications: Vec<NotificationRecord>,
    pub(super) partials: BTreeMap<(Uuid, CorrelationKey), Vec<EventRef>>,
    pub(super) finished: Vec<(Uuid, ListenerStatus)>,
}

impl Staged {
    pub(super) fn is_empty(&self) -> bool {
        self.events.is_empty() && self.notifications.is_empty() && self.partials.is_empty() && self.finished.is_empty()
    }
}

/// What a transaction created in one namespace, for direct delivery: its notifications in
/// sequence order and the events it stored.
#[derive(Debug, Default)]
pub(super) struct Fresh {
    pub(super) notifications: Vec<NotificationRecord>,
    pub(super) events: HashMap<u64, Event>,
}

impl Fresh {
    pub(super) fn notification(&self, n: &NotificationRecord, created_at: DateTime<Utc>) -> Notification {
        Notification {
            namespace: n.namespace.clone(),
            sequence: n.seq as u64,
            fire_id: n.fire_id,
            kind: n.kind,
            listener_id: n.listener_id,
            target: n.target.clone(),
            correlation: n.correlation.clone(),
            event_sequences: n.event_seqs.clone(),
            events: n.event_seqs.iter().filter_map(|s| self.events.get(s).cloned()).collect(),
            created_at,
            trace: n.trace.clone(),
        }
    }
}

/// A notification staged by a publish or a sweep, in its namespace's sequence.
#[derive(Debug)]
pub(super) struct NotificationRecord {
    pub(super) namespace: String,
    pub(super) seq: i64,
    pub(super) fire_id: Uuid,
    pub(super) kind: NotificationKind,
    pub(super) listener_id: Uuid,
    pub(super) target: String,
    pub(super) correlation: Vec<(String, String)>,
    pub(super) event_seqs: Vec<u64>,
    pub(super) trace: TraceContext,
}

impl Writer {
    pub(super) fn publish(
        &mut self,
        b: &mut Batch,
        ns: &str,
        events: &[Event],
        existing: Option<&HashMap<(String, String), i64>>,
    ) -> Handled<Vec<Published>> {
        validate_events(events).map_err(CommandError::Rejected)?;
        let st = b.ns.get_mut(ns).ok_or_else(|| Error::Internal("namespace not locked".into()))?;
        let mut results = Vec::with_capacity(events.len());
        let mut fresh = Vec::new();
        for e in events {
            let key = (e.source.clone(), e.id.clone());
            if let Some(&seq) = st.stored.get(&key).or_else(|| existing?.get(&key)) {
                results.push(Published { sequence: seq as u64, duplicate: true });
                continue;
            }
            let seq = st.next_event_seq;
            st.next_event_seq += 1;
            st.stored.insert(key, seq);
            let mut event = e.clone();
            event.namespace = ns.to_owned();
            event.sequence = seq as u64;
            event.received_at = b.now;
            results.push(Published { sequence: seq as u64, duplicate: false });
            fresh.push(event);
        }
        let outcome = self.engine.evaluate(&fresh, b.now);
        b.staged.events.extend(fresh);
        self.stage(b, ns, outcome)?;
        Ok(results)
    }

    /// Stages what an evaluation decided: notifications, partial state, finished listeners.
    pub(super) fn stage(&mut self, b: &mut Batch, ns: &str, outcome: Outcome) -> Result<()> {
        let st = b.ns.get_mut(ns).ok_or_else(|| Error::Internal("namespace not locked".into()))?;
        b.effects.condition_errors += outcome.condition_errors;
        for action in outcome.actions {
            let seq = st.next_notification_seq;
            st.next_notification_seq += 1;
            let (kind, target) = match action.kind {
                ActionKind::Start { workflow_id } => (NotificationKind::Start, workflow_id),
                ActionKind::Wake { instance_id } => (NotificationKind::Wake, instance_id),
                ActionKind::Timeout { instance_id } => (NotificationKind::Timeout, instance_id),
            };
            // The notification carries the trigger's context, a child of what it continues.
            let trace = action.trace.child(trigger_span_id(action.fire_id));
            if self.config.observer.is_some() {
                let others = &action.events[..action.events.len().saturating_sub(1)];
                b.effects.fired.push(Fired {
                    namespace: ns.to_owned(),
                    sequence: seq as u64,
                    fire_id: action.fire_id,
                    kind,
                    listener_id: action.listener_id,
                    target: target.clone(),
                    at: b.now,
                    trace: trace.clone(),
                    cause: action.trace.clone(),
                    links: others.iter().map(|e| e.trace.clone()).filter(|t| !t.is_empty()).collect(),
                });
            }
            b.staged.notifications.push(NotificationRecord {
                namespace: ns.to_owned(),
                seq,
                fire_id: action.fire_id,
                kind,
                listener_id: action.listener_id,
                target,
                correlation: action.correlation,
                event_seqs: action.events.iter().map(|e| e.sequence).collect(),
                trace,
            });
        }
        for ((id, key), partial) in outcome.partials {
            st.changed.insert(id);
            b.staged.partials.insert((id, key), partial);
        }
        let loaded = self.loaded.entry(ns.to_owned()).or_default();
        for (id, status) in outcome.finished {
            st.changed.insert(id);
            loaded.listeners.remove(&id);
            b.staged.finished.push((id, status));
        }
        Ok(())
    }

    /// Queues the staged rows' writes, in bulk, and keeps the new events and notifications for
    /// the hand-over.
    pub(super) fn flush(&mut self, b: &mut Batch) -> Result<()> {
        if b.staged.is_empty() {
            return Ok(());
        }
        let staged = std::mem::take(&mut b.staged);
        insert_events(&mut b.writes, &staged.events)?;
        insert_notifications(&mut b.writes, &staged.notifications, b.now)?;
        write_partials(&mut b.writes, staged.partials)?;
        for (id, status) in &staged.finished {
            let (status, fire_id, at) = status_columns(status);
            b.writes.push(Statement::with(
                "UPDATE listeners SET status = $1, fire_id = $2, finished_us = $3 WHERE id = $4",
                vec![Value::from(status), Value::from(fire_id), Value::from(at), Value::from(id.to_string())],
            ));
        }
        // Kept for direct delivery (moved, not copied: the rows are written).
        for e in staged.events {
            b.fresh.entry(e.namespace.clone()).or_default().events.insert(e.sequence, e);
        }
        for n in staged.notifications {
            b.fresh.entry(n.namespace.clone()).or_default().notifications.push(n);
        }
        Ok(())
    }
}

/// Queues the inserts of new events.
fn insert_events(writes: &mut Vec<Statement>, events: &[Event]) -> Result<()> {
    for chunk in events.chunks(INSERT_CHUNK) {
        let sql = format!("INSERT INTO events ({EVENT_COLUMNS}) VALUES {}", placeholders(chunk.len(), 8, 1));
        let mut values = Vec::with_capacity(chunk.len() * 8);
        for e in chunk {
            values.extend([
                Value::from(e.namespace.as_str()),
                Value::from(e.sequence as i64),
                Value::from(e.source.as_str()),
                Value::from(e.id.as_str()),
                Value::from(e.event_type.as_str()),
                Value::from(e.subject.as_deref()),
                Value::from(micros(e.received_at)),
                Value::from(event_body(e)?),
            ]);
        }
        writes.push(Statement::with(sql, values));
    }
    Ok(())
}

/// Queues the inserts of new notifications, created at `now`.
fn insert_notifications(
    writes: &mut Vec<Statement>,
    notifications: &[NotificationRecord],
    now: DateTime<Utc>,
) -> Result<()> {
    for chunk in notifications.chunks(INSERT_CHUNK) {
        let sql =
            format!("INSERT INTO notifications ({NOTIFICATION_COLUMNS}) VALUES {}", placeholders(chunk.len(), 10, 1));
        let mut values = Vec::with_capacity(chunk.len() * 10);
        for n in chunk {
            values.extend([
                Value::from(n.namespace.as_str()),
                Value::from(n.seq),
                Value::from(n.fire_id.to_string()),
                Value::from(n.kind.as_str()),
                Value::from(n.listener_id.to_string()),
                Value::from(n.target.as_str()),
                Value::from(to_json(&n.correlation)?),
                Value::from(to_json(&n.event_seqs)?),
                Value::from(micros(now)),
                Value::from(to_json(&n.trace)?),
            ]);
        }
        writes.push(Statement::with(sql, values));
    }
    Ok(())
}

/// Queues the upserts of changed partial states and the deletes of emptied ones.
fn write_partials(
    writes: &mut Vec<Statement>,
    partials: BTreeMap<(Uuid, CorrelationKey), Vec<EventRef>>,
) -> Result<()> {
    let (kept, emptied): (Vec<_>, Vec<_>) = partials.into_iter().partition(|(_, p)| !p.is_empty());
    for chunk in kept.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO partials (listener_id, corr_key, events) VALUES {} \
             ON CONFLICT (listener_id, corr_key) DO UPDATE SET events = excluded.events",
            placeholders(chunk.len(), 3, 1)
        );
        let mut values = Vec::with_capacity(chunk.len() * 3);
        for ((id, key), events) in chunk {
            values.extend([Value::from(id.to_string()), Value::from(to_json(key)?), Value::from(to_json(events)?)]);
        }
        writes.push(Statement::with(sql, values));
    }
    for chunk in emptied.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM partials WHERE {}",
            (0..chunk.len())
                .map(|r| format!("(listener_id = ${} AND corr_key = ${})", 2 * r + 1, 2 * r + 2))
                .collect::<Vec<_>>()
                .join(" OR ")
        );
        let mut values = Vec::with_capacity(chunk.len() * 2);
        for ((id, key), _) in chunk {
            values.extend([Value::from(id.to_string()), Value::from(to_json(key)?)]);
        }
        writes.push(Statement::with(sql, values));
    }
    Ok(())
}

/// Returns, per namespace, the sequences of already stored events that have the (source,
/// id) of an event the batch publishes: one query per [`CHUNK`] keys, not per publish.
pub(super) async fn lookup_existing(
    tx: &mut Tx,
    commands: &[Command],
) -> Result<HashMap<String, HashMap<(String, String), i64>>> {
    let mut keys: BTreeMap<&str, BTreeSet<(&str, &str)>> = BTreeMap::new();
    for command in commands {
        if let Command::Publish { namespace, events, .. } = command {
            let set = keys.entry(namespace).or_default();
            set.extend(events.iter().map(|e| (e.source.as_str(), e.id.as_str())));
        }
    }
    let mut found: HashMap<String, HashMap<(String, String), i64>> = HashMap::new();
    for (ns, keys) in keys {
        let keys: Vec<_> = keys.into_iter().collect();
        let found = found.entry(ns.to_owned()).or_default();
        for chunk in keys.chunks(CHUNK) {
            let mut q = Statement::new(events_by_keys(chunk.len())).bind(ns);
            for (source, id) in chunk {
                q = q.bind(*source).bind(*id);
            }
            for row in tx.fetch_all(q).await? {
                if let Some(seq) = row.get::<Option<i64>>(2)? {
                    found.insert((row.get(0)?, row.get(1)?), seq);
                }
            }
        }
    }
    Ok(found)
}

/// Checks what the store relies on; the server validates the full CloudEvents rules first.
fn validate_events(events: &[Event]) -> Result<()> {
    let mut violations = Vec::new();
    if events.is_empty() {
        violations.push(FieldViolation::new("events", "must hold at least one event"));
    }
    for (i, e) in events.iter().enumerate() {
        for (field, value) in [("id", &e.id), ("source", &e.source), ("type", &e.event_type)] {
            if value.is_empty() {
                violations.push(FieldViolation::new(format!("events[{i}].{field}"), "must not be empty"));
            }
        }
    }
    if violations.is_empty() { Ok(()) } else { Err(Error::InvalidArgument(violations)) }
}

//! Namespaces as the writer sees them: the lock on a namespace's row, which sequences the
//! events, notifications and listener changes of the namespace across processes, its counters
//! within one transaction, and the sync of this process's engine with the listeners other
//! processes changed (tracked by a per-namespace generation and epoch).
//!
//! Hazards: namespace rows are locked in name order (`FOR UPDATE` on Postgres), and before any
//! consumer group row, so two transactions cannot deadlock on them. The counters are written
//! back once, at the end of the transaction ([`Writer::write_namespaces`]): a statement that
//! reads them from the database in between sees the values from before the transaction. The
//! engine's listeners run ahead of the database until the commit; a transaction that fails
//! must [`unload`](Writer::unload) its namespaces.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Batch, Writer};
use crate::error::{Error, Result};
use crate::event::EventRef;
use crate::listener::CompiledListener;
use crate::store::conn::{Statement, Tx, Value};
use crate::store::rows::{LISTENER_COLUMNS, ListenerRow, STATUS_ACTIVE, StoredRow, StoredStatus, from_json, micros};
use crate::store::sql::{CHUNK, list};
use crate::trigger::CorrelationKey;

/// Which listeners of a namespace this process has loaded, as of which generation.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    pub(super) generation: i64,
    pub(super) epoch: i64,
    pub(super) listeners: HashSet<Uuid>,
}

/// A locked namespace's counters within one transaction.
#[derive(Debug)]
pub(super) struct NsState {
    /// The first notification sequence of this transaction.
    pub(super) first_notification_seq: i64,
    pub(super) next_event_seq: i64,
    pub(super) next_notification_seq: i64,
    pub(super) next_listener_ord: i64,
    pub(super) generation: i64,
    /// Listeners whose row or state changed: they get the new generation.
    pub(super) changed: BTreeSet<Uuid>,
    /// (source, id) -> sequence of events stored earlier in this transaction.
    pub(super) stored: HashMap<(String, String), i64>,
}

impl NsState {
    pub(super) fn new_gen(&self) -> i64 {
        self.generation + 1
    }
}

impl Writer {
    pub(super) fn unload(&mut self, namespace: &str) {
        if let Some(l) = self.loaded.remove(namespace) {
            for id in l.listeners {
                self.engine.remove(id);
            }
        }
    }

    /// Locks the namespace row (creating it) and brings the engine's listeners of the
    /// namespace up to the stored generation.
    pub(super) async fn lock_namespace(&mut self, tx: &mut Tx, b: &mut Batch, ns: &str) -> Result<()> {
        if b.ns.contains_key(ns) {
            return Ok(());
        }
        let sql = format!(
            "SELECT next_event_seq, next_notification_seq, next_listener_ord, listener_gen, listener_epoch \
             FROM namespaces WHERE name = $1{}",
            tx.backend().for_update()
        );
        let mut row = tx.fetch_optional(Statement::new(sql.clone()).bind(ns)).await?;
        if row.is_none() {
            insert_namespace(tx, ns, b.now).await?;
            row = tx.fetch_optional(Statement::new(sql).bind(ns)).await?;
        }
        let row = row.ok_or_else(|| Error::Internal(format!("namespace {ns} vanished")))?;
        let next_notification_seq = row.get(1)?;
        let st = NsState {
            first_notification_seq: next_notification_seq,
            next_event_seq: row.get(0)?,
            next_notification_seq,
            next_listener_ord: row.get(2)?,
            generation: row.get(3)?,
            changed: BTreeSet::new(),
            stored: HashMap::new(),
        };
        let epoch: i64 = row.get(4)?;
        self.sync(tx, ns, st.generation, epoch).await?;
        b.ns.insert(ns.to_owned(), st);
        Ok(())
    }

    /// Brings the engine's listeners of the namespace up to `generation`: incrementally when
    /// this process loaded them at an earlier generation of the same epoch, else in full.
    async fn sync(&mut self, tx: &mut Tx, ns: &str, generation: i64, epoch: i64) -> Result<()> {
        let since = match self.loaded.get(ns) {
            Some(l) if l.generation == generation && l.epoch == epoch => return Ok(()),
            Some(l) if l.epoch == epoch => Some(l.generation),
            _ => None,
        };
        if since.is_none() {
            self.unload(ns);
        }
        // Incremental: every listener changed since (finished and deleted ones leave the engine).
        // Full: every active listener, as changed since before the first generation.
        let filter = if since.is_some() {
            String::from("l.gen > $2")
        } else {
            format!("l.gen > $2 AND l.status = '{STATUS_ACTIVE}'")
        };
        let since = since.unwrap_or(-1);
        let columns = LISTENER_COLUMNS.split(", ").map(|c| format!("l.{c}")).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT {columns} FROM listeners l WHERE l.namespace = $1 AND {filter} ORDER BY l.ord");
        let rows = tx.fetch_all(Statement::new(sql).bind(ns).bind(since)).await?;
        let rows = rows.iter().map(ListenerRow::read).collect::<Result<Vec<_>>>()?;
        let mut partials = load_partials(tx, ns, since).await?;
        let loaded = self.loaded.entry(ns.to_owned()).or_default();
        for row in rows {
            let id_text = row.id.clone();
            let active = row.status == StoredStatus::Active;
            let listener = match row.into_listener() {
                Ok(l) => l,
                Err(_) if !active => {
                    // A deleted listener's tombstone: only its id matters.
                    if let Ok(id) = Uuid::parse_str(&id_text) {
                        self.engine.remove(id);
                        loaded.listeners.remove(&id);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.engine.remove(listener.id);
            loaded.listeners.remove(&listener.id);
            if !active {
                continue;
            }
            let id = listener.id;
            match CompiledListener::compile(listener) {
                Ok(compiled) => {
                    self.engine.insert(compiled, partials.remove(&id_text).unwrap_or_default());
                    loaded.listeners.insert(id);
                }
                Err(e) => tracing::error!(listener = %id, error = %e, "stored listener does not compile; skipped"),
            }
        }
        loaded.generation = generation;
        loaded.epoch = epoch;
        Ok(())
    }

    /// Queues the writes of the counters of every locked namespace and of the new generation of
    /// changed listeners.
    pub(super) fn write_namespaces(&mut self, b: &mut Batch) {
        for (name, st) in &b.ns {
            let generation = if st.changed.is_empty() { st.generation } else { st.new_gen() };
            b.writes.push(Statement::with(
                "UPDATE namespaces SET next_event_seq = $1, next_notification_seq = $2, next_listener_ord = $3, \
                 listener_gen = $4 WHERE name = $5",
                vec![
                    Value::from(st.next_event_seq),
                    Value::from(st.next_notification_seq),
                    Value::from(st.next_listener_ord),
                    Value::from(generation),
                    Value::from(name.as_str()),
                ],
            ));
            let changed: Vec<String> = st.changed.iter().map(Uuid::to_string).collect();
            for chunk in changed.chunks(CHUNK) {
                let sql = format!("UPDATE listeners SET gen = $1 WHERE id IN ({})", list(chunk.len(), 2));
                let mut values = Vec::with_capacity(chunk.len() + 1);
                values.push(Value::from(generation));
                values.extend(chunk.iter().map(|id| Value::from(id.as_str())));
                b.writes.push(Statement::with(sql, values));
            }
        }
    }
}

/// Creates a namespace's row, unless another transaction just did. Its listener epoch is the
/// creation time in microseconds, not 0: a namespace deleted and created again must not look, to
/// a process that loaded the listeners of the deleted one, like the namespace it knew (epochs of
/// a namespace only grow by the few bumps retention makes, far fewer than microseconds pass).
pub(super) async fn insert_namespace(tx: &mut Tx, ns: &str, now: DateTime<Utc>) -> Result<()> {
    let q =
        Statement::new("INSERT INTO namespaces (name, listener_epoch) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING");
    tx.execute(q.bind(ns).bind(micros(now))).await?;
    Ok(())
}

/// Returns the partial state of the namespace's active listeners changed after `since`, by
/// listener id.
async fn load_partials(
    tx: &mut Tx,
    ns: &str,
    since: i64,
) -> Result<HashMap<String, Vec<(CorrelationKey, Vec<EventRef>)>>> {
    let q = Statement::new(format!(
        "SELECT p.listener_id, p.corr_key, p.events FROM partials p \
         JOIN listeners l ON l.id = p.listener_id \
         WHERE l.namespace = $1 AND l.gen > $2 AND l.status = '{STATUS_ACTIVE}'"
    ));
    let mut partials: HashMap<String, Vec<(CorrelationKey, Vec<EventRef>)>> = HashMap::new();
    for r in tx.fetch_all(q.bind(ns).bind(since)).await? {
        let id: String = r.get(0)?;
        let key: String = r.get(1)?;
        let events: String = r.get(2)?;
        partials.entry(id).or_default().push((from_json(&key)?, from_json(&events)?));
    }
    Ok(partials)
}

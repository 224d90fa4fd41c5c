//! Replay fires: what a replay in FIRE mode found in one page of stored events, made into real
//! notifications in the namespace's locked transaction, once per fire id; and the look-back of a
//! registration, the same walk over the stored events up to the registration, in its
//! transaction.
//!
//! A look-back reads the namespace's events up to its next sequence while the namespace row is
//! locked (on Postgres, `FOR UPDATE`; the events earlier publishes of the batch stored are
//! written before the registration runs): every event stored before the registration is walked
//! once, every later one is evaluated live by the engine, which holds the listener, with the
//! state the walk left, from the commit on. No gap, no double, with any number of processes.
//!
//! Fire ids are deterministic over (listener, contributing events), so a fire id already among
//! the namespace's notifications (fired live, or by an earlier replay) is not fired again. A live
//! firing is looked up among the notifications created when its completing event was received
//! (it was created in that event's transaction); a replayed one in the partial unique index
//! `notifications_replayed_by_fire` (migration 0005), which live publishes never touch. A replayed WAKE
//! finishes its WAIT listener as a live one would.
//!
//! Hazard: the check reads the notifications table, so it runs after the batch's staged rows
//! were written (the batch loop flushes before every command that is not a publish); a fire id
//! repeated within one call fires once. Retention forgets fire ids with their notifications:
//! a replay over events whose notifications were deleted fires them again.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use uuid::Uuid;

use super::{Batch, CommandError, Handled, Writer};
use crate::error::{Error, Result};
use crate::explain::{Explainer, Walk, WalkState};
use crate::listener::{CompiledListener, ListenerKind, ListenerStatus};
use crate::store::conn::{Statement, Tx, Value};
use crate::store::replay::{EventRange, MAX_LOOK_BACK_EVENTS, Position, range_sql};
use crate::store::rows::{EventRow, STATUS_ACTIVE, STATUS_DELETED, StoredRow, kind_str, micros};
use crate::store::sql::{self, CHUNK, list};
use crate::trigger::{Action, Outcome};

/// What a registration's look-back fired, and the state it left.
#[derive(Debug)]
pub(super) struct Walked {
    fired: Vec<Action>,
    state: WalkState,
}

/// Walks the namespace's stored events of the listener's types, from `from` up to the last
/// one stored, through the new listener. Rejected when more than [`MAX_LOOK_BACK_EVENTS`].
pub(super) async fn walk_back(
    tx: &mut Tx,
    b: &Batch,
    ns: &str,
    listener: &CompiledListener,
    from: Position,
) -> Handled<Walked> {
    let st = b.ns.get(ns).ok_or_else(|| Error::Internal("namespace not locked".into()))?;
    let last = (st.next_event_seq - 1).max(0) as u64;
    let range = EventRange { from: Some(from), to: Some(Position::Sequence(last)) };
    let limit = MAX_LOOK_BACK_EVENTS as i64 + 1;
    let (sql, binds) = range_sql(&range, 0, Some(&listener.spec().types), limit, false);
    let mut values = vec![Value::from(ns)];
    values.extend(binds);
    let rows = tx.fetch_all(Statement::with(sql, values)).await?;
    if rows.len() > MAX_LOOK_BACK_EVENTS {
        return Err(CommandError::Rejected(Error::FailedPrecondition(format!(
            "more than {MAX_LOOK_BACK_EVENTS} events of the listener's types to look back on: register \
             without look_back and replay them with ReplayEvents, which pages"
        ))));
    }
    let mut walk = Explainer::new(listener.clone(), Walk::Replay);
    let mut fired = Vec::new();
    for row in &rows {
        let event = EventRow::read(row)?.into_event()?;
        fired.extend(walk.step(&event).fired);
    }
    Ok(Walked { fired, state: walk.state() })
}

impl Writer {
    /// Fires the actions whose fire id the namespace has not seen; returns, per action, the
    /// sequence of its new notification, or `None` when it had fired before.
    pub(super) async fn replay(
        &mut self,
        tx: &mut Tx,
        b: &mut Batch,
        ns: &str,
        listener_id: Uuid,
        fires: &[Action],
    ) -> Handled<Vec<Option<u64>>> {
        let sql = "SELECT kind, status FROM listeners WHERE namespace = $1 AND id = $2";
        let row = tx.fetch_optional(Statement::new(sql).bind(ns).bind(listener_id.to_string())).await?;
        let (kind, status): (String, String) = match row {
            Some(row) => (row.get(0)?, row.get(1)?),
            None => return Err(CommandError::Rejected(Error::NotFound(format!("listener {listener_id}")))),
        };
        if status == STATUS_DELETED {
            return Err(CommandError::Rejected(Error::NotFound(format!("listener {listener_id}"))));
        }
        let wait = kind == kind_str(ListenerKind::Wait);
        if wait && status != STATUS_ACTIVE {
            return Err(CommandError::Rejected(Error::FailedPrecondition(format!(
                "listener {listener_id} is a WAIT listener that already {}: it fires no more",
                if status == "fired" { "fired" } else { "timed out" }
            ))));
        }
        let mut seen = fired_before(tx, ns, fires).await?;
        let st = b.ns.get(ns).ok_or_else(|| Error::Internal("namespace not locked".into()))?;
        let mut next = st.next_notification_seq as u64;
        let mut outcome = Outcome::default();
        let mut results = Vec::with_capacity(fires.len());
        for action in fires {
            if !seen.insert(action.fire_id) || (wait && !outcome.actions.is_empty()) {
                results.push(None);
                continue;
            }
            results.push(Some(next));
            next += 1;
            outcome.actions.push(action.clone());
        }
        if let (true, Some(first)) = (wait, outcome.actions.first()) {
            // A WAKE finishes the listener, as when it fires live.
            let status = ListenerStatus::Fired { fire_id: first.fire_id, at: b.now };
            let keys: Vec<_> =
                self.engine.partials(listener_id).map(|p| p.keys().cloned().collect()).unwrap_or_default();
            outcome.partials = keys.into_iter().map(|k| ((listener_id, k), Vec::new())).collect::<BTreeMap<_, _>>();
            self.engine.remove(listener_id);
            outcome.finished.push((listener_id, status));
        }
        stage_replayed(self, b, ns, outcome)?;
        Ok(results)
    }
}

impl Writer {
    /// Puts a registered listener into the engine with the state its look-back left, and stages
    /// what the look-back fired. A WAIT listener the look-back woke is finished; one it timed
    /// out is left to the registration's deadline check, which times it out.
    pub(super) fn looked_back(
        &mut self,
        b: &mut Batch,
        ns: &str,
        listener: CompiledListener,
        walked: Walked,
    ) -> Result<()> {
        let id = listener.id();
        let mut outcome = Outcome { actions: walked.fired, ..Outcome::default() };
        match walked.state.consumed {
            Some(status @ ListenerStatus::Fired { .. }) => outcome.finished.push((id, status)),
            _ => {
                for (key, partial) in &walked.state.partials {
                    outcome.partials.insert((id, key.clone()), partial.clone());
                }
                self.engine.insert(listener, walked.state.partials);
            }
        }
        stage_replayed(self, b, ns, outcome)
    }
}

/// Returns which of the actions' fire ids the namespace's notifications already hold: live ones
/// were created when their completing event was received (looked for among the notifications
/// of that time, found by sequence: there is no index on times), replayed ones are in the
/// partial index `notifications_replayed_by_fire`.
async fn fired_before(tx: &mut Tx, ns: &str, fires: &[Action]) -> Result<HashSet<Uuid>> {
    let mut found = HashSet::new();
    for chunk in fires.chunks(CHUNK) {
        let ids: Vec<Value> = chunk.iter().map(|a| Value::from(a.fire_id.to_string())).collect();
        let created: BTreeSet<i64> =
            chunk.iter().filter_map(|a| a.events.last()).map(|e| micros(e.received_at)).collect();
        // The notifications created at `t`: from the first at or after `t` to the first after.
        let first = |t: &str| sql::first_seq_at_with("notifications", "created_us", "$1", t);
        let live = format!(
            "SELECT fire_id FROM notifications WHERE namespace = $1 AND seq >= COALESCE(({}), 0) \
             AND seq < COALESCE(({}), 0) AND created_us = $2 AND fire_id IN ({})",
            first("$2"),
            first("$3"),
            list(ids.len(), 4)
        );
        let mut rows = Vec::new();
        for t in created {
            let mut values = vec![Value::from(ns), Value::from(t), Value::from(t + 1)];
            values.extend(ids.iter().cloned());
            rows.extend(tx.fetch_all(Statement::with(live.clone(), values)).await?);
        }
        let replayed = format!(
            "SELECT fire_id FROM notifications WHERE namespace = $1 AND replayed = 1 AND fire_id IN ({})",
            list(ids.len(), 2)
        );
        let mut replayed_values = vec![Value::from(ns)];
        replayed_values.extend(ids);
        rows.extend(tx.fetch_all(Statement::with(replayed, replayed_values)).await?);
        for row in rows {
            let id: String = row.get(0)?;
            found.insert(Uuid::parse_str(&id).map_err(|e| Error::Internal(format!("stored fire id {id:?}: {e}")))?);
        }
    }
    Ok(found)
}

/// Stages what a replay or look-back fires, and marks its notifications replayed (they enter
/// the index a later replay looks them up in).
fn stage_replayed(writer: &mut Writer, b: &mut Batch, ns: &str, outcome: Outcome) -> Result<()> {
    let first = b.ns.get(ns).ok_or_else(|| Error::Internal("namespace not locked".into()))?.next_notification_seq;
    let count = outcome.actions.len() as i64;
    writer.stage(b, ns, outcome)?;
    if count > 0 {
        // Queued after the notifications' inserts.
        writer.flush(b)?;
        b.writes.push(Statement::with(
            "UPDATE notifications SET replayed = 1 WHERE namespace = $1 AND seq >= $2 AND seq < $3",
            vec![Value::from(ns), Value::from(first), Value::from(first + count)],
        ));
    }
    Ok(())
}

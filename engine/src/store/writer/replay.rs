//! Replay fires: what a replay in FIRE mode found in one page of stored events, made into real
//! notifications in the namespace's locked transaction, once per fire id.
//!
//! Fire ids are deterministic over (listener, contributing events), so a fire id already among
//! the namespace's notifications (fired live, or by an earlier replay) is not fired again; the
//! unique index `notifications_by_fire` (migration 0005) backs the check. A replayed WAKE
//! finishes its WAIT listener as a live one would.
//!
//! Hazard: the check reads the notifications table, so it runs after the batch's staged rows
//! were written (the batch loop flushes before every command that is not a publish); a fire id
//! repeated within one call fires once. Retention forgets fire ids with their notifications:
//! a replay over events whose notifications were deleted fires them again.

use std::collections::{BTreeMap, HashSet};

use uuid::Uuid;

use super::{Batch, CommandError, Handled, Writer};
use crate::error::{Error, Result};
use crate::listener::{ListenerKind, ListenerStatus};
use crate::store::conn::{Statement, Tx};
use crate::store::rows::{STATUS_ACTIVE, STATUS_DELETED, kind_str};
use crate::store::sql::{CHUNK, list};
use crate::trigger::{Action, Outcome};

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
        self.stage(b, ns, outcome)?;
        Ok(results)
    }
}

/// Returns which of the actions' fire ids the namespace's notifications already hold.
async fn fired_before(tx: &mut Tx, ns: &str, fires: &[Action]) -> Result<HashSet<Uuid>> {
    let mut found = HashSet::new();
    for chunk in fires.chunks(CHUNK) {
        let sql =
            format!("SELECT fire_id FROM notifications WHERE namespace = $1 AND fire_id IN ({})", list(chunk.len(), 2));
        let mut q = Statement::new(sql).bind(ns);
        for a in chunk {
            q = q.bind(a.fire_id.to_string());
        }
        for row in tx.fetch_all(q).await? {
            let id: String = row.get(0)?;
            found.insert(Uuid::parse_str(&id).map_err(|e| Error::Internal(format!("stored fire id {id:?}: {e}")))?);
        }
    }
    Ok(found)
}

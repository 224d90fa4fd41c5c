//! Administration: changing, seeking and deleting consumer groups, and deleting a namespace in
//! bounded batches.
//!
//! Hazards: a group is changed under the lock of its row (`FOR UPDATE` on Postgres), as claims
//! and the hand-over take it, so a seek or an update never interleaves with a claim of the same
//! group. A namespace purge locks the namespace row like a publish, but without loading its
//! listeners: it runs in a transaction of its own, drops this process's engine state of the
//! namespace and bumps the namespace's epoch, so every other process reloads the namespace's
//! listeners in full before it evaluates another event there. Deliveries dropped here free the
//! room of this process's consumers at once; other processes' consumers see it at their next
//! recount.

use std::collections::HashMap;

use super::delivery::{group_not_found, group_settings, next_notification_seq};
use super::{Batch, CommandError, Handled, Writer};
use crate::error::{Error, Result};
use crate::store::conn::{Statement, Tx};
use crate::store::rows::{DeliveryState, GroupSettings, micros, to_json};
use crate::store::sql;
use crate::store::{GroupUpdate, NamespacePurge, SeekPosition, Seeked};

/// What one purge transaction deleted, and whether the namespace is gone.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Purged {
    pub deleted: NamespacePurge,
    /// Nothing of the namespace remains (its row is deleted too).
    pub done: bool,
    /// The namespace had a row when the transaction began.
    pub existed: bool,
}

impl Writer {
    /// Sets the fields of the group's settings the update names.
    pub(super) async fn update_group(
        &mut self,
        tx: &mut Tx,
        b: &mut Batch,
        ns: &str,
        group: &str,
        update: &GroupUpdate,
    ) -> Handled<()> {
        let Some((old, _)) = group_settings(tx, ns, group, true).await? else {
            return Err(CommandError::Rejected(group_not_found(group)));
        };
        let settings = GroupSettings::new(
            update.kinds.clone().unwrap_or(old.kinds),
            update.workflow_ids.clone().unwrap_or(old.workflow_ids),
            update.max_attempts.unwrap_or(old.max_attempts),
        );
        let q = Statement::new("UPDATE consumer_groups SET settings = $1 WHERE namespace = $2 AND name = $3");
        tx.execute(q.bind(to_json(&settings)?).bind(ns).bind(group)).await?;
        // Notifications the old filters skipped may pass the new ones, and max_attempts may have
        // made due deliveries dead: let the consumers look.
        b.effects.made_due(ns, group);
        Ok(())
    }

    /// Moves the group's read position (see the contract of SeekConsumerGroup): drops every
    /// unsettled delivery and the dead letters from the new start on.
    pub(super) async fn seek_group(
        &mut self,
        tx: &mut Tx,
        b: &mut Batch,
        ns: &str,
        group: &str,
        position: SeekPosition,
    ) -> Handled<Seeked> {
        if group_settings(tx, ns, group, true).await?.is_none() {
            return Err(CommandError::Rejected(group_not_found(group)));
        }
        let next = next_notification_seq(tx, b, ns).await?.unwrap_or(1);
        let read_seq = match position {
            SeekPosition::Earliest => 0,
            SeekPosition::Latest => next - 1,
            SeekPosition::Sequence(s) if s as i64 > next => {
                return Err(CommandError::Rejected(Error::FailedPrecondition(format!(
                    "sequence {s} is past the next notification sequence {next} of namespace {ns:?}"
                ))));
            }
            SeekPosition::Sequence(s) => (s as i64 - 1).max(0),
            SeekPosition::Time(t) => {
                let q = Statement::new(sql::first_seq_at("notifications", "created_us"));
                let first: Option<i64> = match tx.fetch_optional(q.bind(ns).bind(micros(t))).await? {
                    Some(row) => row.get(0)?,
                    None => None,
                };
                // Past every notification: from the next one on.
                first.map_or(next - 1, |s| s.min(next) - 1)
            }
        };
        let dropped = self
            .drop_deliveries(
                tx,
                b,
                ns,
                group,
                &format!("AND (state <> '{}' OR seq > $3)", DeliveryState::Dead),
                read_seq,
            )
            .await?;
        let q = Statement::new("UPDATE consumer_groups SET read_seq = $1 WHERE namespace = $2 AND name = $3");
        tx.execute(q.bind(read_seq).bind(ns).bind(group)).await?;
        b.effects.made_due(ns, group);
        Ok(Seeked { read_sequence: read_seq as u64, dropped })
    }

    /// Deletes the group with its deliveries; returns how many deliveries went with it. Its
    /// consumers of this process are told to claim, which ends them with NotFound.
    pub(super) async fn delete_group(&mut self, tx: &mut Tx, b: &mut Batch, ns: &str, group: &str) -> Handled<u64> {
        if group_settings(tx, ns, group, true).await?.is_none() {
            return Err(CommandError::Rejected(group_not_found(group)));
        }
        let dropped = self.drop_deliveries(tx, b, ns, group, "AND seq > $3", -1).await?;
        let q = Statement::new("DELETE FROM consumer_groups WHERE namespace = $1 AND name = $2");
        tx.execute(q.bind(ns).bind(group)).await?;
        b.effects.made_due(ns, group);
        Ok(dropped)
    }

    /// Deletes the group's deliveries that match `condition` (SQL after the namespace and group,
    /// which may use `$3`, bound to `bound`); frees the room of this process's consumers that
    /// held leases among them. Returns how many.
    async fn drop_deliveries(
        &mut self,
        tx: &mut Tx,
        b: &mut Batch,
        ns: &str,
        group: &str,
        condition: &str,
        bound: i64,
    ) -> Result<u64> {
        let sql = format!(
            "DELETE FROM deliveries WHERE namespace = $1 AND group_name = $2 {condition} RETURNING consumer, state"
        );
        let rows = tx.fetch_all(Statement::new(sql).bind(ns).bind(group).bind(bound)).await?;
        let mut by_consumer: HashMap<String, u64> = HashMap::new();
        for row in &rows {
            let state: DeliveryState = row.get::<String>(1)?.parse()?;
            if let (DeliveryState::Leased, Some(consumer)) = (state, row.get::<Option<String>>(0)?) {
                *by_consumer.entry(consumer).or_default() += 1;
            }
        }
        for (consumer, n) in by_consumer {
            if let Some(slot) = self.slots.find(ns, group, &consumer) {
                b.effects.freed.push((slot, n));
            }
        }
        Ok(rows.len() as u64)
    }

    /// Deletes up to `limit` rows of each table of the namespace, children before their parents
    /// (partial states before their listeners, deliveries before their groups), and the
    /// namespace row once nothing else is left.
    pub(super) async fn purge_namespace(
        &mut self,
        tx: &mut Tx,
        b: &mut Batch,
        ns: &str,
        limit: u32,
    ) -> Handled<Purged> {
        let lock = format!("SELECT listener_epoch FROM namespaces WHERE name = $1{}", tx.backend().for_update());
        let existed = tx.fetch_optional(Statement::new(lock).bind(ns)).await?.is_some();
        // This process's engine forgets the namespace; others reload it (the epoch below).
        self.unload(ns);
        let limit = i64::from(limit);
        let mut deleted = NamespacePurge::default();
        let groups = groups_of(tx, ns).await?;
        for (count, sql) in [
            (
                &mut deleted.partials,
                "DELETE FROM partials WHERE (listener_id, corr_key) IN (SELECT p.listener_id, p.corr_key \
                 FROM partials p JOIN listeners l ON l.id = p.listener_id WHERE l.namespace = $1 LIMIT $2)",
            ),
            (
                &mut deleted.listeners,
                "DELETE FROM listeners WHERE id IN (SELECT l.id FROM listeners l WHERE l.namespace = $1 \
                 AND NOT EXISTS (SELECT 1 FROM partials p WHERE p.listener_id = l.id) LIMIT $2)",
            ),
            (
                &mut deleted.deliveries,
                "DELETE FROM deliveries WHERE (namespace, group_name, seq) IN \
                 (SELECT namespace, group_name, seq FROM deliveries WHERE namespace = $1 LIMIT $2)",
            ),
            (
                &mut deleted.groups,
                "DELETE FROM consumer_groups WHERE (namespace, name) IN (SELECT g.namespace, g.name \
                 FROM consumer_groups g WHERE g.namespace = $1 AND NOT EXISTS (SELECT 1 FROM deliveries d \
                 WHERE d.namespace = g.namespace AND d.group_name = g.name) LIMIT $2)",
            ),
            (
                &mut deleted.notifications,
                "DELETE FROM notifications WHERE (namespace, seq) IN \
                 (SELECT namespace, seq FROM notifications WHERE namespace = $1 LIMIT $2)",
            ),
            (
                &mut deleted.events,
                "DELETE FROM events WHERE (namespace, seq) IN \
                 (SELECT namespace, seq FROM events WHERE namespace = $1 LIMIT $2)",
            ),
        ] {
            *count = tx.execute(Statement::new(sql).bind(ns).bind(limit)).await?;
        }
        let done = !has_rows(tx, ns).await?;
        if done {
            tx.execute(Statement::new("DELETE FROM namespaces WHERE name = $1").bind(ns)).await?;
        } else if existed {
            let q = Statement::new("UPDATE namespaces SET listener_epoch = listener_epoch + 1 WHERE name = $1");
            tx.execute(q.bind(ns)).await?;
        }
        // Streams of the deleted groups claim, and end with NotFound.
        for group in groups {
            b.effects.made_due(ns, &group);
        }
        Ok(Purged { deleted, done, existed })
    }
}

/// Returns the names of the namespace's consumer groups.
async fn groups_of(tx: &mut Tx, ns: &str) -> Result<Vec<String>> {
    let q = Statement::new("SELECT name FROM consumer_groups WHERE namespace = $1");
    tx.fetch_all(q.bind(ns)).await?.iter().map(|r| r.get(0)).collect()
}

/// Returns whether any table still holds a row of the namespace (partial states belong to its
/// listeners, so they are gone with them).
async fn has_rows(tx: &mut Tx, ns: &str) -> Result<bool> {
    for table in ["listeners", "deliveries", "consumer_groups", "notifications", "events"] {
        let sql = format!("SELECT 1 FROM {table} WHERE namespace = $1 LIMIT 1");
        if tx.fetch_optional(Statement::new(sql).bind(ns)).await?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

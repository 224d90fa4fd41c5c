//! The sweep: timeouts of WAIT listeners whose deadline passed, the pruning of collected events
//! past their lifespan from correlation keys that saw no new event, and retention (events,
//! finished notifications and finished listeners older than the configured retention, in
//! bounded batches).
//!
//! Hazards: a sweep locks namespaces of its own choosing, so it always runs in a transaction of
//! its own (the batch loop never groups it with other commands). Retention deletes events even
//! if a lagging group still has notifications referring to them. A listener purged by retention
//! bumps its namespace's epoch, so every process reloads that namespace's listeners in full.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::{Batch, Handled, Writer};
use crate::error::Result;
use crate::store::SweepReport;
use crate::store::conn::{Statement, Tx};
use crate::store::rows::{STATUS_ACTIVE, micros};

/// How often the sweeper drops collected events past their lifespan from keys that saw no event.
const PRUNE_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

impl Writer {
    /// Times out passed WAIT deadlines, now and then prunes collected events past their
    /// lifespan, and deletes one batch of rows past retention.
    pub(super) async fn sweep(&mut self, tx: &mut Tx, b: &mut Batch, now: DateTime<Utc>) -> Handled<SweepReport> {
        let mut report = SweepReport::default();
        let q = Statement::new(format!(
            "SELECT DISTINCT namespace FROM listeners WHERE status = '{STATUS_ACTIVE}' AND deadline_us IS NOT NULL \
             AND deadline_us <= $1"
        ));
        let mut namespaces: BTreeSet<String> =
            tx.fetch_all(q.bind(micros(now))).await?.iter().map(|r| r.get(0)).collect::<Result<_>>()?;
        // Collected events past their lifespan are dropped when their key sees another event;
        // keys that never do are pruned here, now and then (it scans the loaded listeners).
        let prune = self.last_prune.is_none_or(|t| now - t >= PRUNE_INTERVAL);
        if prune {
            self.last_prune = Some(now);
            namespaces.extend(self.engine.namespaces_to_prune(now));
        }
        // Locked in name order, like every other transaction.
        for ns in &namespaces {
            self.lock_namespace(tx, b, ns).await?;
            let outcome = self.engine.expire_namespace(ns, now);
            report.timed_out += outcome.actions.len() as u64;
            self.stage(b, ns, outcome)?;
            if prune {
                let outcome = self.engine.prune_namespace(ns, now);
                report.partials_pruned += outcome.partials.len() as u64;
                self.stage(b, ns, outcome)?;
            }
        }
        // Retention below deletes rows: what the timeouts wrote goes first.
        self.flush(b)?;
        b.write(tx).await?;
        if let Some(retention) = self.config.retention {
            let cutoff = micros(now) - retention.as_micros() as i64;
            self.apply_retention(tx, b, cutoff, &mut report).await?;
        }
        Ok(report)
    }

    /// Deletes, per namespace, up to the configured batch of events, finished notifications and
    /// finished listeners received, created or finished before `cutoff`, counting them in
    /// `report`.
    ///
    /// Events and notifications are looked for at the head of each namespace, its lowest
    /// sequences (times grow with the sequence), so a sweep reads at most one batch of rows per
    /// namespace and table, however large they are, and no index on times is needed.
    async fn apply_retention(&mut self, tx: &mut Tx, b: &Batch, cutoff: i64, report: &mut SweepReport) -> Result<()> {
        let limit = i64::from(self.config.retention_batch);
        let rows = tx.fetch_all(Statement::new("SELECT name FROM namespaces ORDER BY name")).await?;
        for row in &rows {
            let ns: String = row.get(0)?;
            let q = Statement::new(
                "DELETE FROM events WHERE namespace = $1 AND seq IN (SELECT seq FROM \
                 (SELECT seq, received_us FROM events WHERE namespace = $1 ORDER BY seq LIMIT $3) head \
                 WHERE received_us < $2)",
            );
            report.events_deleted += tx.execute(q.bind(ns.as_str()).bind(cutoff).bind(limit)).await?;
            let q = Statement::new(
                "DELETE FROM notifications WHERE namespace = $1 AND seq IN (SELECT seq FROM \
                 (SELECT seq, created_us FROM notifications WHERE namespace = $1 ORDER BY seq LIMIT $3) head \
                 WHERE created_us < $2 \
                 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.namespace = $1 AND d.seq = head.seq) \
                 AND head.seq <= COALESCE((SELECT MIN(g.read_seq) FROM consumer_groups g WHERE g.namespace = $1), \
                     head.seq))",
            );
            report.notifications_deleted += tx.execute(q.bind(ns.as_str()).bind(cutoff).bind(limit)).await?;
        }
        let q = Statement::new(format!(
            "SELECT id, namespace FROM listeners WHERE status <> '{STATUS_ACTIVE}' AND finished_us < $1 LIMIT $2"
        ));
        let purge = tx.fetch_all(q.bind(cutoff).bind(limit)).await?;
        let mut namespaces = BTreeSet::new();
        for row in &purge {
            let id: String = row.get(0)?;
            namespaces.insert(row.get::<String>(1)?);
            tx.execute(Statement::new("DELETE FROM listeners WHERE id = $1").bind(id)).await?;
        }
        for ns in namespaces {
            let q = Statement::new("UPDATE namespaces SET listener_epoch = listener_epoch + 1 WHERE name = $1");
            tx.execute(q.bind(ns.as_str())).await?;
            if !b.ns.contains_key(&ns) {
                self.unload(&ns);
            }
        }
        report.listeners_deleted = purge.len() as u64;
        Ok(())
    }
}

//! Delivery to consumer groups: group creation, the hand-over of a transaction's new
//! notifications to this process's waiting consumers, claims, acks, nacks, releases and
//! redrives.
//!
//! Direct delivery: new notifications of a transaction are leased, in that same transaction, to
//! the waiting consumers of this process ([`crate::store::consume`]) of every group that has no
//! backlog (its `read_seq` is just before the transaction's first notification), and the
//! group's `read_seq` moves past them, so the invariant of the claim path holds: every
//! notification up to `read_seq` has a delivery row or was filtered out by the group. Their
//! leases are pushed to the consumers after the commit. A group with a backlog, or whose
//! consumers have no room left, is told to claim instead, which keeps sequence order.
//!
//! A delivery row is [`DeliveryState::Ready`], [`DeliveryState::Leased`] or
//! [`DeliveryState::Dead`]; an ack deletes it. A claim takes due rows first (expired leases,
//! retries whose time came), then new notifications past the group's read position; once a
//! claim found nothing more due, the group's claims skip the due rows for [`DUE_SCAN_INTERVAL`]
//! unless this process made some available.
//!
//! Hazards: the group rows are locked (`FOR UPDATE`, in name order) after the namespace rows, as
//! claims do; a claim-only transaction of another process that locks two groups in the other
//! order can deadlock with it, which Postgres breaks by failing one batch (retried command by
//! command). A consumer's room is counted in memory ([`Effects`](super::Effects)); a claim takes
//! no more than the room left after this transaction's direct deliveries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::namespace::insert_namespace;
use super::publish::Fresh;
use super::{Batch, Claimed, CommandError, Effects, Handled, Writer};
use crate::error::{Error, Result};
use crate::store::conn::{Statement, Tx, Value};
use crate::store::consume::{Leased, Slot};
use crate::store::rows::{
    DeliveryState, GroupSettings, NOTIFICATION_COLUMNS, NotificationRow, StoredRow, from_json, from_micros, micros,
    to_json,
};
use crate::store::sql::{self, CHUNK, INSERT_CHUNK, bind_seqs, placeholders, seqs_in};
use crate::store::{GroupSpec, Notification, StartPosition};

impl Batch {
    /// Queues the first leases of new notifications of a group, (sequence, lease end, consumer),
    /// and the group's new read position.
    pub(super) fn lease_new(&mut self, ns: &str, group: &str, leases: &[(i64, i64, &str)], read_seq: Option<i64>) {
        if let Some(end) = leases.iter().map(|&(_, until, _)| until).min() {
            let earliest = self.effects.lease_ends.entry((ns.to_owned(), group.to_owned())).or_insert(end);
            *earliest = (*earliest).min(end);
        }
        for chunk in leases.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO deliveries (namespace, group_name, seq, state, attempt, available_us, consumer) \
                 VALUES {}",
                placeholders(chunk.len(), 7, 1)
            );
            let mut values = Vec::with_capacity(chunk.len() * 7);
            for &(seq, until, consumer) in chunk {
                values.extend([
                    Value::from(ns),
                    Value::from(group),
                    Value::from(seq),
                    Value::from(DeliveryState::Leased),
                    Value::from(1),
                    Value::from(until),
                    Value::from(consumer),
                ]);
            }
            self.writes.push(Statement::with(sql, values));
        }
        if let Some(position) = read_seq {
            self.writes.push(Statement::with(
                "UPDATE consumer_groups SET read_seq = $1 WHERE namespace = $2 AND name = $3",
                vec![Value::from(position), Value::from(ns), Value::from(group)],
            ));
        }
    }
}

impl Writer {
    /// Creates the consumer group unless it exists with the same settings; other settings are
    /// a failed precondition.
    pub(super) async fn ensure_group(
        &mut self,
        tx: &mut Tx,
        b: &mut Batch,
        ns: &str,
        group: &GroupSpec,
    ) -> Handled<()> {
        let settings = GroupSettings::new(group.kinds.clone(), group.workflow_ids.clone(), group.max_attempts);
        if let Some((existing, _)) = group_settings(tx, ns, &group.name, false).await? {
            if existing != settings {
                return Err(CommandError::Rejected(Error::FailedPrecondition(format!(
                    "consumer group {:?} exists with other kinds, workflow_ids or max_attempts; \
                     they are fixed when a group is created: use another group name",
                    group.name
                ))));
            }
            return Ok(());
        }
        let next = next_notification_seq(tx, b, ns).await?;
        if next.is_none() {
            // The namespace's first use: ListNamespaces shows it from now on.
            insert_namespace(tx, ns, b.now).await?;
        }
        let next = next.unwrap_or(1);
        let read_seq = match group.start {
            StartPosition::Earliest => 0,
            StartPosition::Latest => next - 1,
            StartPosition::Sequence(s) => (s as i64).saturating_sub(1).max(0),
        };
        tx.execute(
            Statement::new(
                "INSERT INTO consumer_groups (namespace, name, settings, read_seq, created_us) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (namespace, name) DO NOTHING",
            )
            .bind(ns)
            .bind(group.name.as_str())
            .bind(to_json(&settings)?)
            .bind(read_seq)
            .bind(micros(b.now)),
        )
        .await?;
        Ok(())
    }

    /// Leases the transaction's new notifications to waiting consumers of this process (see
    /// the module docs); groups it cannot serve are told to claim.
    pub(super) async fn hand_over(&mut self, tx: &mut Tx, b: &mut Batch) -> Result<()> {
        let fresh = std::mem::take(&mut b.fresh);
        for (ns, fresh) in fresh {
            if fresh.notifications.is_empty() {
                continue;
            }
            let slots = self.slots.of(&ns);
            if slots.is_empty() {
                continue;
            }
            let first = b.ns.get(&ns).map(|st| st.first_notification_seq).ok_or_else(|| {
                Error::Internal(format!("notifications created in namespace {ns} that is not locked"))
            })?;
            let mut groups: BTreeMap<&str, Vec<Arc<Slot>>> = BTreeMap::new();
            for slot in &slots {
                groups.entry(slot.group.as_str()).or_default().push(slot.clone());
            }
            for (group, slots) in groups {
                hand_over_group(tx, b, &ns, group, slots, &fresh, first).await?;
            }
        }
        Ok(())
    }

    /// Leases up to `max` of the group's notifications to `consumer` for `lease` (no more than
    /// the consumer's room, if it is one of this process): due ones first, then new ones.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn claim(
        &mut self,
        tx: &mut Tx,
        b: &mut Batch,
        ns: &str,
        group: &str,
        consumer: &str,
        max: u32,
        lease: Duration,
    ) -> Handled<Claimed> {
        let Some((settings, read_seq)) = group_settings(tx, ns, group, true).await? else {
            return Err(CommandError::Rejected(group_not_found(group)));
        };
        // A consumer of this process claims no more than its room (direct deliveries may have
        // taken some since it asked).
        let slot = self.slots.find(ns, group, consumer);
        let max = match &slot {
            Some(s) => max.min(b.effects.room(s).clamp(0, i64::from(u32::MAX)) as u32),
            None => max,
        };
        if max == 0 {
            return Ok(Claimed { leased: Vec::new(), full: true });
        }
        let now = micros(b.now);
        let until = now.saturating_add(lease.as_micros() as i64);
        let claimant = Claimant { ns, group, consumer, until };
        let key = (ns.to_owned(), group.to_owned());
        let mut claimed = match self.due_scans.get(&key) {
            Some(&skip_until) if now < skip_until => Vec::new(),
            _ => {
                let due = claim_due(tx, &claimant, settings.max_attempts, now, max).await?;
                if due.len() < max as usize {
                    // The leases just made end no earlier than `until`, those of new ones are
                    // counted at the commit (`Effects::lease_ends`).
                    let skip = now.saturating_add(DUE_SCAN_INTERVAL.num_microseconds().unwrap_or(0));
                    let skip = if due.is_empty() { skip } else { skip.min(until) };
                    self.due_scans.insert(key, skip);
                } else {
                    self.due_scans.remove(&key);
                }
                due
            }
        };
        let (new, position) = scan_new(tx, ns, &settings, read_seq, max as usize - claimed.len()).await?;
        let leases: Vec<_> = new.iter().map(|&seq| (seq, until, consumer)).collect();
        b.lease_new(ns, group, &leases, (position != read_seq).then_some(position));
        claimed.extend(new.into_iter().map(|seq| (seq, 1)));
        let mut by_seq = notifications_by_seq(tx, ns, &claimed).await?;
        let full = claimed.len() >= max as usize;
        if let Some(slot) = slot {
            b.effects.leased.push((slot, claimed.len() as u64, Vec::new()));
        }
        let mut leased = Vec::with_capacity(claimed.len());
        for (seq, attempt) in claimed {
            // A notification removed by retention while its delivery was pending is skipped.
            if let Some(n) = by_seq.remove(&seq) {
                leased.push((n, attempt));
            }
        }
        Ok(Claimed { leased, full })
    }

    /// Forgets that claims found nothing due in the groups a committed transaction may have made
    /// deliveries due in (nacks, releases, redrives, the admin calls: [`Effects::made_due`]).
    /// Not in groups it only asked to claim for new notifications (a backlog, consumers out of
    /// room): those are found by position, and forgetting there would look for due deliveries
    /// before every claim of a group that is behind, which makes it fall further behind.
    ///
    /// A lease the transaction made that ends before a group's skip does shortens the skip, so
    /// that it is looked for when it ends.
    pub(super) fn forget_due_scans(&mut self, effects: &Effects) {
        for key in &effects.due {
            self.due_scans.remove(key);
        }
        for (key, end) in &effects.lease_ends {
            if let Some(until) = self.due_scans.get_mut(key) {
                *until = (*until).min(*end);
            }
        }
    }

    /// Acks the group's unsettled deliveries of `seqs` (deletes their rows); returns how many.
    pub(super) async fn ack(
        &mut self,
        tx: &mut Tx,
        b: &mut Batch,
        ns: &str,
        group: &str,
        seqs: &[u64],
    ) -> Handled<u64> {
        let mut acked = 0;
        let mut by_consumer: HashMap<String, u64> = HashMap::new();
        let observed = self.config.observer.is_some();
        for chunk in seqs.chunks(CHUNK) {
            let q = bind_seqs(Statement::new(sql::ack_deliveries(chunk.len())).bind(ns).bind(group), chunk);
            let mut deleted = Vec::new();
            for row in tx.fetch_all(q).await? {
                acked += 1;
                if let Some(consumer) = row.get::<Option<String>>(0)? {
                    *by_consumer.entry(consumer).or_default() += 1;
                }
                deleted.push(row.get::<i64>(1)?);
            }
            if observed && !deleted.is_empty() {
                let sql = sql::notifications_by_seqs("created_us", deleted.len());
                let q = bind_seqs(Statement::new(sql).bind(ns), &deleted);
                let rows = tx.fetch_all(q).await?;
                let created = rows.iter().map(|r| r.get(0).map(from_micros)).collect::<Result<_>>()?;
                b.effects.acked.push((ns.to_owned(), group.to_owned(), created));
            }
        }
        if acked == 0 && group_settings(tx, ns, group, false).await?.is_none() {
            return Err(CommandError::Rejected(group_not_found(group)));
        }
        // Freed in-flight room: the consumers may take more.
        for (consumer, n) in by_consumer {
            if let Some(slot) = self.slots.find(ns, group, &consumer) {
                b.effects.freed.push((slot, n));
            }
        }
        Ok(acked)
    }

    /// Gives a leased notification back for a retry after `retry_after`, or makes it a dead
    /// letter when its attempts are used up; returns whether it did the latter.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn nack(
        &mut self,
        tx: &mut Tx,
        b: &mut Batch,
        ns: &str,
        group: &str,
        seq: u64,
        retry_after: Duration,
        reason: &str,
    ) -> Handled<bool> {
        let Some((settings, read_seq)) = group_settings(tx, ns, group, false).await? else {
            return Err(CommandError::Rejected(group_not_found(group)));
        };
        let q = Statement::new(
            "SELECT state, attempt, consumer FROM deliveries WHERE namespace = $1 AND group_name = $2 AND seq = $3",
        );
        let delivery = tx.fetch_optional(q.bind(ns).bind(group).bind(seq as i64)).await?;
        let state = delivery.as_ref().map(|r| r.get::<String>(0)?.parse::<DeliveryState>()).transpose()?;
        // Whether the lease ended (expired and was taken back, or its stream went away) before
        // this nack: that was the failed attempt, so only when and why it comes again change.
        let (ended, attempt, consumer): (bool, i64, Option<String>) = match (state, delivery) {
            (Some(DeliveryState::Leased), Some(row)) => (false, row.get(1)?, row.get(2)?),
            (Some(DeliveryState::Ready), _) => (true, 0, None),
            (Some(DeliveryState::Dead), _) => {
                return Err(CommandError::Rejected(Error::FailedPrecondition(format!(
                    "notification {seq} is a dead letter in group {group:?}"
                ))));
            }
            // An acked delivery is deleted: the group read past a notification that passes
            // its filters and holds no delivery for it.
            (None, _) if seq as i64 <= read_seq => {
                return Err(CommandError::Rejected(not_pending(tx, ns, group, seq, &settings).await?));
            }
            _ => {
                return Err(CommandError::Rejected(Error::NotFound(format!("notification {seq} in group {group:?}"))));
            }
        };
        let now = micros(b.now);
        let dead = !ended && attempt >= settings.max_attempts as i64;
        let (state, available, dead_us) = if dead {
            (DeliveryState::Dead, now, Some(now))
        } else {
            (DeliveryState::Ready, now.saturating_add(retry_after.as_micros() as i64), None)
        };
        let q = Statement::new(
            "UPDATE deliveries SET state = $1, available_us = $2, dead_us = $3, last_error = $4, consumer = NULL \
             WHERE namespace = $5 AND group_name = $6 AND seq = $7",
        );
        tx.execute(q.bind(state).bind(available).bind(dead_us).bind(reason).bind(ns).bind(group).bind(seq as i64))
            .await?;
        if let Some(slot) = consumer.and_then(|c| self.slots.find(ns, group, &c)) {
            b.effects.freed.push((slot, 1));
        }
        b.effects.made_due(ns, group);
        Ok(dead)
    }

    /// Makes the consumer's leases claimable now; returns how many.
    pub(super) async fn release(
        &mut self,
        tx: &mut Tx,
        b: &mut Batch,
        ns: &str,
        group: &str,
        consumer: &str,
    ) -> Handled<u64> {
        let q = Statement::new(format!(
            "UPDATE deliveries SET state = '{ready}', available_us = $1, consumer = NULL \
             WHERE namespace = $2 AND group_name = $3 AND consumer = $4 AND state = '{leased}'",
            ready = DeliveryState::Ready,
            leased = DeliveryState::Leased,
        ));
        let n = tx.execute(q.bind(micros(b.now)).bind(ns).bind(group).bind(consumer)).await?;
        if n > 0 {
            b.effects.made_due(ns, group);
        }
        Ok(n)
    }

    /// Makes the group's dead letters of `seqs` (all if empty) claimable with fresh attempts;
    /// returns how many.
    pub(super) async fn redrive(
        &mut self,
        tx: &mut Tx,
        b: &mut Batch,
        ns: &str,
        group: &str,
        seqs: &[u64],
    ) -> Handled<u64> {
        let base = format!(
            "UPDATE deliveries SET state = '{ready}', attempt = 0, available_us = $1, dead_us = NULL \
             WHERE namespace = $2 AND group_name = $3 AND state = '{dead}'",
            ready = DeliveryState::Ready,
            dead = DeliveryState::Dead,
        );
        let mut n = 0;
        if seqs.is_empty() {
            n = tx.execute(Statement::new(base.clone()).bind(micros(b.now)).bind(ns).bind(group)).await?;
        }
        for chunk in seqs.chunks(CHUNK) {
            let sql = format!("{base} AND {}", seqs_in(chunk.len(), 4));
            let q = bind_seqs(Statement::new(sql).bind(micros(b.now)).bind(ns).bind(group), chunk);
            n += tx.execute(q).await?;
        }
        if n > 0 {
            b.effects.made_due(ns, group);
        } else if group_settings(tx, ns, group, false).await?.is_none() {
            return Err(CommandError::Rejected(group_not_found(group)));
        }
        Ok(n)
    }
}

/// Leases what a group takes of a transaction's new notifications (those past its read position
/// that pass its filters; the first has sequence `first`) to its waiting consumers, the roomiest
/// first, and moves its read position past them. A group with a backlog, or whose consumers run
/// out of room, is told to claim.
async fn hand_over_group(
    tx: &mut Tx,
    b: &mut Batch,
    ns: &str,
    group: &str,
    slots: Vec<Arc<Slot>>,
    fresh: &Fresh,
    first: i64,
) -> Result<()> {
    let Some((settings, read_seq)) = group_settings(tx, ns, group, true).await? else { return Ok(()) };
    if read_seq < first - 1 {
        // A backlog: new notifications must wait their turn.
        b.effects.claims.insert((ns.to_owned(), group.to_owned()));
        return Ok(());
    }
    let mut room: Vec<i64> = slots.iter().map(|s| b.effects.room(s)).collect();
    let mut leased: Vec<Vec<Leased>> = vec![Vec::new(); slots.len()];
    let mut rows: Vec<(i64, usize)> = Vec::new();
    let mut position = read_seq;
    for n in fresh.notifications.iter().filter(|n| n.seq > read_seq) {
        if settings.matches(n.kind, &n.target) {
            let roomiest = (0..slots.len()).filter(|&i| room[i] > 0).max_by_key(|&i| room[i]);
            let Some(i) = roomiest else {
                b.effects.claims.insert((ns.to_owned(), group.to_owned()));
                break;
            };
            room[i] -= 1;
            rows.push((n.seq, i));
            leased[i].push((fresh.notification(n, b.now), 1));
        }
        position = n.seq;
    }
    let now = micros(b.now);
    let leases: Vec<_> = rows
        .iter()
        .map(|&(seq, i)| {
            let slot = &slots[i];
            (seq, now.saturating_add(slot.lease.as_micros() as i64), slot.consumer.as_str())
        })
        .collect();
    b.lease_new(ns, group, &leases, (position != read_seq).then_some(position));
    for (slot, leased) in slots.into_iter().zip(leased) {
        if !leased.is_empty() {
            b.effects.leased.push((slot, leased.len() as u64, leased));
        }
    }
    Ok(())
}

/// Who claims in which group, and until when the leases last.
struct Claimant<'a> {
    ns: &'a str,
    group: &'a str,
    consumer: &'a str,
    until: i64,
}

/// How long after a claim found nothing more due in a group the next claims skip the look for
/// due deliveries, unless this process made some available meanwhile (a nack, a release, a
/// redrive). That look walks the index of ready and leased deliveries by time, where the rows of
/// acked deliveries stay until the table is vacuumed (on Postgres once a minute at best: at 5,000
/// acks a second, hundreds of thousands of entries), and it ran before every claim. A lease that
/// expires, or a nack in another process, is seen at most this much later.
pub(super) const DUE_SCAN_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::milliseconds(200);

/// Leases up to `max` of the group's due deliveries (expired leases, retries whose time came)
/// to the claimant; those whose attempts are used up become dead letters instead. Returns the
/// leased (sequence, attempt) pairs.
async fn claim_due(tx: &mut Tx, c: &Claimant<'_>, max_attempts: u32, now: i64, max: u32) -> Result<Vec<(i64, u32)>> {
    let sql = format!(
        "SELECT seq, state, attempt FROM deliveries WHERE namespace = $1 AND group_name = $2 AND state <> '{}' \
         AND available_us <= $3 ORDER BY available_us, seq LIMIT $4{}",
        DeliveryState::Dead,
        tx.backend().for_update_skip_locked()
    );
    let due = tx.fetch_all(Statement::new(sql).bind(c.ns).bind(c.group).bind(now).bind(max as i64)).await?;
    let mut claimed = Vec::new();
    for row in due {
        let seq: i64 = row.get(0)?;
        let state: DeliveryState = row.get::<String>(1)?.parse()?;
        let attempt: i64 = row.get(2)?;
        if attempt >= max_attempts as i64 {
            let q = Statement::new(format!(
                "UPDATE deliveries SET state = '{dead}', dead_us = $1, consumer = NULL, \
                 last_error = CASE WHEN $2 = '{leased}' THEN 'lease expired' ELSE last_error END \
                 WHERE namespace = $3 AND group_name = $4 AND seq = $5",
                dead = DeliveryState::Dead,
                leased = DeliveryState::Leased,
            ));
            tx.execute(q.bind(now).bind(state).bind(c.ns).bind(c.group).bind(seq)).await?;
            continue;
        }
        let q = Statement::new(format!(
            "UPDATE deliveries SET state = '{}', attempt = attempt + 1, available_us = $1, consumer = $2 \
             WHERE namespace = $3 AND group_name = $4 AND seq = $5",
            DeliveryState::Leased
        ));
        tx.execute(q.bind(c.until).bind(c.consumer).bind(c.ns).bind(c.group).bind(seq)).await?;
        claimed.push((seq, attempt as u32 + 1));
    }
    Ok(claimed)
}

/// Scans the namespace's notifications past `read_seq` for up to `want` that pass the group's
/// filters. Returns their sequences and the new read position (the last sequence looked at).
async fn scan_new(
    tx: &mut Tx,
    ns: &str,
    settings: &GroupSettings,
    read_seq: i64,
    want: usize,
) -> Result<(Vec<i64>, i64)> {
    const SCAN: i64 = 256;
    let mut position = read_seq;
    let mut found = Vec::new();
    'scan: while found.len() < want {
        let q = Statement::new(
            "SELECT seq, kind, target FROM notifications WHERE namespace = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        );
        let rows = tx.fetch_all(q.bind(ns).bind(position).bind(SCAN)).await?;
        let n = rows.len() as i64;
        for row in rows {
            let seq: i64 = row.get(0)?;
            let kind: String = row.get(1)?;
            let target: String = row.get(2)?;
            position = seq;
            if !settings.matches(kind.parse()?, &target) {
                continue;
            }
            found.push(seq);
            if found.len() >= want {
                break 'scan;
            }
        }
        if n < SCAN {
            break;
        }
    }
    Ok((found, position))
}

/// Reads the claimed notifications (without their events), by sequence.
async fn notifications_by_seq(tx: &mut Tx, ns: &str, claimed: &[(i64, u32)]) -> Result<HashMap<i64, Notification>> {
    let mut by_seq: HashMap<i64, Notification> = HashMap::with_capacity(claimed.len());
    let seqs: Vec<i64> = claimed.iter().map(|(s, _)| *s).collect();
    for chunk in seqs.chunks(CHUNK) {
        let q =
            bind_seqs(Statement::new(sql::notifications_by_seqs(NOTIFICATION_COLUMNS, chunk.len())).bind(ns), chunk);
        for row in tx.fetch_all(q).await? {
            let row = NotificationRow::read(&row)?;
            by_seq.insert(row.seq, row.into_notification()?);
        }
    }
    Ok(by_seq)
}

/// The error for a nack of a notification the group read past that has no delivery row: acked if
/// it passes the group's filters, else not the group's.
async fn not_pending(tx: &mut Tx, ns: &str, group: &str, seq: u64, settings: &GroupSettings) -> Result<Error> {
    let q = Statement::new("SELECT kind, target FROM notifications WHERE namespace = $1 AND seq = $2");
    let row = tx.fetch_optional(q.bind(ns).bind(seq as i64)).await?;
    let acked = match row {
        Some(r) => settings.matches(r.get::<String>(0)?.parse()?, &r.get::<String>(1)?),
        None => false,
    };
    Ok(if acked {
        Error::FailedPrecondition(format!("notification {seq} is already acked in group {group:?}"))
    } else {
        Error::NotFound(format!("notification {seq} in group {group:?}"))
    })
}

/// Counts the unexpired leases of the consumers to recount, for the commit to set their room.
pub(super) async fn recount(tx: &mut Tx, b: &mut Batch) -> Result<()> {
    let sql = format!(
        "SELECT COUNT(*) FROM deliveries WHERE namespace = $1 AND group_name = $2 AND consumer = $3 \
         AND state = '{}' AND available_us > $4",
        DeliveryState::Leased
    );
    for slot in std::mem::take(&mut b.recounts) {
        let q = Statement::new(sql.clone()).bind(slot.namespace.as_str()).bind(slot.group.as_str());
        let q = q.bind(slot.consumer.as_str()).bind(micros(b.now));
        let row = tx.fetch_optional(q).await?.ok_or_else(|| Error::Internal("a count returned no row".into()))?;
        b.effects.recounted.push((slot, row.get::<i64>(0)? as u64));
    }
    Ok(())
}

/// Reads a group's settings and read position (locked with `lock`, on Postgres).
pub(super) async fn group_settings(
    tx: &mut Tx,
    ns: &str,
    group: &str,
    lock: bool,
) -> Result<Option<(GroupSettings, i64)>> {
    let sql = format!(
        "SELECT settings, read_seq FROM consumer_groups WHERE namespace = $1 AND name = $2{}",
        if lock { tx.backend().for_update() } else { "" }
    );
    let row = tx.fetch_optional(Statement::new(sql).bind(ns).bind(group)).await?;
    row.map(|r| Ok((from_json(&r.get::<String>(0)?)?, r.get(1)?))).transpose()
}

/// Returns the namespace's next notification sequence, as this transaction sees it; `None` when
/// the namespace has no row.
pub(super) async fn next_notification_seq(tx: &mut Tx, b: &Batch, ns: &str) -> Result<Option<i64>> {
    if let Some(st) = b.ns.get(ns) {
        return Ok(Some(st.next_notification_seq));
    }
    let q = Statement::new("SELECT next_notification_seq FROM namespaces WHERE name = $1").bind(ns);
    tx.fetch_optional(q).await?.map(|r| r.get(0)).transpose()
}

/// The error for a consumer group that does not exist in the namespace.
pub(crate) fn group_not_found(group: &str) -> Error {
    Error::NotFound(format!("consumer group {group:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conn::Conn;
    use crate::store::consume::Slots;
    use crate::store::{Durability, StoreConfig};

    #[test]
    fn only_deliveries_made_due_end_the_skip_of_the_due_look() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
        let path = dir.path().join("x.db");
        let conn = Conn::sqlite(path.clone(), Durability::Relaxed, 64 << 20)?;
        let config = StoreConfig::new(format!("sqlite://{}", path.display()));
        let mut writer = Writer::new(conn, Slots::default(), config);
        let key = ("ns".to_owned(), "g".to_owned());
        writer.due_scans.insert(key.clone(), 1_000);

        // A group behind on new notifications: its consumers are asked to claim, nothing was
        // made due.
        let mut backlog = Effects::default();
        backlog.claims.insert(key.clone());
        writer.forget_due_scans(&backlog);
        assert_eq!(writer.due_scans.get(&key), Some(&1_000), "a backlog keeps the skip");

        // A lease made in the group that ends before the skip shortens it.
        let mut leased = Effects::default();
        leased.lease_ends.insert(key.clone(), 400);
        writer.forget_due_scans(&leased);
        assert_eq!(writer.due_scans.get(&key), Some(&400), "the skip ends when the lease does");

        // A nack, release, redrive or admin call ends it.
        let mut nacked = Effects::default();
        nacked.made_due("ns", "g");
        assert!(nacked.claims.contains(&key), "consumers claim after a nack");
        writer.forget_due_scans(&nacked);
        assert_eq!(writer.due_scans.get(&key), None, "a nack ends the skip");
        Ok(())
    }
}

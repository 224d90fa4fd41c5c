//! Consumers of this process: streams that take notifications of one consumer group.
//!
//! A [`Consumer`] registers a [`Slot`] with the store while it runs. When the writer commits new
//! notifications of a namespace, it hands them straight to the waiting slots of each group that
//! has no backlog, in the publishing transaction (*direct delivery*, see the writer), and pushes
//! them into the slots' inboxes after the commit. Everything else (a backlog, expired leases,
//! due retries, nacked or released notifications, notifications published by another process)
//! goes the claim path: the writer marks the group's slots as wanting a claim, and each
//! consumer claims in sequence order when it has room.
//!
//! Each slot counts its free in-flight room in memory: the writer takes room for every lease it
//! makes to the slot (direct or claimed) and gives it back for acks and nacks of the slot's
//! leases. At every poll interval the consumer has the writer recount its unexpired leases in
//! the database, which picks up acks made on another server and expired leases, and claims
//! once, which picks up what other processes published. The count is taken at the end of a
//! writer transaction and applied after that transaction's own leases and acks, so no lease or
//! ack of this process falls between the count and the room it sets: a recount is exact, and
//! a consumer never holds more than `max_in_flight` unexpired leases made by this process.
//!
//! Hazards: an ack on another server frees room here only at the next poll. Notifications
//! pushed into an inbox whose consumer stops before sending them stay leased to it; the
//! consumer releases all its leases when it stops (and the leases expire if the process dies),
//! so they are delivered again: at least once, not exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::writer::Command;
use super::{Delivery, Notification, Store};
use crate::error::{Error, Result};

/// A notification handed to a slot with its attempt number.
pub(crate) type Leased = (Notification, u32);

/// The consumers of this process, by namespace.
#[derive(Debug, Default, Clone)]
pub(crate) struct Slots(Arc<Mutex<HashMap<String, Vec<Arc<Slot>>>>>);

impl Slots {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Arc<Slot>>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn attach(&self, slot: Arc<Slot>) {
        self.map().entry(slot.namespace.clone()).or_default().push(slot);
    }

    fn detach(&self, slot: &Arc<Slot>) {
        let mut map = self.map();
        if let Some(slots) = map.get_mut(&slot.namespace) {
            slots.retain(|s| !Arc::ptr_eq(s, slot));
            if slots.is_empty() {
                map.remove(&slot.namespace);
            }
        }
    }

    /// Returns the slots of a namespace.
    pub(crate) fn of(&self, namespace: &str) -> Vec<Arc<Slot>> {
        self.map().get(namespace).cloned().unwrap_or_default()
    }

    /// Returns the slot of one consumer.
    pub(crate) fn find(&self, namespace: &str, group: &str, consumer: &str) -> Option<Arc<Slot>> {
        self.map().get(namespace)?.iter().find(|s| s.group == group && s.consumer == consumer).cloned()
    }

    /// Makes every slot of the group claim when it has room.
    pub(crate) fn want_claim(&self, namespace: &str, group: &str) {
        for slot in self.of(namespace).iter().filter(|s| s.group == group) {
            slot.want_claim();
        }
    }
}

/// One consumer as the writer sees it.
#[derive(Debug)]
pub(crate) struct Slot {
    pub namespace: String,
    pub group: String,
    pub consumer: String,
    pub lease: Duration,
    max_in_flight: u32,
    state: Mutex<SlotState>,
    wake: Notify,
    inbox: mpsc::UnboundedSender<Vec<Leased>>,
}

#[derive(Debug, Default)]
struct SlotState {
    /// Free in-flight room (negative only transiently).
    room: i64,
    /// Bumped whenever the group may have claimable notifications.
    wanted: u64,
    /// The `wanted` value as of the last claim that left nothing behind.
    satisfied: u64,
}

impl Slot {
    fn state(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns the free in-flight room.
    pub(crate) fn room(&self) -> u32 {
        self.state().room.clamp(0, i64::from(u32::MAX)) as u32
    }

    /// Counts leases made to the slot (after they committed).
    pub(crate) fn leased(&self, n: u64) {
        self.state().room -= n as i64;
    }

    /// Gives room back for leases that ended (after the ack or nack committed).
    pub(crate) fn freed(&self, n: u64) {
        {
            let mut st = self.state();
            st.room = (st.room + n as i64).min(i64::from(self.max_in_flight));
        }
        self.wake.notify_one();
    }

    /// Makes the consumer claim when it has room.
    pub(crate) fn want_claim(&self) {
        self.state().wanted += 1;
        self.wake.notify_one();
    }

    /// Pushes committed leases to the consumer; false if it is gone (its release frees them).
    pub(crate) fn push(&self, leased: Vec<Leased>) -> bool {
        self.inbox.send(leased).is_ok()
    }

    /// Returns the room to claim and the claim marker, when a claim is due.
    fn claim_due(&self) -> Option<(u32, u64)> {
        let st = self.state();
        (st.room > 0 && st.wanted != st.satisfied).then(|| (st.room.min(i64::from(u32::MAX)) as u32, st.wanted))
    }

    /// Records that a claim made at `marker` left nothing claimable behind.
    fn satisfied(&self, marker: u64) {
        let mut st = self.state();
        st.satisfied = st.satisfied.max(marker);
    }

    /// Sets the room from a count of the slot's unexpired leases (see the module docs).
    pub(crate) fn recount(&self, unexpired: u64) {
        self.state().room = i64::from(self.max_in_flight) - unexpired as i64;
    }
}

/// How a [`Consumer`] consumes.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    pub namespace: String,
    /// The consumer group; it must exist ([`Store::ensure_group`]).
    pub group: String,
    /// The consumer's id, unique within the group (leases are made to it).
    pub consumer: String,
    /// Most unacknowledged notifications leased to the consumer at a time.
    pub max_in_flight: u32,
    pub lease: Duration,
    /// How often the consumer recounts its leases and claims (expired leases, due retries,
    /// other processes' notifications).
    pub poll_interval: Duration,
}

/// How many notifications a consumer got by each path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Handed over by the publishing transaction.
    pub direct: u64,
    /// Claimed.
    pub claimed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    direct: AtomicU64,
    claimed: AtomicU64,
}

/// A running consumer of a group: yields its deliveries until it is closed or fails. Dropping
/// it stops it too (its leases are released in the background).
#[derive(Debug)]
pub struct Consumer {
    deliveries: mpsc::Receiver<Result<Delivery>>,
    task: JoinHandle<Result<u64>>,
    counters: Arc<Counters>,
    slot: Arc<Slot>,
}

impl Consumer {
    /// Returns the next delivery; `None` after an error was returned. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Delivery>> {
        self.deliveries.recv().await
    }

    pub fn stats(&self) -> ConsumerStats {
        ConsumerStats {
            direct: self.counters.direct.load(Ordering::Relaxed),
            claimed: self.counters.claimed.load(Ordering::Relaxed),
        }
    }

    /// Returns how many more notifications this process may lease to the consumer now (its
    /// `max_in_flight` less the leases it holds, as this process last counted them).
    pub fn room(&self) -> u32 {
        self.slot.room()
    }

    /// Stops the consumer and releases its leases (deliveries not yet received included), so
    /// another consumer of the group gets them at once; returns how many were released.
    pub async fn close(self) -> Result<u64> {
        drop(self.deliveries);
        self.task.await.map_err(|e| Error::Internal(format!("consumer task: {e}")))?
    }
}

impl Store {
    /// Starts a consumer of a group (see [`consume`](self)). Its first claim (what the group
    /// has for it already) is made before this returns, so it fails here if the group does not
    /// exist, and a publish that follows is handed to it directly.
    pub async fn consume(&self, options: ConsumerOptions) -> Result<Consumer> {
        let (inbox, pushed) = mpsc::unbounded_channel();
        let slot = Arc::new(Slot {
            namespace: options.namespace.clone(),
            group: options.group.clone(),
            consumer: options.consumer.clone(),
            lease: options.lease,
            max_in_flight: options.max_in_flight,
            state: Mutex::new(SlotState { room: i64::from(options.max_in_flight), wanted: 1, ..SlotState::default() }),
            wake: Notify::new(),
            inbox,
        });
        self.inner.slots.attach(slot.clone());
        let (tx, deliveries) = mpsc::channel(options.max_in_flight.max(1) as usize);
        let counters = Arc::new(Counters::default());
        let run = Run { store: self.clone(), options, slot: slot.clone(), pushed, out: tx, counters: counters.clone() };
        if let Err(e) = run.claim().await {
            self.inner.slots.detach(&run.slot);
            return Err(e);
        }
        Ok(Consumer { deliveries, task: tokio::spawn(run.run()), counters, slot })
    }
}

/// The consumer task.
struct Run {
    store: Store,
    options: ConsumerOptions,
    slot: Arc<Slot>,
    pushed: mpsc::UnboundedReceiver<Vec<Leased>>,
    out: mpsc::Sender<Result<Delivery>>,
    counters: Arc<Counters>,
}

impl Run {
    async fn run(mut self) -> Result<u64> {
        let result = self.serve().await;
        self.store.inner.slots.detach(&self.slot);
        if let Err(e) = result {
            let _ = self.out.send(Err(e)).await;
        }
        let o = &self.options;
        self.store.release(&o.namespace, &o.group, &o.consumer).await
    }

    /// Forwards deliveries until the receiver goes away (`Ok`) or the store fails.
    async fn serve(&mut self) -> Result<()> {
        let mut poll = tokio::time::interval(self.options.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.reset();
        loop {
            if self.slot.claim_due().is_some() {
                if !self.claim().await? {
                    return Ok(());
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = self.out.closed() => return Ok(()),
                Some(leased) = self.pushed.recv() => {
                    let deliveries = self.complete(leased).await?;
                    self.counters.direct.fetch_add(deliveries.len() as u64, Ordering::Relaxed);
                    if !self.forward(deliveries).await {
                        return Ok(());
                    }
                }
                _ = self.slot.wake.notified() => {}
                _ = poll.tick() => {
                    self.recount().await?;
                    self.slot.want_claim();
                }
            }
        }
    }

    /// Claims if a claim is due; returns false if the receiver went away.
    async fn claim(&self) -> Result<bool> {
        let Some((room, marker)) = self.slot.claim_due() else { return Ok(true) };
        let o = &self.options;
        let (claimed, full) = self.store.claim_batch(&o.namespace, &o.group, &o.consumer, room, o.lease).await?;
        if !full {
            self.slot.satisfied(marker);
        }
        self.counters.claimed.fetch_add(claimed.len() as u64, Ordering::Relaxed);
        Ok(self.forward(claimed).await)
    }

    /// Returns false if the receiver went away.
    async fn forward(&self, deliveries: Vec<Delivery>) -> bool {
        for d in deliveries {
            if self.out.send(Ok(d)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Turns pushed leases into deliveries, loading the events the writer did not have at hand
    /// (collected by earlier transactions).
    async fn complete(&self, leased: Vec<Leased>) -> Result<Vec<Delivery>> {
        let (mut notifications, attempts): (Vec<_>, Vec<_>) = leased.into_iter().unzip();
        let incomplete: Vec<usize> = (0..notifications.len())
            .filter(|&i| notifications[i].events.len() < notifications[i].event_sequences.len())
            .collect();
        if !incomplete.is_empty() {
            let mut load: Vec<Notification> = incomplete.iter().map(|&i| notifications[i].clone()).collect();
            self.store.load_events(&self.options.namespace, &mut load).await?;
            for (i, n) in incomplete.into_iter().zip(load) {
                notifications[i] = n;
            }
        }
        let group = &self.options.group;
        Ok(notifications
            .into_iter()
            .zip(attempts)
            .map(|(notification, attempt)| Delivery { notification, group: group.clone(), attempt })
            .collect())
    }

    async fn recount(&self) -> Result<()> {
        let slot = self.slot.clone();
        self.store.call(|reply| Command::Recount { slot, reply }).await
    }
}

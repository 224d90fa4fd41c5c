//! The writer: the only place that changes the database. It owns the trigger engine and
//! the cache of which listeners are loaded, and runs queued commands in batches, one
//! transaction per batch (group commit). A batch that fails is rolled back, the caches of its
//! namespaces are dropped, and its commands are run again one by one, so one bad command
//! cannot fail another's publish. Each command is a [`Command`] variant with its own reply
//! channel; its handler either completes, is rejected (the caller's fault: the batch goes on),
//! or aborts the batch ([`CommandError`]).
//!
//! This file holds the batch loop and the transaction; the commands and their replies are in
//! [`command`], the operations in submodules: [`namespace`] (locks, counters, the sync of listeners across processes), [`publish`]
//! (validation, dedup, evaluation, staging and flushing), [`delivery`] (groups, the direct
//! hand-over, claims, acks, nacks, releases, redrives), [`listeners`] (register, delete),
//! [`sweep`] (timeouts, pruning, retention), [`replay`] (the fires of a replay), [`admin`] (group
//! updates, seeks and deletes, the namespace purge) and [`tokens`] (API tokens created, revoked
//! and used).
//!
//! The writer runs on a thread of its own on SQLite, where every statement is a function call
//! on that thread; on Postgres it is a task (see [`super::conn`]). The rows publishes and claims
//! write after their reads (events, notifications, partial state, new leases, group positions,
//! counters) are queued and written in bulk before the next statement that may read them.
//!
//! Leases are not flushed to disk: a batch of only claims, acks, nacks and releases commits
//! without waiting for the disk (SQLite `synchronous=NORMAL` on the writer connection for that
//! batch, Postgres `SET LOCAL synchronous_commit = off`). A crash of the machine may forget such a
//! commit, which only means a redelivery (a lost ack or lease) or one attempt not counted (a lost
//! nack); notifications themselves are committed by the publishes that create them, durably.
//!
//! Hazards: effects on consumers (pushes, room, claim requests) are applied only after a
//! commit, before the replies are sent. A command's result is held in its [`Reply`] until the
//! commit: a reply sent earlier could announce what a rollback then undid. The batch's
//! namespaces are locked in name order before any command runs (see [`namespace`]), and the
//! group rows after them (see [`delivery`]).

mod admin;
mod command;
mod delivery;
mod listeners;
mod namespace;
mod publish;
mod replay;
mod sweep;
mod tokens;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

pub(crate) use command::{Claimed, Command, CommandError, Handled, Reply};
pub(crate) use delivery::group_not_found;
use namespace::{Loaded, NsState};
use publish::{Fresh, Staged, lookup_existing};

use super::conn::{Conn, Statement, Tx};
use super::consume::{Leased, Slot, Slots};
use super::rows::micros;
use super::{Fired, Observer, StoreConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::trigger::Engine;

/// What to do to this process's consumers once the transaction committed.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Leases made to a consumer: how many, and those to push (direct delivery).
    leased: Vec<(Arc<Slot>, u64, Vec<Leased>)>,
    /// Leases of a consumer that ended (acks, nacks).
    freed: Vec<(Arc<Slot>, u64)>,
    /// Consumers' unexpired leases as counted at the end of the transaction (its own leases,
    /// acks and nacks included).
    recounted: Vec<(Arc<Slot>, u64)>,
    /// (namespace, group) whose consumers should claim.
    claims: BTreeSet<(String, String)>,
    /// (namespace, group) where deliveries may have become due (nacks, releases, redrives, the
    /// admin calls): claims look for due deliveries again at once (see
    /// [`delivery::DUE_SCAN_INTERVAL`]). A subset of `claims`.
    due: BTreeSet<(String, String)>,
    /// Triggers to tell the observer about (only collected when there is one).
    fired: Vec<Fired>,
    /// Acknowledged notifications' creation times by (namespace, group), likewise.
    acked: Vec<(String, String, Vec<DateTime<Utc>>)>,
    /// Conditions that failed at run time in the transaction's evaluations.
    condition_errors: u64,
    /// (namespace, group) -> the earliest end of a lease the transaction made (microseconds).
    lease_ends: BTreeMap<(String, String), i64>,
}

impl Effects {
    /// Notes that deliveries of the group may have become due: its consumers should claim, and
    /// look for due deliveries.
    fn made_due(&mut self, ns: &str, group: &str) {
        self.claims.insert((ns.to_owned(), group.to_owned()));
        self.due.insert((ns.to_owned(), group.to_owned()));
    }

    /// Room of a consumer already taken in this transaction.
    fn taken(&self, slot: &Arc<Slot>) -> i64 {
        self.leased.iter().filter(|(s, _, _)| Arc::ptr_eq(s, slot)).map(|(_, n, _)| *n as i64).sum()
    }

    /// Room of a consumer left for this transaction.
    fn room(&self, slot: &Arc<Slot>) -> i64 {
        i64::from(slot.room()) - self.taken(slot)
    }

    /// Carries out what a committed transaction decided: tells the observer, hands leases to
    /// consumers, asks consumers to claim.
    fn apply(self, slots: &Slots, observer: Option<&dyn Observer>) {
        if let Some(observer) = observer {
            if !self.fired.is_empty() {
                observer.fired(&self.fired);
            }
            for (ns, group, created) in &self.acked {
                observer.acked(ns, group, created);
            }
            if self.condition_errors > 0 {
                observer.condition_errors(self.condition_errors);
            }
        }
        for (slot, n, pushed) in self.leased {
            slot.leased(n);
            if !pushed.is_empty() {
                slot.push(pushed);
            }
        }
        for (slot, n) in self.freed {
            slot.freed(n);
        }
        // After this transaction's leases and frees: the counts include them.
        for (slot, unexpired) in self.recounted {
            slot.recount(unexpired);
        }
        for (ns, group) in self.claims {
            slots.want_claim(&ns, &group);
        }
    }
}

/// The state of one transaction.
struct Batch {
    now: DateTime<Utc>,
    ns: BTreeMap<String, NsState>,
    staged: Staged,
    /// Writes queued until a statement may read them or the commit.
    writes: Vec<Statement>,
    /// Per namespace, what this transaction created.
    fresh: BTreeMap<String, Fresh>,
    /// Consumers whose leases are counted at the end of the transaction.
    recounts: Vec<Arc<Slot>>,
    effects: Effects,
}

impl Batch {
    /// Runs the queued writes.
    async fn write(&mut self, tx: &mut Tx) -> Result<()> {
        for statement in self.writes.drain(..) {
            tx.execute(statement).await?;
        }
        Ok(())
    }
}

/// The writer between batches: its connection, this process's consumers, the trigger engine and
/// which listeners it holds.
pub(crate) struct Writer {
    conn: Conn,
    slots: Slots,
    config: StoreConfig,
    engine: Engine,
    loaded: HashMap<String, Loaded>,
    last_prune: Option<DateTime<Utc>>,
    /// (namespace, group) -> until when (microseconds) claims skip the look for due deliveries
    /// (see [`delivery::DUE_SCAN_INTERVAL`]).
    due_scans: HashMap<(String, String), i64>,
}

/// Starts the writer: on SQLite on a thread of its own (its statements block that thread), on
/// Postgres as a task.
pub(crate) fn spawn(writer: Writer, rx: mpsc::Receiver<Command>) -> Result<()> {
    match writer.conn {
        Conn::Sqlite(_) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(|e| Error::Internal(format!("starting the writer's runtime: {e}")))?;
            std::thread::Builder::new()
                .name(super::WRITER_THREAD.into())
                .spawn(move || runtime.block_on(writer.serve(rx)))
                .map_err(|e| Error::Internal(format!("starting the writer's thread: {e}")))?;
        }
        Conn::Postgres { .. } => {
            tokio::spawn(writer.serve(rx));
        }
    }
    Ok(())
}

/// The writer waits for more commands ([`StoreConfig::commit_delay`]) only while its batch holds
/// fewer events than this. A commit's own pages (one leaf of each table and index it touches,
/// the namespace and group rows, the header) are spread over the batch's events: over a few
/// dozen events they add little to each event's own pages, and a writer that is the bottleneck
/// (many publishes in flight) would only idle while it waits.
const DELAYED_BELOW: usize = 32;

/// The error of a command failed without an attempt, because the database could not be reached
/// a moment ago.
fn unavailable_meanwhile() -> Error {
    Error::Unavailable("the database could not be reached a moment ago".into())
}

impl Writer {
    pub(crate) fn new(conn: Conn, slots: Slots, config: StoreConfig) -> Self {
        Self {
            conn,
            slots,
            config,
            engine: Engine::new(),
            loaded: HashMap::new(),
            last_prune: None,
            due_scans: HashMap::new(),
        }
    }

    /// Takes commands from the queue in batches until every sender is gone.
    async fn serve(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut batch: Vec<Command> = Vec::new();
        let mut held: Option<Command> = None;
        // Whether commands arrived while the last transaction ran: callers are concurrent.
        let mut busy = false;
        loop {
            let first = match held.take() {
                Some(c) => c,
                None => match rx.recv().await {
                    Some(c) => c,
                    None => return,
                },
            };
            let alone = first.alone();
            let mut weight = first.weight();
            batch.push(first);
            if !alone {
                weight = self.gather(&mut rx, &mut batch, &mut held, weight);
                if busy && held.is_none() && self.delays_commits() && weight < DELAYED_BELOW {
                    // Group commit: more work is likely on its way; let it join this transaction.
                    match self.conn {
                        Conn::Sqlite(_) => std::thread::sleep(self.config.commit_delay),
                        // A task on the shared runtime: wait without blocking it (timers have
                        // millisecond resolution there).
                        Conn::Postgres { .. } => tokio::time::sleep(self.config.commit_delay).await,
                    }
                    self.gather(&mut rx, &mut batch, &mut held, weight);
                }
            }
            let unavailable = self.run(&mut batch).await;
            busy = !rx.is_empty();
            if unavailable {
                // Commands that queued while the database could not be reached fail at once:
                // each would otherwise wait out the pool's acquire timeout in turn, and a
                // caller behind a few of them would wait many times that.
                for cmd in held.take().into_iter().chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                    cmd.fail(unavailable_meanwhile());
                }
            }
        }
    }

    /// Moves queued commands into `batch` up to the batch limit, stopping before one that must
    /// run alone (held for the next batch); returns the batch's weight.
    fn gather(
        &self,
        rx: &mut mpsc::Receiver<Command>,
        batch: &mut Vec<Command>,
        held: &mut Option<Command>,
        mut weight: usize,
    ) -> usize {
        while weight < self.config.max_batch_events {
            match rx.try_recv() {
                // A sweep locks namespaces of its own choosing: it runs in a transaction alone.
                Ok(c) if c.alone() => {
                    *held = Some(c);
                    break;
                }
                Ok(c) => {
                    weight += c.weight();
                    batch.push(c);
                }
                Err(_) => break,
            }
        }
        weight
    }

    /// Whether the writer waits for more commands before a transaction (see
    /// [`StoreConfig::commit_delay`]).
    fn delays_commits(&self) -> bool {
        !self.config.commit_delay.is_zero()
    }

    /// Runs a batch and answers its commands; returns whether the database was unavailable.
    /// Commands whose caller stopped waiting (the store's timeout, a cancelled call) are dropped
    /// unanswered: nobody would learn their outcome.
    async fn run(&mut self, batch: &mut Vec<Command>) -> bool {
        batch.retain(|c| !c.is_closed());
        if batch.is_empty() {
            return false;
        }
        match self.transact(batch).await {
            Ok(effects) => {
                self.forget_due_scans(&effects);
                effects.apply(&self.slots, self.config.observer.as_deref());
                batch.drain(..).for_each(Command::answer);
                false
            }
            Err(e) if batch.len() == 1 => {
                tracing::warn!(error = %e, "store transaction failed");
                let unavailable = e.kind() == ErrorKind::Unavailable;
                if let Some(cmd) = batch.pop() {
                    cmd.fail(e);
                }
                unavailable
            }
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                // No command is to blame: retrying them one by one would only wait again.
                tracing::warn!(error = %e, commands = batch.len(), "store transaction failed");
                for cmd in batch.drain(..) {
                    cmd.fail(unavailable_meanwhile());
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, commands = batch.len(), "batch failed, retrying its commands one by one");
                let mut unavailable = false;
                for mut cmd in batch.drain(..) {
                    if cmd.is_closed() {
                        continue;
                    }
                    if unavailable {
                        // The database went away meanwhile: the rest would each wait for it.
                        cmd.fail(unavailable_meanwhile());
                        continue;
                    }
                    match self.transact(std::slice::from_mut(&mut cmd)).await {
                        Ok(effects) => {
                            self.forget_due_scans(&effects);
                            effects.apply(&self.slots, self.config.observer.as_deref());
                            cmd.answer();
                        }
                        Err(e) => {
                            unavailable = e.kind() == ErrorKind::Unavailable;
                            cmd.fail(e);
                        }
                    }
                }
                unavailable
            }
        }
    }

    /// Runs commands in one transaction and holds each one's result in its reply (see
    /// [`CommandError`]). An error aborted the whole transaction: nothing of it was committed.
    async fn transact(&mut self, commands: &mut [Command]) -> Result<Effects> {
        let leases_only = commands.iter().all(Command::leases_only);
        let mut b = Batch {
            now: super::from_micros(micros(Utc::now())),
            ns: BTreeMap::new(),
            staged: Staged::default(),
            writes: Vec::new(),
            fresh: BTreeMap::new(),
            recounts: Vec::new(),
            effects: Effects::default(),
        };
        let mut tx = self.conn.begin(leases_only).await?;
        let result = match self.execute(&mut tx, &mut b, commands).await {
            Ok(()) => match b.write(&mut tx).await {
                Ok(()) => self.conn.commit(tx).await,
                Err(e) => {
                    self.conn.rollback(tx).await;
                    Err(e)
                }
            },
            Err(e) => {
                self.conn.rollback(tx).await;
                Err(e)
            }
        };
        match result {
            Ok(()) => {
                for (name, st) in &b.ns {
                    if let Some(l) = self.loaded.get_mut(name) {
                        l.generation = if st.changed.is_empty() { st.generation } else { st.new_gen() };
                    }
                }
                Ok(b.effects)
            }
            Err(e) => {
                // The engine ran ahead of what was stored: forget these namespaces.
                for name in b.ns.keys() {
                    self.unload(name);
                }
                Err(e)
            }
        }
    }

    async fn execute(&mut self, tx: &mut Tx, b: &mut Batch, commands: &mut [Command]) -> Result<()> {
        let namespaces: BTreeSet<&str> = commands.iter().filter_map(Command::locked_namespace).collect();
        for ns in namespaces {
            self.lock_namespace(tx, b, ns).await?;
        }
        // The batch's time, once its namespaces are locked: a writer that waited for a lock
        // (another process's, on Postgres) stamps its rows later than the one it waited for, so
        // times grow with the sequences they come with (time bounds search by sequence).
        b.now = super::from_micros(micros(Utc::now()));
        // Shared by every publish of the batch to a namespace (each may repeat a stored key).
        let existing = lookup_existing(tx, commands).await?;
        for command in commands {
            if !matches!(command, Command::Publish { .. }) {
                // The command may read what earlier publishes of the batch wrote.
                self.flush(b)?;
                b.write(tx).await?;
            }
            self.dispatch(tx, b, command, &existing).await?;
        }
        self.flush(b)?;
        // Group positions a claim of this batch moved are read by the hand-over.
        b.write(tx).await?;
        self.hand_over(tx, b).await?;
        if !b.recounts.is_empty() {
            // Counted after everything else, so the count includes the transaction's own leases.
            b.write(tx).await?;
            delivery::recount(tx, b).await?;
        }
        self.write_namespaces(b);
        Ok(())
    }

    /// Runs one command of the batch and holds its result; an error aborts the batch.
    async fn dispatch(
        &mut self,
        tx: &mut Tx,
        b: &mut Batch,
        command: &mut Command,
        existing: &HashMap<String, HashMap<(String, String), i64>>,
    ) -> Result<()> {
        match command {
            Command::Publish { namespace, events, reply } => {
                reply.hold(self.publish(b, namespace, events, existing.get(namespace.as_str())))
            }
            Command::Register { namespace, spec, request_id, trace, look_back, reply } => {
                let registration =
                    super::Registration { request_id: request_id.as_deref(), trace, look_back: *look_back };
                reply.hold(self.register(tx, b, namespace, spec, registration).await)
            }
            Command::DeleteListeners { namespace, selector, reply } => {
                reply.hold(self.delete(tx, b, namespace, selector).await)
            }
            Command::EnsureGroup { namespace, group, reply } => {
                reply.hold(self.ensure_group(tx, b, namespace, group).await)
            }
            Command::Claim { namespace, group, consumer, max, lease, reply } => {
                reply.hold(self.claim(tx, b, namespace, group, consumer, *max, *lease).await)
            }
            Command::Ack { namespace, group, sequences, reply } => {
                reply.hold(self.ack(tx, b, namespace, group, sequences).await)
            }
            Command::Nack { namespace, group, sequence, retry_after, reason, reply } => {
                reply.hold(self.nack(tx, b, namespace, group, *sequence, *retry_after, reason).await)
            }
            Command::Release { namespace, group, consumer, reply } => {
                reply.hold(self.release(tx, b, namespace, group, consumer).await)
            }
            Command::Recount { slot, reply } => {
                b.recounts.push(slot.clone());
                reply.hold(Ok(()))
            }
            Command::Redrive { namespace, group, sequences, reply } => {
                reply.hold(self.redrive(tx, b, namespace, group, sequences).await)
            }
            Command::Sweep { now, reply } => reply.hold(self.sweep(tx, b, *now).await),
            Command::UpdateGroup { namespace, group, update, reply } => {
                reply.hold(self.update_group(tx, b, namespace, group, update).await)
            }
            Command::SeekGroup { namespace, group, position, reply } => {
                reply.hold(self.seek_group(tx, b, namespace, group, *position).await)
            }
            Command::DeleteGroup { namespace, group, reply } => {
                reply.hold(self.delete_group(tx, b, namespace, group).await)
            }
            Command::PurgeNamespace { namespace, limit, reply } => {
                reply.hold(self.purge_namespace(tx, b, namespace, *limit).await)
            }
            Command::CreateToken { token, reply } => reply.hold(tokens::create(tx, b, token).await),
            Command::RevokeToken { id, reply } => reply.hold(tokens::revoke(tx, b, *id).await),
            Command::TouchToken { id, at, reply } => reply.hold(tokens::touch(tx, *id, *at).await),
            Command::Replay { namespace, listener_id, fires, reply } => {
                reply.hold(self.replay(tx, b, namespace, *listener_id, fires).await)
            }
        }
    }
}

//! The writer: the only place that changes the database. It owns the trigger engine and
//! the cache of which listeners are loaded, and runs queued commands in batches, one
//! transaction per batch (group commit). A batch that fails is rolled back, the caches of its
//! namespaces are dropped, and its commands are run again one by one, so one bad command
//! cannot fail another's publish.
//!
//! Direct delivery: new notifications of a transaction are leased, in that same transaction, to
//! the waiting consumers of this process ([`super::consume`]) of every group that has no backlog
//! (its `read_seq` is just before the transaction's first notification), and the group's
//! `read_seq` moves past them, so the invariant of the claim path holds: every notification up
//! to `read_seq` has a delivery row or was filtered out by the group. Their leases are pushed to
//! the consumers after the commit. A group with a backlog, or whose consumers have no room
//! left, is told to claim instead, which keeps sequence order.
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
//! Hazards: the group rows are locked (`FOR UPDATE`, in name order) after the namespace rows, as
//! claims do; a claim-only transaction of another process that locks two groups in the other
//! order can deadlock with it, which Postgres breaks by failing one batch (retried command by
//! command). Effects on consumers (pushes, room, claim requests) are applied only after a
//! commit, before the replies are sent.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::conn::{Conn, Statement, Tx, Value};
use super::consume::{Leased, Slot, Slots};
use super::rows::{
    DeliveryState, EVENT_COLUMNS, LISTENER_COLUMNS, ListenerRow, NOTIFICATION_COLUMNS, NotificationRow, STATUS_ACTIVE,
    STATUS_DELETED, event_body, from_json, kind_str, micros, parse_uuid, status_columns, to_json,
};
use super::sql::{CHUNK, INSERT_CHUNK, events_by_keys, list, placeholders};
use super::{
    Fired, GroupSpec, ListenerSelector, Notification, NotificationKind, Observer, Published, StartPosition,
    StoreConfig, SweepReport, trigger_span_id,
};
use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, EventRef, TraceContext};
use crate::listener::{CompiledListener, Listener, ListenerKind, ListenerSpec, ListenerStatus};
use crate::trigger::{ActionKind, CorrelationKey, Engine, Outcome};

/// A command to the writer: one variant per operation, each with the channel its own result
/// goes back on.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        namespace: String,
        events: Vec<Event>,
        reply: Reply<Vec<Published>>,
    },
    /// Replies with the listener and whether it was created (not found by its request id).
    Register {
        namespace: String,
        spec: ListenerSpec,
        request_id: Option<String>,
        trace: TraceContext,
        /// Boxed: it holds a listener (which holds a spec) until the commit.
        reply: Box<Reply<(Listener, bool)>>,
    },
    DeleteListeners {
        namespace: String,
        selector: ListenerSelector,
        reply: Reply<u64>,
    },
    EnsureGroup {
        namespace: String,
        group: GroupSpec,
        reply: Reply<()>,
    },
    Claim {
        namespace: String,
        group: String,
        consumer: String,
        max: u32,
        lease: Duration,
        reply: Reply<Claimed>,
    },
    Ack {
        namespace: String,
        group: String,
        sequences: Vec<u64>,
        reply: Reply<u64>,
    },
    /// Replies whether the notification became a dead letter.
    Nack {
        namespace: String,
        group: String,
        sequence: u64,
        retry_after: Duration,
        reason: String,
        reply: Reply<bool>,
    },
    Release {
        namespace: String,
        group: String,
        consumer: String,
        reply: Reply<u64>,
    },
    Redrive {
        namespace: String,
        group: String,
        sequences: Vec<u64>,
        reply: Reply<u64>,
    },
    Sweep {
        now: DateTime<Utc>,
        reply: Reply<SweepReport>,
    },
}

impl Command {
    /// The namespace whose row the command locks (commands that evaluate or change listeners).
    fn locked_namespace(&self) -> Option<&str> {
        match self {
            Self::Publish { namespace, .. }
            | Self::Register { namespace, .. }
            | Self::DeleteListeners { namespace, .. } => Some(namespace),
            _ => None,
        }
    }

    /// Whether the command changes only leases (see the module docs on durability).
    fn leases_only(&self) -> bool {
        matches!(self, Self::Claim { .. } | Self::Ack { .. } | Self::Nack { .. } | Self::Release { .. })
    }

    fn weight(&self) -> usize {
        match self {
            Self::Publish { events, .. } => events.len().max(1),
            _ => 1,
        }
    }

    /// Whether the command must run in a transaction alone (a sweep locks namespaces of its own
    /// choosing).
    fn alone(&self) -> bool {
        matches!(self, Self::Sweep { .. })
    }

    /// Sends the result held for the command, once its transaction committed.
    fn answer(self) {
        self.finish(None);
    }

    /// Sends `error` instead of a result: the command's transaction did not commit.
    fn fail(self, error: Error) {
        self.finish(Some(error));
    }

    fn finish(self, error: Option<Error>) {
        match self {
            Self::Publish { reply, .. } => reply.send(error),
            Self::Register { reply, .. } => (*reply).send(error),
            Self::DeleteListeners { reply, .. }
            | Self::Ack { reply, .. }
            | Self::Release { reply, .. }
            | Self::Redrive { reply, .. } => reply.send(error),
            Self::EnsureGroup { reply, .. } => reply.send(error),
            Self::Claim { reply, .. } => reply.send(error),
            Self::Nack { reply, .. } => reply.send(error),
            Self::Sweep { reply, .. } => reply.send(error),
        }
    }
}

/// The channel a command's result goes back on, and the result of the attempt in progress,
/// held until its transaction commits (a failed batch is run again, command by command).
#[derive(Debug)]
pub(crate) struct Reply<T> {
    sender: oneshot::Sender<Result<T>>,
    held: Option<Result<T>>,
}

impl<T> Reply<T> {
    pub(crate) fn new(sender: oneshot::Sender<Result<T>>) -> Self {
        Self { sender, held: None }
    }

    /// Holds what the command's handler returned: its value or its rejection. An abort is
    /// returned, for the transaction to roll back.
    fn hold(&mut self, handled: Handled<T>) -> Result<()> {
        self.held = Some(match handled {
            Ok(value) => Ok(value),
            Err(CommandError::Rejected(e)) => Err(e),
            Err(CommandError::Abort(e)) => return Err(e),
        });
        Ok(())
    }

    /// Sends `error`, or else the held result. The caller may be gone: nothing to do then.
    fn send(self, error: Option<Error>) {
        let result = match error {
            Some(e) => Err(e),
            None => self.held.unwrap_or_else(|| Err(Error::Internal("the writer held no result".into()))),
        };
        let _ = self.sender.send(result);
    }
}

/// Why a command of a batch did not complete.
///
/// A command is run inside the batch's transaction, so it can fail in two ways:
/// - [`CommandError::Rejected`]: the caller's fault (an invalid argument, a listener or group
///   that does not exist, a failed precondition). The command changed nothing before it was
///   rejected, so the batch goes on and commits; the caller gets the error.
/// - [`CommandError::Abort`]: the transaction cannot go on (a database error, a broken
///   invariant). The batch is rolled back and its commands are run again one by one, so that
///   one command's trouble does not fail the others.
///
/// `?` on a [`Result`] aborts: a handler rejects explicitly, and only before it writes anything.
/// (A rejection that aborted by mistake would still give its caller the right error, after
/// costing the batch a retry.)
#[derive(Debug)]
pub(crate) enum CommandError {
    Rejected(Error),
    Abort(Error),
}

impl From<Error> for CommandError {
    fn from(e: Error) -> Self {
        Self::Abort(e)
    }
}

/// What a command's handler returns: see [`CommandError`].
pub(crate) type Handled<T> = std::result::Result<T, CommandError>;

/// What a claim leased, and whether it took as many as it could (more may be claimable).
#[derive(Debug)]
pub(crate) struct Claimed {
    pub leased: Vec<Leased>,
    pub full: bool,
}

/// A consumer group's fixed settings, stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct GroupSettings {
    kinds: Vec<NotificationKind>,
    workflow_ids: Vec<String>,
    max_attempts: u32,
}

impl GroupSettings {
    fn matches(&self, kind: NotificationKind, target: &str) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&kind))
            && (self.workflow_ids.is_empty()
                || (kind == NotificationKind::Start && self.workflow_ids.iter().any(|w| w == target)))
    }
}

/// Which listeners of a namespace this process has loaded, as of which generation.
#[derive(Debug, Default)]
struct Loaded {
    generation: i64,
    epoch: i64,
    listeners: HashSet<Uuid>,
}

/// A locked namespace's counters within one transaction.
#[derive(Debug)]
struct NsState {
    /// The first notification sequence of this transaction.
    first_notification_seq: i64,
    next_event_seq: i64,
    next_notification_seq: i64,
    next_listener_ord: i64,
    generation: i64,
    /// Listeners whose row or state changed: they get the new generation.
    changed: BTreeSet<Uuid>,
    /// (source, id) -> sequence of events stored earlier in this transaction.
    stored: HashMap<(String, String), i64>,
}

impl NsState {
    fn new_gen(&self) -> i64 {
        self.generation + 1
    }
}

/// Rows staged by publishes, written in bulk.
#[derive(Debug, Default)]
struct Staged {
    events: Vec<Event>,
    notifications: Vec<NotificationRecord>,
    partials: BTreeMap<(Uuid, CorrelationKey), Vec<EventRef>>,
    finished: Vec<(Uuid, ListenerStatus)>,
}

impl Staged {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.notifications.is_empty() && self.partials.is_empty() && self.finished.is_empty()
    }
}

/// What a transaction created in one namespace, for direct delivery: its notifications in
/// sequence order and the events it stored.
#[derive(Debug, Default)]
struct Fresh {
    notifications: Vec<NotificationRecord>,
    events: HashMap<u64, Event>,
}

impl Fresh {
    fn notification(&self, n: &NotificationRecord, created_at: DateTime<Utc>) -> Notification {
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

/// What to do to this process's consumers once the transaction committed.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Leases made to a consumer: how many, and those to push (direct delivery).
    leased: Vec<(Arc<Slot>, u64, Vec<Leased>)>,
    /// Leases of a consumer that ended (acks, nacks).
    freed: Vec<(Arc<Slot>, u64)>,
    /// (namespace, group) whose consumers should claim.
    claims: BTreeSet<(String, String)>,
    /// Triggers to tell the observer about (only collected when there is one).
    fired: Vec<Fired>,
    /// Acknowledged notifications' creation times by (namespace, group), likewise.
    acked: Vec<(String, String, Vec<DateTime<Utc>>)>,
}

impl Effects {
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
        for (ns, group) in self.claims {
            slots.want_claim(&ns, &group);
        }
    }
}

#[derive(Debug)]
struct NotificationRecord {
    namespace: String,
    seq: i64,
    fire_id: Uuid,
    kind: NotificationKind,
    listener_id: Uuid,
    target: String,
    correlation: Vec<(String, String)>,
    event_seqs: Vec<u64>,
    trace: TraceContext,
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
    effects: Effects,
}

impl Batch {
    /// Queues the first leases of new notifications of a group, (sequence, lease end, consumer),
    /// and the group's new read position.
    fn lease_new(&mut self, ns: &str, group: &str, leases: &[(i64, i64, &str)], read_seq: Option<i64>) {
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

    /// Runs the queued writes.
    async fn write(&mut self, tx: &mut Tx) -> Result<()> {
        for statement in self.writes.drain(..) {
            tx.execute(statement).await?;
        }
        Ok(())
    }
}

/// How often the sweeper drops collected events past their lifespan from keys that saw no event.
const PRUNE_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

pub(crate) struct Writer {
    conn: Conn,
    slots: Slots,
    config: StoreConfig,
    engine: Engine,
    loaded: HashMap<String, Loaded>,
    last_prune: Option<DateTime<Utc>>,
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

/// The error of a command failed without an attempt, because the database could not be reached
/// a moment ago.
fn unavailable_meanwhile() -> Error {
    Error::Unavailable("the database could not be reached a moment ago".into())
}

impl Writer {
    pub(crate) fn new(conn: Conn, slots: Slots, config: StoreConfig) -> Self {
        Self { conn, slots, config, engine: Engine::new(), loaded: HashMap::new(), last_prune: None }
    }

    /// Takes commands from the queue in batches until every sender is gone.
    async fn serve(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut batch: Vec<Command> = Vec::new();
        let mut held: Option<Command> = None;
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
            while !alone && weight < self.config.max_batch_events {
                match rx.try_recv() {
                    // A sweep locks namespaces of its own choosing: it runs in a transaction alone.
                    Ok(c) if c.alone() => {
                        held = Some(c);
                        break;
                    }
                    Ok(c) => {
                        weight += c.weight();
                        batch.push(c);
                    }
                    Err(_) => break,
                }
            }
            if self.run(&mut batch).await {
                // Commands that queued while the database could not be reached fail at once:
                // each would otherwise wait out the pool's acquire timeout in turn, and a
                // caller behind a few of them would wait many times that.
                for cmd in held.take().into_iter().chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                    cmd.fail(unavailable_meanwhile());
                }
            }
        }
    }

    /// Runs a batch and answers its commands; returns whether the database was unavailable.
    async fn run(&mut self, batch: &mut Vec<Command>) -> bool {
        match self.transact(batch).await {
            Ok(effects) => {
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
                for mut cmd in batch.drain(..) {
                    match self.transact(std::slice::from_mut(&mut cmd)).await {
                        Ok(effects) => {
                            effects.apply(&self.slots, self.config.observer.as_deref());
                            cmd.answer();
                        }
                        Err(e) => cmd.fail(e),
                    }
                }
                false
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
            Command::Register { namespace, spec, request_id, trace, reply } => {
                reply.hold(self.register(tx, b, namespace, spec, request_id.as_deref(), trace).await)
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
            Command::Redrive { namespace, group, sequences, reply } => {
                reply.hold(self.redrive(tx, b, namespace, group, sequences).await)
            }
            Command::Sweep { now, reply } => reply.hold(self.sweep(tx, b, *now).await),
        }
    }

    fn unload(&mut self, namespace: &str) {
        if let Some(l) = self.loaded.remove(namespace) {
            for id in l.listeners {
                self.engine.remove(id);
            }
        }
    }

    /// Locks the namespace row (creating it) and brings the engine's listeners of the
    /// namespace up to the stored generation.
    async fn lock_namespace(&mut self, tx: &mut Tx, b: &mut Batch, ns: &str) -> Result<()> {
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
            tx.execute(
                Statement::new("INSERT INTO namespaces (name) VALUES ($1) ON CONFLICT (name) DO NOTHING").bind(ns),
            )
            .await?;
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
        let filter = if since.is_some() { "l.gen > $2" } else { "l.gen > $2 AND l.status = 'active'" };
        let since = since.unwrap_or(-1);
        let columns = LISTENER_COLUMNS.split(", ").map(|c| format!("l.{c}")).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT {columns} FROM listeners l WHERE l.namespace = $1 AND {filter} ORDER BY l.ord");
        let rows = tx.fetch_all(Statement::new(sql).bind(ns).bind(since)).await?;
        let rows = rows.iter().map(ListenerRow::read).collect::<Result<Vec<_>>>()?;
        let partial_rows = tx
            .fetch_all(
                Statement::new(
                    "SELECT p.listener_id, p.corr_key, p.events FROM partials p \
                     JOIN listeners l ON l.id = p.listener_id \
                     WHERE l.namespace = $1 AND l.gen > $2 AND l.status = 'active'",
                )
                .bind(ns)
                .bind(since),
            )
            .await?;
        let mut partials: HashMap<String, Vec<(CorrelationKey, Vec<EventRef>)>> = HashMap::new();
        for r in partial_rows {
            let id: String = r.get(0)?;
            let key: String = r.get(1)?;
            let events: String = r.get(2)?;
            partials.entry(id).or_default().push((from_json(&key)?, from_json(&events)?));
        }
        let loaded = self.loaded.entry(ns.to_owned()).or_default();
        for row in rows {
            let id_text = row.id.clone();
            let active = row.status == STATUS_ACTIVE;
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

    fn publish(
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
    fn stage(&mut self, b: &mut Batch, ns: &str, outcome: Outcome) -> Result<()> {
        let st = b.ns.get_mut(ns).ok_or_else(|| Error::Internal("namespace not locked".into()))?;
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

    /// Queues the staged rows' writes, in bulk.
    fn flush(&mut self, b: &mut Batch) -> Result<()> {
        if b.staged.is_empty() {
            return Ok(());
        }
        let staged = std::mem::take(&mut b.staged);
        for chunk in staged.events.chunks(INSERT_CHUNK) {
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
            b.writes.push(Statement::with(sql, values));
        }
        for chunk in staged.notifications.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO notifications ({NOTIFICATION_COLUMNS}) VALUES {}",
                placeholders(chunk.len(), 10, 1)
            );
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
                    Value::from(micros(b.now)),
                    Value::from(to_json(&n.trace)?),
                ]);
            }
            b.writes.push(Statement::with(sql, values));
        }
        let (kept, emptied): (Vec<_>, Vec<_>) = staged.partials.into_iter().partition(|(_, p)| !p.is_empty());
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
            b.writes.push(Statement::with(sql, values));
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
            b.writes.push(Statement::with(sql, values));
        }
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

    /// Leases the transaction's new notifications to waiting consumers of this process (see
    /// the module docs); groups it cannot serve are told to claim.
    async fn hand_over(&mut self, tx: &mut Tx, b: &mut Batch) -> Result<()> {
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
                let Some((settings, read_seq)) = group_settings(tx, &ns, group, true).await? else { continue };
                if read_seq < first - 1 {
                    // A backlog: new notifications must wait their turn.
                    b.effects.claims.insert((ns.clone(), group.to_owned()));
                    continue;
                }
                let mut room: Vec<i64> = slots.iter().map(|s| b.effects.room(s)).collect();
                let mut leased: Vec<Vec<Leased>> = vec![Vec::new(); slots.len()];
                let mut rows: Vec<(i64, usize)> = Vec::new();
                let mut position = read_seq;
                for n in fresh.notifications.iter().filter(|n| n.seq > read_seq) {
                    if settings.matches(n.kind, &n.target) {
                        let roomiest = (0..slots.len()).filter(|&i| room[i] > 0).max_by_key(|&i| room[i]);
                        let Some(i) = roomiest else {
                            b.effects.claims.insert((ns.clone(), group.to_owned()));
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
                b.lease_new(&ns, group, &leases, (position != read_seq).then_some(position));
                for (slot, leased) in slots.into_iter().zip(leased) {
                    if !leased.is_empty() {
                        b.effects.leased.push((slot, leased.len() as u64, leased));
                    }
                }
            }
        }
        Ok(())
    }

    /// Queues the writes of the counters of every locked namespace and of the new generation of
    /// changed listeners.
    fn write_namespaces(&mut self, b: &mut Batch) {
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

    async fn register(
        &mut self,
        tx: &mut Tx,
        b: &mut Batch,
        ns: &str,
        spec: &ListenerSpec,
        request_id: Option<&str>,
        trace: &TraceContext,
    ) -> Handled<(Listener, bool)> {
        spec.validate().map_err(CommandError::Rejected)?;
        if let Some(request_id) = request_id {
            let sql = format!(
                "SELECT {LISTENER_COLUMNS} FROM listeners WHERE namespace = $1 AND request_id = $2 AND status <> '{STATUS_DELETED}'"
            );
            if let Some(row) = tx.fetch_optional(Statement::new(sql).bind(ns).bind(request_id)).await? {
                let existing = ListenerRow::read(&row)?.into_listener()?;
                if existing.spec != *spec {
                    return Err(CommandError::Rejected(Error::AlreadyExists(format!(
                        "request_id {request_id:?} was already used to register listener {} with another spec",
                        existing.id
                    ))));
                }
                return Ok((existing, false));
            }
        }
        let st = b.ns.get_mut(ns).ok_or_else(|| Error::Internal("namespace not locked".into()))?;
        let listener = Listener {
            id: Uuid::now_v7(),
            namespace: ns.to_owned(),
            order: st.next_listener_ord,
            spec: spec.clone(),
            created_at: b.now,
            trace: trace.clone(),
            status: ListenerStatus::Active,
        };
        let compiled = CompiledListener::compile(listener.clone()).map_err(CommandError::Rejected)?;
        st.next_listener_ord += 1;
        st.changed.insert(listener.id);
        tx.execute(
            Statement::new(
                "INSERT INTO listeners (id, namespace, ord, kind, target, spec, status, deadline_us, created_us, \
                 trace, request_id, gen) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(listener.id.to_string())
            .bind(ns)
            .bind(listener.order)
            .bind(kind_str(spec.kind))
            .bind(spec.target.as_str())
            .bind(to_json(spec)?)
            .bind(STATUS_ACTIVE)
            .bind(spec.deadline.map(micros))
            .bind(micros(b.now))
            .bind(to_json(trace)?)
            .bind(request_id)
            .bind(st.new_gen()),
        )
        .await?;
        self.engine.insert(compiled, []);
        self.loaded.entry(ns.to_owned()).or_default().listeners.insert(listener.id);
        // A deadline that already passed times out at once.
        if spec.deadline.is_some_and(|d| d <= b.now) {
            let outcome = self.engine.expire_namespace(ns, b.now);
            self.stage(b, ns, outcome)?;
            self.flush(b)?;
        }
        Ok((listener, true))
    }

    async fn delete(&mut self, tx: &mut Tx, b: &mut Batch, ns: &str, selector: &ListenerSelector) -> Handled<u64> {
        let live = format!("namespace = $1 AND status <> '{STATUS_DELETED}'");
        let by_target = |kind: ListenerKind, target: &str| {
            let sql = format!("SELECT id FROM listeners WHERE {live} AND kind = $2 AND target = $3");
            Statement::new(sql).bind(ns).bind(kind_str(kind)).bind(target)
        };
        let query = match selector {
            ListenerSelector::Id(id) => Statement::new(format!("SELECT id FROM listeners WHERE {live} AND id = $2"))
                .bind(ns)
                .bind(id.to_string()),
            ListenerSelector::Workflow(w) => by_target(ListenerKind::Start, w),
            ListenerSelector::Instance(i) => by_target(ListenerKind::Wait, i),
        };
        let ids: Vec<String> = tx.fetch_all(query).await?.iter().map(|r| r.get(0)).collect::<Result<_>>()?;
        if let ListenerSelector::Id(id) = selector
            && ids.is_empty()
        {
            return Err(CommandError::Rejected(Error::NotFound(format!("listener {id}"))));
        }
        Ok(self.delete_ids(tx, b, ns, &ids).await?)
    }

    /// Marks listeners deleted (a tombstone other processes sync) and drops their partial state.
    async fn delete_ids(&mut self, tx: &mut Tx, b: &mut Batch, ns: &str, ids: &[String]) -> Result<u64> {
        let st = b.ns.get_mut(ns).ok_or_else(|| Error::Internal("namespace not locked".into()))?;
        let generation = st.new_gen();
        let loaded = self.loaded.entry(ns.to_owned()).or_default();
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "UPDATE listeners SET status = '{STATUS_DELETED}', finished_us = $1, gen = $2 WHERE id IN ({})",
                list(chunk.len(), 3)
            );
            let mut q = Statement::new(sql).bind(micros(b.now)).bind(generation);
            for id in chunk {
                q = q.bind(id);
            }
            tx.execute(q).await?;
            let sql = format!("DELETE FROM partials WHERE listener_id IN ({})", list(chunk.len(), 1));
            let values = chunk.iter().map(Value::from).collect();
            tx.execute(Statement::with(sql, values)).await?;
        }
        for id in ids {
            let id = parse_uuid(id)?;
            self.engine.remove(id);
            loaded.listeners.remove(&id);
            st.changed.insert(id);
        }
        Ok(ids.len() as u64)
    }

    async fn ensure_group(&mut self, tx: &mut Tx, b: &mut Batch, ns: &str, group: &GroupSpec) -> Handled<()> {
        let mut kinds = group.kinds.clone();
        kinds.sort();
        kinds.dedup();
        let mut workflow_ids = group.workflow_ids.clone();
        workflow_ids.sort();
        workflow_ids.dedup();
        let settings = GroupSettings { kinds, workflow_ids, max_attempts: group.max_attempts.max(1) };
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
        let next = match b.ns.get(ns) {
            Some(st) => st.next_notification_seq,
            None => {
                let q = Statement::new("SELECT next_notification_seq FROM namespaces WHERE name = $1").bind(ns);
                tx.fetch_optional(q).await?.map(|r| r.get(0)).transpose()?.unwrap_or(1)
            }
        };
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

    #[allow(clippy::too_many_arguments)]
    async fn claim(
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
        let mut claimed: Vec<(i64, u32)> = Vec::new();
        // Due: leases that expired and retries whose time came.
        let sql = format!(
            "SELECT seq, state, attempt FROM deliveries WHERE namespace = $1 AND group_name = $2 AND state <> '{}' \
             AND available_us <= $3 ORDER BY available_us, seq LIMIT $4{}",
            DeliveryState::Dead,
            tx.backend().for_update_skip_locked()
        );
        let due = tx.fetch_all(Statement::new(sql).bind(ns).bind(group).bind(now).bind(max as i64)).await?;
        for row in due {
            let seq: i64 = row.get(0)?;
            let state: DeliveryState = row.get::<String>(1)?.parse()?;
            let attempt: i64 = row.get(2)?;
            if attempt >= settings.max_attempts as i64 {
                let q = Statement::new(format!(
                    "UPDATE deliveries SET state = '{dead}', dead_us = $1, consumer = NULL, \
                     last_error = CASE WHEN $2 = '{leased}' THEN 'lease expired' ELSE last_error END \
                     WHERE namespace = $3 AND group_name = $4 AND seq = $5",
                    dead = DeliveryState::Dead,
                    leased = DeliveryState::Leased,
                ));
                tx.execute(q.bind(now).bind(state).bind(ns).bind(group).bind(seq)).await?;
                continue;
            }
            let q = Statement::new(format!(
                "UPDATE deliveries SET state = '{}', attempt = attempt + 1, available_us = $1, consumer = $2 \
                 WHERE namespace = $3 AND group_name = $4 AND seq = $5",
                DeliveryState::Leased
            ));
            tx.execute(q.bind(until).bind(consumer).bind(ns).bind(group).bind(seq)).await?;
            claimed.push((seq, attempt as u32 + 1));
        }
        // New: notifications past the group's read position.
        let mut position = read_seq;
        let mut leases = Vec::new();
        const SCAN: i64 = 256;
        'scan: while claimed.len() < max as usize {
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
                claimed.push((seq, 1));
                leases.push((seq, until, consumer));
                if claimed.len() >= max as usize {
                    break 'scan;
                }
            }
            if n < SCAN {
                break;
            }
        }
        b.lease_new(ns, group, &leases, (position != read_seq).then_some(position));
        let mut by_seq: HashMap<i64, Notification> = HashMap::with_capacity(claimed.len());
        let seqs: Vec<i64> = claimed.iter().map(|(s, _)| *s).collect();
        for chunk in seqs.chunks(CHUNK) {
            let sql = format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE namespace = $1 AND seq IN ({})",
                list(chunk.len(), 2)
            );
            let mut q = Statement::new(sql).bind(ns);
            for s in chunk {
                q = q.bind(*s);
            }
            for row in tx.fetch_all(q).await? {
                let row = NotificationRow::read(&row)?;
                by_seq.insert(row.seq, row.into_notification()?);
            }
        }
        let full = claimed.len() >= max as usize;
        if let Some(slot) = slot {
            b.effects.leased.push((slot, claimed.len() as u64, Vec::new()));
        }
        let mut out = Vec::with_capacity(claimed.len());
        for (seq, attempt) in claimed {
            // A notification removed by retention while its delivery was pending is skipped.
            if let Some(n) = by_seq.remove(&seq) {
                out.push((n, attempt));
            }
        }
        Ok(Claimed { leased: out, full })
    }

    async fn ack(&mut self, tx: &mut Tx, b: &mut Batch, ns: &str, group: &str, seqs: &[u64]) -> Handled<u64> {
        let mut acked = 0;
        let mut by_consumer: HashMap<String, u64> = HashMap::new();
        let observed = self.config.observer.is_some();
        for chunk in seqs.chunks(CHUNK) {
            let sql = format!(
                "DELETE FROM deliveries WHERE namespace = $1 AND group_name = $2 AND state <> '{}' AND seq IN ({}) \
                 RETURNING consumer, seq",
                DeliveryState::Dead,
                list(chunk.len(), 3)
            );
            let mut q = Statement::new(sql).bind(ns).bind(group);
            for s in chunk {
                q = q.bind(*s as i64);
            }
            let mut deleted = Vec::new();
            for row in tx.fetch_all(q).await? {
                acked += 1;
                if let Some(consumer) = row.get::<Option<String>>(0)? {
                    *by_consumer.entry(consumer).or_default() += 1;
                }
                deleted.push(row.get::<i64>(1)?);
            }
            if observed && !deleted.is_empty() {
                let sql = format!(
                    "SELECT created_us FROM notifications WHERE namespace = $1 AND seq IN ({})",
                    list(deleted.len(), 2)
                );
                let mut q = Statement::new(sql).bind(ns);
                for s in deleted {
                    q = q.bind(s);
                }
                let rows = tx.fetch_all(q).await?;
                let created = rows.iter().map(|r| r.get(0).map(super::from_micros)).collect::<Result<_>>()?;
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

    #[allow(clippy::too_many_arguments)]
    async fn nack(
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
                let q = Statement::new("SELECT kind, target FROM notifications WHERE namespace = $1 AND seq = $2");
                let row = tx.fetch_optional(q.bind(ns).bind(seq as i64)).await?;
                let acked = match row {
                    Some(r) => settings.matches(r.get::<String>(0)?.parse()?, &r.get::<String>(1)?),
                    None => false,
                };
                return Err(CommandError::Rejected(if acked {
                    Error::FailedPrecondition(format!("notification {seq} is already acked in group {group:?}"))
                } else {
                    Error::NotFound(format!("notification {seq} in group {group:?}"))
                }));
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
        b.effects.claims.insert((ns.to_owned(), group.to_owned()));
        Ok(dead)
    }

    async fn release(&mut self, tx: &mut Tx, b: &mut Batch, ns: &str, group: &str, consumer: &str) -> Handled<u64> {
        let q = Statement::new(format!(
            "UPDATE deliveries SET state = '{ready}', available_us = $1, consumer = NULL \
             WHERE namespace = $2 AND group_name = $3 AND consumer = $4 AND state = '{leased}'",
            ready = DeliveryState::Ready,
            leased = DeliveryState::Leased,
        ));
        let n = tx.execute(q.bind(micros(b.now)).bind(ns).bind(group).bind(consumer)).await?;
        if n > 0 {
            b.effects.claims.insert((ns.to_owned(), group.to_owned()));
        }
        Ok(n)
    }

    async fn redrive(&mut self, tx: &mut Tx, b: &mut Batch, ns: &str, group: &str, seqs: &[u64]) -> Handled<u64> {
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
            let sql = format!("{base} AND seq IN ({})", list(chunk.len(), 4));
            let mut q = Statement::new(sql).bind(micros(b.now)).bind(ns).bind(group);
            for s in chunk {
                q = q.bind(*s as i64);
            }
            n += tx.execute(q).await?;
        }
        if n > 0 {
            b.effects.claims.insert((ns.to_owned(), group.to_owned()));
        } else if group_settings(tx, ns, group, false).await?.is_none() {
            return Err(CommandError::Rejected(group_not_found(group)));
        }
        Ok(n)
    }

    async fn sweep(&mut self, tx: &mut Tx, b: &mut Batch, now: DateTime<Utc>) -> Handled<SweepReport> {
        let mut report = SweepReport::default();
        let q = Statement::new(
            "SELECT DISTINCT namespace FROM listeners WHERE status = 'active' AND deadline_us IS NOT NULL \
             AND deadline_us <= $1",
        );
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
            let limit = i64::from(self.config.retention_batch);
            let q = Statement::new(
                "DELETE FROM events WHERE (namespace, seq) IN \
                 (SELECT namespace, seq FROM events WHERE received_us < $1 LIMIT $2)",
            );
            report.events_deleted = tx.execute(q.bind(cutoff).bind(limit)).await?;
            let q = Statement::new(
                "DELETE FROM notifications WHERE (namespace, seq) IN (SELECT n.namespace, n.seq FROM notifications n \
                 WHERE n.created_us < $1 \
                 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.namespace = n.namespace AND d.seq = n.seq) \
                 AND n.seq <= COALESCE((SELECT MIN(g.read_seq) FROM consumer_groups g \
                     WHERE g.namespace = n.namespace), n.seq) \
                 LIMIT $2)",
            );
            report.notifications_deleted = tx.execute(q.bind(cutoff).bind(limit)).await?;
            let q = Statement::new(
                "SELECT id, namespace FROM listeners WHERE status <> 'active' AND finished_us < $1 LIMIT $2",
            );
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
        }
        Ok(report)
    }
}

/// Returns, per namespace, the sequences of already stored events that have the (source,
/// id) of an event the batch publishes: one query per [`CHUNK`] keys, not per publish.
async fn lookup_existing(tx: &mut Tx, commands: &[Command]) -> Result<HashMap<String, HashMap<(String, String), i64>>> {
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
                found.insert((row.get(0)?, row.get(1)?), row.get(2)?);
            }
        }
    }
    Ok(found)
}

/// Reads a group's settings and read position (locked with `lock`, on Postgres).
async fn group_settings(tx: &mut Tx, ns: &str, group: &str, lock: bool) -> Result<Option<(GroupSettings, i64)>> {
    let sql = format!(
        "SELECT settings, read_seq FROM consumer_groups WHERE namespace = $1 AND name = $2{}",
        if lock { tx.backend().for_update() } else { "" }
    );
    let row = tx.fetch_optional(Statement::new(sql).bind(ns).bind(group)).await?;
    row.map(|r| Ok((from_json(&r.get::<String>(0)?)?, r.get(1)?))).transpose()
}

/// The error for a consumer group that does not exist in the namespace.
pub(crate) fn group_not_found(group: &str) -> Error {
    Error::NotFound(format!("consumer group {group:?}"))
}

/// Checks what the store relies on; the server validates the full CloudEvents rules first.
fn validate_events(events: &[Event]) -> Result<()> {
    let mut violations = Vec::new();
    if events.is_empty() {
        violations.push(crate::error::FieldViolation::new("events", "must hold at least one event"));
    }
    for (i, e) in events.iter().enumerate() {
        for (field, value) in [("id", &e.id), ("source", &e.source), ("type", &e.event_type)] {
            if value.is_empty() {
                violations.push(crate::error::FieldViolation::new(format!("events[{i}].{field}"), "must not be empty"));
            }
        }
    }
    if violations.is_empty() { Ok(()) } else { Err(Error::InvalidArgument(violations)) }
}

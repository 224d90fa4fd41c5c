//! The durable store: events, listeners and their state, notifications and consumer groups,
//! on SQLite (embedded, one file, WAL) or Postgres (shared by several processes).
//!
//! Every change goes through one writer per process ([`writer`]; a thread with SQLite, a task
//! with Postgres), which owns the trigger [`Engine`](crate::trigger::Engine) and group-commits:
//! it drains the queue of pending commands into one transaction, so concurrent publishes share a
//! transaction and an fsync, while each publish stays all-or-nothing (a failing batch is retried
//! command by command).
//! Reads go straight to a pool. New notifications are leased to waiting consumers of this
//! process in the transaction that creates them ([`consume`]); everything else is claimed.
//!
//! Across processes on one Postgres, a transaction that evaluates events or changes listeners
//! first locks the rows of its namespaces (`FOR UPDATE`, in name order, so no deadlock): events
//! and notifications of a namespace are sequenced and committed in order, and each process
//! reloads the listeners another one changed (tracked by a per-namespace generation) before it
//! evaluates. Claims lock only their consumer group's row and skip delivery rows another
//! process holds.
//!
//! Hazards: the acknowledgement of a publish means its transaction committed; with
//! [`Durability::Relaxed`] that is not yet on disk. Retention deletes old events even if a
//! lagging consumer group still has notifications referring to them; such a notification is
//! delivered without those events.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, Executor};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::{Event, TraceContext};
use crate::listener::{Listener, ListenerKind, ListenerSpec};

mod checkpoint;
mod conn;
pub mod consume;
mod read;
mod rows;
mod sql;
mod writer;

use conn::Conn;
use consume::Slots;
pub use consume::{Consumer, ConsumerOptions, ConsumerStats};
pub use rows::{from_micros, micros};
use writer::{Command, Op, Output};

/// Names of the store's own threads with SQLite: the writer and the WAL checkpointer (at most
/// the 15 bytes Linux keeps).
pub const WRITER_THREAD: &str = "eb-store-writer";
pub const CHECKPOINT_THREAD: &str = "eb-store-ckpt";

/// Whether an acknowledged write is on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledged after the commit is flushed to disk (SQLite `synchronous=FULL`, Postgres
    /// `synchronous_commit=on`).
    #[default]
    Full,
    /// Acknowledged after the commit; a crash of the machine may lose the last writes
    /// (SQLite `synchronous=NORMAL` in WAL mode, Postgres `synchronous_commit=off`). The
    /// database stays consistent.
    Relaxed,
}

/// How the store connects and behaves.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub database_url: String,
    pub durability: Durability,
    /// Connections for reads (and, on Postgres, for the writer too).
    pub pool_size: u32,
    /// Most events one writer transaction takes from the queue.
    pub max_batch_events: usize,
    /// Events and finished notifications and listeners older than this are deleted in the
    /// background; `None` keeps them forever.
    pub retention: Option<Duration>,
    /// How often the background sweeper runs (deadlines, retention).
    pub sweep_interval: Duration,
    /// Rows the retention sweeper deletes per table per transaction.
    pub retention_batch: u32,
    /// Told about fired triggers after each commit; `None` skips that work.
    pub observer: Option<Arc<dyn Observer>>,
    /// SQLite: the size in bytes the WAL file is kept under (see the checkpointer's docs for
    /// when it cannot be).
    pub sqlite_wal_limit: u64,
    /// Longest a call waits for the database (queueing for the writer, a connection, its
    /// statements) before it fails with `Unavailable`. On Postgres also the `statement_timeout`
    /// of the writer's transactions and the `idle_in_transaction_session_timeout` of every
    /// session, so the server gives up on what the store stopped waiting for and releases its
    /// locks.
    pub database_timeout: Duration,
}

impl StoreConfig {
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            durability: Durability::Full,
            pool_size: 8,
            max_batch_events: 2048,
            retention: None,
            sweep_interval: Duration::from_secs(1),
            retention_batch: 1000,
            observer: None,
            sqlite_wal_limit: DEFAULT_SQLITE_WAL_LIMIT,
            database_timeout: Duration::from_secs(5),
        }
    }
}

/// The default of [`StoreConfig::sqlite_wal_limit`]: 64 MiB.
pub const DEFAULT_SQLITE_WAL_LIMIT: u64 = 64 << 20;

/// The database behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            Err(Error::invalid("database_url", "must start with sqlite: or postgres:"))
        }
    }
}

/// The result of publishing one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub sequence: u64,
    /// The (source, id) was already stored (or earlier in the batch): `sequence` is the
    /// original's and the event was not evaluated again.
    pub duplicate: bool,
}

/// What a notification asks a runner to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    Start,
    Wake,
    Timeout,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Wake => "wake",
            Self::Timeout => "timeout",
        }
    }
}

impl FromStr for NotificationKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "start" => Ok(Self::Start),
            "wake" => Ok(Self::Wake),
            "timeout" => Ok(Self::Timeout),
            _ => Err(Error::Internal(format!("unknown notification kind {s:?}"))),
        }
    }
}

/// A fired listener's notification, as delivered to runners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub namespace: String,
    /// Per-namespace notification sequence: the ack key.
    pub sequence: u64,
    pub fire_id: Uuid,
    pub kind: NotificationKind,
    pub listener_id: Uuid,
    /// The workflow id (START) or instance id (WAKE, TIMEOUT).
    pub target: String,
    pub correlation: Vec<(String, String)>,
    /// Contributing events in collection order.
    pub event_sequences: Vec<u64>,
    /// The contributing events that are still retained, in collection order.
    pub events: Vec<Event>,
    pub created_at: DateTime<Utc>,
    /// The trigger's trace context: runners continue it.
    pub trace: TraceContext,
}

/// A listener that fired, as told to the [`Observer`] once the transaction that recorded its
/// notification has committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub namespace: String,
    /// The notification's sequence.
    pub sequence: u64,
    pub fire_id: Uuid,
    pub kind: NotificationKind,
    pub listener_id: Uuid,
    /// The workflow id (START) or instance id (WAKE, TIMEOUT).
    pub target: String,
    pub at: DateTime<Utc>,
    /// The trigger's own context, which the notification carries: a child of `cause` whose span
    /// id is derived from the fire id ([`trigger_span_id`]). Empty when `cause` is.
    pub trace: TraceContext,
    /// What the trigger continues: the completing event's context, or for a TIMEOUT the
    /// registering call's.
    pub cause: TraceContext,
    /// The contexts of the other contributing events (fan-in of an ALL listener).
    pub links: Vec<TraceContext>,
}

/// Told about the store's side effects after they committed; the server turns them into trace
/// spans and metrics.
///
/// Hazard: called from the writer, between transactions: it must return quickly and must
/// not call back into the store.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// Triggers fired by one committed transaction, in notification order.
    fn fired(&self, fired: &[Fired]);

    /// Notifications a group acknowledged, by the time each was created (its publish commit).
    fn acked(&self, namespace: &str, group: &str, created_at: &[DateTime<Utc>]);
}

/// A consumer group's notifications by state, for monitoring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupBacklog {
    pub namespace: String,
    pub group: String,
    /// Not yet leased: not looked at yet (counted before the group's filters apply), waiting for
    /// a retry, or released.
    pub pending: u64,
    /// Leased to a consumer (including leases that expired and await a new claim).
    pub leased: u64,
    /// Dead-lettered.
    pub dead: u64,
}

/// Sizes of a SQLite store's files, for monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSizes {
    /// The database file, bytes.
    pub database: u64,
    /// The WAL file, bytes (0 when absent).
    pub wal: u64,
}

/// Connections of the read pool, for monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub max: u32,
    pub open: u32,
    pub idle: u32,
}

/// The span id of a trigger: the first 8 bytes of its fire id, so the same firing always gets the
/// same span id (fire ids are UUIDv5, whose version nibble keeps these bytes from being zero).
pub fn trigger_span_id(fire_id: Uuid) -> [u8; 8] {
    let mut id = [0; 8];
    id.copy_from_slice(&fire_id.as_bytes()[..8]);
    id
}

/// A notification leased to one consumer of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub notification: Notification,
    pub group: String,
    /// 1 on the first delivery.
    pub attempt: u32,
}

/// A notification a group gave up on after its maximum attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub notification: Notification,
    pub attempt: u32,
    pub last_error: String,
    pub dead_at: DateTime<Utc>,
}

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StartPosition {
    /// The earliest retained notification.
    #[default]
    Earliest,
    /// Only notifications created after the group.
    Latest,
    /// Notifications from this sequence on.
    Sequence(u64),
}

/// A consumer group: its filters are fixed when it is created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSpec {
    pub name: String,
    /// Empty: every kind.
    pub kinds: Vec<NotificationKind>,
    /// Empty: every notification; otherwise only START notifications of these workflows.
    pub workflow_ids: Vec<String>,
    pub start: StartPosition,
    /// Deliveries after which a notification becomes a dead letter.
    pub max_attempts: u32,
}

/// Which listeners [`Store::delete_listeners`] removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerSelector {
    Workflow(String),
    Instance(String),
}

/// Filters and cursor of [`Store::list_listeners`].
#[derive(Debug, Clone, Default)]
pub struct ListenerQuery {
    pub kind: Option<ListenerKind>,
    pub workflow_id: Option<String>,
    pub instance_id: Option<String>,
    /// Also list WAIT listeners that fired or timed out.
    pub include_finished: bool,
    pub page_size: u32,
    pub page_token: Option<String>,
}

/// Filters and cursor of [`Store::list_events`].
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub event_type: Option<String>,
    pub source: Option<String>,
    pub subject: Option<String>,
    /// Inclusive, on the receive time.
    pub start: Option<DateTime<Utc>>,
    /// Exclusive, on the receive time.
    pub end: Option<DateTime<Utc>>,
    pub after_sequence: Option<u64>,
    pub page_size: u32,
    pub page_token: Option<String>,
}

/// How an event is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKey {
    Sequence(u64),
    SourceId { source: String, id: String },
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Present when more items may follow.
    pub next_page_token: Option<String>,
}

/// What a sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub timed_out: u64,
    /// (listener, correlation key) partial states that lost events past their lifespan.
    pub partials_pruned: u64,
    pub events_deleted: u64,
    pub notifications_deleted: u64,
    pub listeners_deleted: u64,
}

/// Default and maximum page sizes of listings.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A handle to the store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    read: AnyPool,
    commands: mpsc::Sender<Command>,
    slots: Slots,
    config: StoreConfig,
    /// The database file of a SQLite store.
    sqlite_path: Option<PathBuf>,
}

impl Store {
    /// Connects, applies the embedded migrations and starts the writer and the sweeper.
    /// Nothing is scanned: listeners are loaded per namespace on first use.
    pub async fn open(config: StoreConfig) -> Result<Self> {
        install_default_drivers();
        let backend = Backend::from_url(&config.database_url)?;
        let durability = config.durability;
        let timeout = config.database_timeout;
        let read = connect(backend, &config.database_url, config.pool_size.max(1), durability, timeout).await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&read).await?,
            Backend::Postgres => sqlx::migrate!("migrations/postgres").run(&read).await?,
        }
        let sqlite_path = match backend {
            Backend::Sqlite => Some(SqliteConnectOptions::from_str(&config.database_url)?.get_filename().to_owned()),
            Backend::Postgres => None,
        };
        let conn = match &sqlite_path {
            Some(path) => Conn::sqlite(path.clone(), durability, config.sqlite_wal_limit)?,
            None => Conn::Postgres { pool: read.clone(), durability, timeout },
        };
        let (tx, rx) = mpsc::channel(4096);
        let slots = Slots::default();
        writer::spawn(writer::Writer::new(conn, slots.clone(), config.clone()), rx)?;
        let store = Self { inner: Arc::new(Inner { backend, read, commands: tx, slots, config, sqlite_path }) };
        store.spawn_sweeper();
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Returns the sizes of a SQLite store's files (`None` on Postgres, or when the database file
    /// cannot be read).
    pub fn file_sizes(&self) -> Option<FileSizes> {
        let path = self.inner.sqlite_path.as_ref()?;
        let database = std::fs::metadata(path).ok()?.len();
        let wal = std::fs::metadata(checkpoint::wal_path(path)).map_or(0, |m| m.len());
        Some(FileSizes { database, wal })
    }

    /// Runs a command on the writer; `Unavailable` if it has not answered within the database
    /// timeout. The writer skips a command whose caller stopped waiting before it began.
    async fn call(&self, op: Op) -> Result<Output> {
        let (reply, rx) = oneshot::channel();
        let asked = async {
            self.inner
                .commands
                .send(Command { op, reply })
                .await
                .map_err(|_| Error::Internal("store writer stopped".into()))?;
            rx.await.map_err(|_| Error::Internal("store writer dropped a command".into()))?
        };
        let timeout = self.inner.config.database_timeout;
        tokio::time::timeout(timeout, asked).await.unwrap_or_else(|_| Err(no_answer(timeout)))
    }

    /// Runs `SELECT 1` on a connection of the read pool: `Unavailable` if the database cannot be
    /// reached or does not answer within the database timeout (for health checks).
    pub async fn ping(&self) -> Result<()> {
        self.read(async |conn| conn.execute("SELECT 1").await).await.map(drop)
    }

    /// Stores, sequences and evaluates events in one transaction (see the crate docs).
    /// Each event's `sequence`, `namespace` and `received_at` are assigned here.
    pub async fn publish(&self, namespace: &str, events: Vec<Event>) -> Result<Vec<Published>> {
        match self.call(Op::Publish { namespace: namespace.to_owned(), events }).await? {
            Output::Published(p) => Ok(p),
            other => Err(unexpected(other)),
        }
    }

    /// Registers a listener. With a `request_id`, a retry returns the listener registered
    /// first (the same spec) or fails with `AlreadyExists` (another spec).
    pub async fn register_listener(
        &self,
        namespace: &str,
        spec: ListenerSpec,
        request_id: Option<String>,
        trace: TraceContext,
    ) -> Result<(Listener, bool)> {
        match self.call(Op::Register { namespace: namespace.to_owned(), spec, request_id, trace }).await? {
            Output::Registered(l, created) => Ok((*l, created)),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes one listener; `NotFound` if the namespace has no such listener.
    pub async fn delete_listener(&self, namespace: &str, id: Uuid) -> Result<()> {
        match self.call(Op::DeleteListener { namespace: namespace.to_owned(), id }).await? {
            Output::Count(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes every listener of a workflow (START) or an instance (WAIT); returns how many.
    pub async fn delete_listeners(&self, namespace: &str, selector: ListenerSelector) -> Result<u64> {
        match self.call(Op::DeleteListeners { namespace: namespace.to_owned(), selector }).await? {
            Output::Count(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    /// Creates the consumer group if it does not exist; `FailedPrecondition` if it exists with
    /// other filters.
    pub async fn ensure_group(&self, namespace: &str, group: GroupSpec) -> Result<()> {
        match self.call(Op::EnsureGroup { namespace: namespace.to_owned(), group }).await? {
            Output::Unit => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Leases up to `max` notifications of the group to `consumer` for `lease`: first those
    /// whose lease expired or whose retry time came, then new ones in sequence order.
    pub async fn claim(
        &self,
        namespace: &str,
        group: &str,
        consumer: &str,
        max: u32,
        lease: Duration,
    ) -> Result<Vec<Delivery>> {
        Ok(self.claim_batch(namespace, group, consumer, max, lease).await?.0)
    }

    /// Like [`Self::claim`]; also returns whether it took as many as it could, so more may be
    /// claimable (with a [`Consumer`] attached, `max` is cut to its room).
    pub(crate) async fn claim_batch(
        &self,
        namespace: &str,
        group: &str,
        consumer: &str,
        max: u32,
        lease: Duration,
    ) -> Result<(Vec<Delivery>, bool)> {
        let op = Op::Claim {
            namespace: namespace.to_owned(),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            max,
            lease,
        };
        let (claimed, full) = match self.call(op).await? {
            Output::Claimed(c, full) => (c, full),
            other => return Err(unexpected(other)),
        };
        let (mut notifications, attempts): (Vec<_>, Vec<_>) = claimed.into_iter().unzip();
        self.load_events(namespace, &mut notifications).await?;
        let deliveries = notifications
            .into_iter()
            .zip(attempts)
            .map(|(notification, attempt)| Delivery { notification, group: group.to_owned(), attempt })
            .collect();
        Ok((deliveries, full))
    }

    /// Acknowledges notifications of a group that are not settled yet, leased or awaiting
    /// redelivery (an ack after the lease ended still counts); returns how many were acked
    /// (acked, dead and unknown sequences are ignored: acking twice is harmless). NotFound if the
    /// group does not exist.
    pub async fn ack(&self, namespace: &str, group: &str, sequences: Vec<u64>) -> Result<u64> {
        match self.call(Op::Ack { namespace: namespace.to_owned(), group: group.to_owned(), sequences }).await? {
            Output::Count(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    /// Gives a leased notification back for a retry after `retry_after`; returns whether it
    /// became a dead letter instead (its attempts are used up). If its lease already ended,
    /// that was the failed attempt: only the retry time and the reason are set. NotFound if the
    /// group or the notification in it does not exist; FailedPrecondition if it is acked or dead.
    pub async fn nack(
        &self,
        namespace: &str,
        group: &str,
        sequence: u64,
        retry_after: Duration,
        reason: String,
    ) -> Result<bool> {
        let op = Op::Nack { namespace: namespace.to_owned(), group: group.to_owned(), sequence, retry_after, reason };
        match self.call(op).await? {
            Output::DeadLettered(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    /// Makes everything leased to `consumer` claimable again now (its stream went away).
    pub async fn release(&self, namespace: &str, group: &str, consumer: &str) -> Result<u64> {
        let op =
            Op::Release { namespace: namespace.to_owned(), group: group.to_owned(), consumer: consumer.to_owned() };
        match self.call(op).await? {
            Output::Count(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    /// Makes dead letters claimable again with fresh attempts (all when `sequences` is empty);
    /// returns how many. NotFound if the group does not exist.
    pub async fn redrive(&self, namespace: &str, group: &str, sequences: Vec<u64>) -> Result<u64> {
        match self.call(Op::Redrive { namespace: namespace.to_owned(), group: group.to_owned(), sequences }).await? {
            Output::Count(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    /// Times out passed WAIT deadlines and applies retention once.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<SweepReport> {
        match self.call(Op::Sweep { now }).await? {
            Output::Swept(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    fn spawn_sweeper(&self) {
        let weak = Arc::downgrade(&self.inner);
        let interval = self.inner.config.sweep_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let store = Store { inner };
                // Retention works in bounded batches: go on while a batch was full.
                loop {
                    match store.sweep(Utc::now()).await {
                        Ok(r) if r.events_deleted + r.notifications_deleted + r.listeners_deleted > 0 => continue,
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "sweep failed");
                            break;
                        }
                    }
                }
            }
        });
    }
}

fn unexpected(output: Output) -> Error {
    Error::Internal(format!("unexpected writer output {output:?}"))
}

/// The error of a call the database did not answer within the database timeout.
fn no_answer(timeout: Duration) -> Error {
    Error::Unavailable(format!("no answer from the database within {timeout:?}").into())
}

async fn connect(backend: Backend, url: &str, size: u32, durability: Durability, timeout: Duration) -> Result<AnyPool> {
    let url = match backend {
        Backend::Sqlite if !url.contains('?') && !url.contains(":memory:") => format!("{url}?mode=rwc"),
        _ => url.to_owned(),
    };
    let pool = AnyPoolOptions::new()
        .max_connections(size)
        .min_connections(0)
        .acquire_timeout(timeout)
        // A SQLite connection is a local file that cannot break while idle; pinging it would only
        // cost a trip to its worker thread per read. A Postgres connection can.
        .test_before_acquire(backend == Backend::Postgres)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                let setup = match (backend, durability) {
                    (Backend::Sqlite, Durability::Full) => {
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000;"
                    }
                    (Backend::Sqlite, Durability::Relaxed) => {
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;"
                    }
                    (Backend::Postgres, Durability::Full) => "SET synchronous_commit = on",
                    (Backend::Postgres, Durability::Relaxed) => "SET synchronous_commit = off",
                };
                conn.execute(setup).await?;
                if backend == Backend::Postgres {
                    // A session whose process went silent in a transaction releases its locks.
                    let ms = timeout.as_millis().max(1);
                    let limit = format!("SET idle_in_transaction_session_timeout = {ms}");
                    conn.execute(sqlx::AssertSqlSafe(limit)).await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await?;
    Ok(pool)
}

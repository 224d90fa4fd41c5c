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
//! Code map: this file is the [`Store`] handle; the public types are in `model` and the
//! configuration in `config` (both re-exported here). `writer` changes the database (split by
//! operation under `writer/`), `read` reads it (`read/admin` for namespaces, groups and partial
//! state), `replay` walks stored events through one listener (explain, replay; its fires go
//! through the writer), [`consume`] runs this process's consumers.
//! `conn` is the writer's connection and the one way rows are bound and mapped (`rows` maps
//! them to domain types, `sql` holds the dialect differences), `error` converts the drivers'
//! errors.
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
use crate::listener::{Listener, ListenerSpec};

mod checkpoint;
mod config;
mod conn;
pub mod consume;
mod error;
mod model;
mod open;
mod read;
mod replay;
mod rows;
mod sql;
#[cfg(test)]
mod vfs;
mod writer;

pub use config::{Backend, DEFAULT_SQLITE_PAGE_SIZE, DEFAULT_SQLITE_WAL_LIMIT, Durability, StoreConfig};
use conn::Conn;
use consume::Slots;
pub use consume::{Consumer, ConsumerOptions, ConsumerStats};
pub use model::{
    CollectedEvent, ConsumerGroup, DEFAULT_PAGE_SIZE, DeadLetter, Delivery, EventKey, EventQuery, FileSizes, Fired,
    GroupBacklog, GroupSpec, GroupUpdate, ListenerQuery, ListenerSelector, MAX_PAGE_SIZE, NamespaceHead, NamespaceInfo,
    NamespacePurge, NewToken, Notification, NotificationKind, Observer, Page, PartialState, PartialStates, PoolStats,
    Published, SeekPosition, Seeked, StartPosition, SweepReport, Token, TokenGrant, trigger_span_id,
};
pub use replay::{
    EventRange, ExplainTarget, Explained, MAX_EXPLAIN_LOOK_BACK, MAX_HELD_EVENTS, MAX_LOOK_BACK_EVENTS, Position,
    ReplayMode, ReplayPage, ReplayQuery, ReplayedFire,
};
pub use rows::{from_micros, micros};
use writer::{Claimed, Command, Reply};

/// What a registration carries besides its spec (to the writer).
#[derive(Debug, Clone, Copy)]
struct Registration<'a> {
    request_id: Option<&'a str>,
    trace: &'a TraceContext,
    look_back: Option<Position>,
}

/// Rows per table that each transaction of [`Store::delete_namespace`] deletes, by default.
pub const PURGE_BATCH: u32 = 1000;

/// Names of the store's own threads with SQLite: the writer and the WAL checkpointer (at most
/// the 15 bytes Linux keeps).
pub const WRITER_THREAD: &str = "eb-store-writer";
pub const CHECKPOINT_THREAD: &str = "eb-store-ckpt";

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
        open::check_page_size(config.sqlite_page_size)?;
        let read = connect(backend, &config, durability, timeout).await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&read).await,
            Backend::Postgres => sqlx::migrate!("migrations/postgres").run(&read).await,
        }
        .map_err(error::migration_failed)?;
        if backend == Backend::Sqlite {
            // A migration that copies a table writes it through the WAL (1.36 GB for 1.1 million
            // events): into the database file with it, and the WAL emptied, before the writer
            // starts, whose checkpointer would otherwise leave it until the first commits.
            sqlx::query(checkpoint::Mode::Truncate.pragma()).execute(&read).await?;
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

    /// Sends a command to the writer and waits for its result; `Unavailable` if it has not
    /// answered within the database timeout. The writer skips a command whose caller stopped
    /// waiting before it began.
    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
        self.queue(command).await?.outcome().await
    }

    /// Puts a command in the writer's queue (waiting for room, within the database timeout) and
    /// returns the wait for its answer, bound by the same timeout.
    async fn queue<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<Pending<T>> {
        let timeout = self.inner.config.database_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let (sender, answer) = oneshot::channel();
        match tokio::time::timeout_at(deadline, self.inner.commands.send(command(Reply::new(sender)))).await {
            Err(_) => Err(no_answer(timeout)),
            Ok(Err(_)) => Err(Error::Internal("store writer stopped".into())),
            Ok(Ok(())) => Ok(Pending { answer, deadline, timeout }),
        }
    }

    /// Runs `SELECT 1` on a connection of the read pool: `Unavailable` if the database cannot be
    /// reached or does not answer within the database timeout (for health checks).
    pub async fn ping(&self) -> Result<()> {
        self.read(async |conn| Ok(conn.execute("SELECT 1").await.map(drop)?)).await
    }

    /// Stores, sequences and evaluates events in one transaction (see the crate docs).
    /// Each event's `sequence`, `namespace` and `received_at` are assigned here.
    pub async fn publish(&self, namespace: &str, events: Vec<Event>) -> Result<Vec<Published>> {
        self.queue_publish(namespace, events).await?.outcome().await
    }

    /// Publishes like [`Store::publish`], in two steps: this takes the batch's place in the
    /// writer's queue, and the returned [`Pending`] waits for its outcome. Batches queued one
    /// after another get their sequences in that order, however their outcomes are awaited.
    pub async fn queue_publish(&self, namespace: &str, events: Vec<Event>) -> Result<Pending<Vec<Published>>> {
        self.queue(|reply| Command::Publish { namespace: namespace.to_owned(), events, reply }).await
    }

    /// Registers a listener. With a `request_id`, a retry returns the listener registered
    /// first (the same spec) or fails with `AlreadyExists` (another spec). Also returns whether
    /// the listener was created by this call.
    pub async fn register_listener(
        &self,
        namespace: &str,
        spec: ListenerSpec,
        request_id: Option<String>,
        trace: TraceContext,
    ) -> Result<(Listener, bool)> {
        self.register_listener_looking_back(namespace, spec, request_id, trace, None).await
    }

    /// Registers a listener like [`Store::register_listener`]; with `look_back`, the stored
    /// events of the listener's types from that position up to the registration are walked
    /// through it in the registration's transaction (firing what they complete), and later
    /// events are evaluated live: each event exactly once. `FailedPrecondition` when more than
    /// [`MAX_LOOK_BACK_EVENTS`] events lie in the look-back.
    pub async fn register_listener_looking_back(
        &self,
        namespace: &str,
        spec: ListenerSpec,
        request_id: Option<String>,
        trace: TraceContext,
        look_back: Option<Position>,
    ) -> Result<(Listener, bool)> {
        self.call(|reply| Command::Register {
            namespace: namespace.to_owned(),
            spec,
            request_id,
            trace,
            look_back,
            reply: Box::new(reply),
        })
        .await
    }

    /// Deletes one listener; `NotFound` if the namespace has no such listener.
    pub async fn delete_listener(&self, namespace: &str, id: Uuid) -> Result<()> {
        self.delete_listeners(namespace, ListenerSelector::Id(id)).await.map(|_| ())
    }

    /// Deletes the selected listeners (see [`ListenerSelector`]); returns how many.
    pub async fn delete_listeners(&self, namespace: &str, selector: ListenerSelector) -> Result<u64> {
        self.call(|reply| Command::DeleteListeners { namespace: namespace.to_owned(), selector, reply }).await
    }

    /// Creates the consumer group if it does not exist; `FailedPrecondition` if it exists with
    /// other filters.
    pub async fn ensure_group(&self, namespace: &str, group: GroupSpec) -> Result<()> {
        self.call(|reply| Command::EnsureGroup { namespace: namespace.to_owned(), group, reply }).await
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
        let Claimed { leased, full } = self
            .call(|reply| Command::Claim {
                namespace: namespace.to_owned(),
                group: group.to_owned(),
                consumer: consumer.to_owned(),
                max,
                lease,
                reply,
            })
            .await?;
        let (mut notifications, attempts): (Vec<_>, Vec<_>) = leased.into_iter().unzip();
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
        self.call(|reply| Command::Ack { namespace: namespace.to_owned(), group: group.to_owned(), sequences, reply })
            .await
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
        self.call(|reply| Command::Nack {
            namespace: namespace.to_owned(),
            group: group.to_owned(),
            sequence,
            retry_after,
            reason,
            reply,
        })
        .await
    }

    /// Makes everything leased to `consumer` claimable again now (its stream went away).
    pub async fn release(&self, namespace: &str, group: &str, consumer: &str) -> Result<u64> {
        self.call(|reply| Command::Release {
            namespace: namespace.to_owned(),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            reply,
        })
        .await
    }

    /// Makes dead letters claimable again with fresh attempts (all when `sequences` is empty);
    /// returns how many. NotFound if the group does not exist.
    pub async fn redrive(&self, namespace: &str, group: &str, sequences: Vec<u64>) -> Result<u64> {
        self.call(|reply| Command::Redrive {
            namespace: namespace.to_owned(),
            group: group.to_owned(),
            sequences,
            reply,
        })
        .await
    }

    /// Sets the group's settings the update names; NotFound if the group does not exist.
    pub async fn update_group(&self, namespace: &str, group: &str, update: GroupUpdate) -> Result<()> {
        self.call(|reply| Command::UpdateGroup {
            namespace: namespace.to_owned(),
            group: group.to_owned(),
            update,
            reply,
        })
        .await
    }

    /// Moves the group's read position, dropping its unsettled deliveries and the dead letters
    /// from the new start on; NotFound if the group does not exist, FailedPrecondition for a
    /// sequence past the namespace's next one.
    pub async fn seek_group(&self, namespace: &str, group: &str, position: SeekPosition) -> Result<Seeked> {
        self.call(|reply| Command::SeekGroup {
            namespace: namespace.to_owned(),
            group: group.to_owned(),
            position,
            reply,
        })
        .await
    }

    /// Deletes the group with its deliveries and dead letters; returns how many deliveries went
    /// with it. NotFound if the group does not exist. Its consumers end with NotFound.
    pub async fn delete_group(&self, namespace: &str, group: &str) -> Result<u64> {
        self.call(|reply| Command::DeleteGroup { namespace: namespace.to_owned(), group: group.to_owned(), reply })
            .await
    }

    /// Deletes everything of a namespace, `batch` rows per table per transaction, until nothing
    /// is left; NotFound if there was nothing to delete. A failure leaves what was deleted
    /// deleted: calling again finishes the job.
    pub async fn delete_namespace(&self, namespace: &str, batch: u32) -> Result<NamespacePurge> {
        let mut total = NamespacePurge::default();
        for first in std::iter::once(true).chain(std::iter::repeat(false)) {
            let purged = self
                .call(|reply| Command::PurgeNamespace { namespace: namespace.to_owned(), limit: batch.max(1), reply })
                .await?;
            if first && !purged.existed && purged.deleted.total() == 0 {
                return Err(Error::NotFound(format!("namespace {namespace:?}")));
            }
            total.add(&purged.deleted);
            if purged.done {
                break;
            }
        }
        Ok(total)
    }

    /// Creates an API token (a new UUIDv7 id, created now) and returns it.
    pub async fn create_token(&self, token: NewToken) -> Result<Token> {
        self.call(|reply| Command::CreateToken { token, reply }).await
    }

    /// Revokes a token now and returns it; a revoked token keeps its first revocation time.
    /// NotFound if no token has that id.
    pub async fn revoke_token(&self, id: Uuid) -> Result<Token> {
        self.call(|reply| Command::RevokeToken { id, reply }).await
    }

    /// Records that the token was used at `at` (a later use than the one recorded; an earlier
    /// one changes nothing). An unknown id changes nothing.
    pub async fn touch_token(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.call(|reply| Command::TouchToken { id, at, reply }).await
    }

    /// Times out passed WAIT deadlines and applies retention once.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<SweepReport> {
        self.call(|reply| Command::Sweep { now, reply }).await
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

/// The answer to come of a command in the writer's queue ([`Store::queue_publish`]).
#[derive(Debug)]
pub struct Pending<T> {
    answer: oneshot::Receiver<Result<T>>,
    /// When the command's database timeout ends (counted from its queueing).
    deadline: tokio::time::Instant,
    timeout: Duration,
}

impl<T> Pending<T> {
    /// Waits for the command's outcome; `Unavailable` once the database timeout has passed.
    pub async fn outcome(self) -> Result<T> {
        match tokio::time::timeout_at(self.deadline, self.answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(Error::Internal("store writer dropped a command".into())),
            Err(_) => Err(no_answer(self.timeout)),
        }
    }
}

/// The error of a call the database did not answer within the database timeout.
fn no_answer(timeout: Duration) -> Error {
    Error::Unavailable(format!("no answer from the database within {timeout:?}").into())
}

async fn connect(backend: Backend, config: &StoreConfig, durability: Durability, timeout: Duration) -> Result<AnyPool> {
    let (url, size) = (config.database_url.as_str(), config.pool_size.max(1));
    let url = match backend {
        Backend::Sqlite if !url.contains('?') && !url.contains(":memory:") => format!("{url}?mode=rwc"),
        _ => url.to_owned(),
    };
    open::first_connection(backend, &url, timeout, config.sqlite_page_size).await?;
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

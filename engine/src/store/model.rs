//! The store's public model: what callers pass in (specs, selectors, queries) and get back
//! (published sequences, notifications, deliveries, dead letters, pages, reports), and the
//! [`Observer`] the writer tells about committed side effects.
//!
//! Plain data: no IO here. Hazard: the numbers are the store's own sequences (`u64`, stored as
//! signed 64-bit integers), per namespace.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::{Event, TraceContext};
use crate::listener::ListenerKind;

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

    /// Filter-set conditions that failed at run time (and so were false) in one committed
    /// transaction's evaluations; never called with 0.
    fn condition_errors(&self, _count: u64) {}
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

/// Which listeners [`Store::delete_listeners`](super::Store::delete_listeners) removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerSelector {
    /// One listener: `NotFound` if the namespace has no such listener.
    Id(Uuid),
    /// Every START listener of a workflow (none is not an error).
    Workflow(String),
    /// Every WAIT listener of an instance (none is not an error).
    Instance(String),
}

/// Filters and cursor of [`Store::list_listeners`](super::Store::list_listeners).
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

/// Filters and cursor of [`Store::list_events`](super::Store::list_events).
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

/// A namespace with counts of what it holds (see [`Store::list_namespaces`](super::Store::list_namespaces)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub name: String,
    pub events: u64,
    pub active_listeners: u64,
    pub consumer_groups: u64,
    /// 0 before the first event.
    pub last_event_sequence: u64,
    /// 0 before the first notification.
    pub last_notification_sequence: u64,
}

/// Where a namespace's sequences stand (see [`Store::namespace_head`](super::Store::namespace_head)):
/// read from the namespace row alone, so cheap whatever the namespace holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceHead {
    /// 0 before the first event.
    pub last_event_sequence: u64,
    /// 0 before the first notification.
    pub last_notification_sequence: u64,
}

/// A consumer group with its settings, read position and backlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroup {
    pub namespace: String,
    pub name: String,
    /// Sorted, without duplicates; empty: every kind.
    pub kinds: Vec<NotificationKind>,
    /// Sorted, without duplicates; empty: every notification.
    pub workflow_ids: Vec<String>,
    pub max_attempts: u32,
    /// The last notification sequence the group has looked at (0 before the first).
    pub read_sequence: u64,
    pub created_at: DateTime<Utc>,
    /// Not looked at yet and passing the filters, or ready for a retry.
    pub pending: u64,
    /// Leased to a consumer (including expired leases not yet claimed again).
    pub leased: u64,
    pub dead: u64,
    /// When the oldest pending notification was created; `None` when nothing is pending.
    pub oldest_pending: Option<DateTime<Utc>>,
    /// Consumers of this group running in this process.
    pub connected: u32,
}

/// What [`Store::update_group`](super::Store::update_group) changes: `Some` fields are set (an
/// empty list clears a filter), `None` ones are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupUpdate {
    pub kinds: Option<Vec<NotificationKind>>,
    pub workflow_ids: Option<Vec<String>>,
    pub max_attempts: Option<u32>,
}

/// Where [`Store::seek_group`](super::Store::seek_group) moves a group's read position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekPosition {
    /// The earliest retained notification.
    Earliest,
    /// After the newest notification.
    Latest,
    /// This notification sequence (at least 1, at most the next one).
    Sequence(u64),
    /// The first notification created at or after this time; `Latest` if none was.
    Time(DateTime<Utc>),
}

/// What a seek did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seeked {
    /// The group's new read position (the new start minus one).
    pub read_sequence: u64,
    /// Deliveries dropped: every unsettled one, and dead letters at or after the new start.
    pub dropped: u64,
}

/// What [`Store::delete_namespace`](super::Store::delete_namespace) deleted, rows per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NamespacePurge {
    pub events: u64,
    pub listeners: u64,
    pub partials: u64,
    pub notifications: u64,
    pub groups: u64,
    pub deliveries: u64,
}

impl NamespacePurge {
    pub fn total(&self) -> u64 {
        self.events + self.listeners + self.partials + self.notifications + self.groups + self.deliveries
    }

    pub(crate) fn add(&mut self, other: &Self) {
        self.events += other.events;
        self.listeners += other.listeners;
        self.partials += other.partials;
        self.notifications += other.notifications;
        self.groups += other.groups;
        self.deliveries += other.deliveries;
    }
}

/// One event an ALL listener holds for a correlation key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedEvent {
    pub event_type: String,
    pub source: String,
    pub id: String,
    pub sequence: u64,
    pub received_at: DateTime<Utc>,
    /// `received_at` plus the listener's lifespan; `None` without a lifespan.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What an ALL listener has collected for one correlation key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialState {
    /// (correlate_by name, value) pairs, in the listener's `correlate_by` order.
    pub correlation: Vec<(String, String)>,
    pub events: Vec<CollectedEvent>,
    /// The listener's types without a collected event, in the listener's order.
    pub missing_types: Vec<String>,
}

/// A page of a listener's partial states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialStates {
    pub states: Vec<PartialState>,
    /// More correlation keys hold state than were returned.
    pub truncated: bool,
}

/// A grant of an API token as stored: a role and the namespaces it covers. The store keeps them
/// as given; what they allow is the server's business.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenGrant {
    pub role: String,
    pub namespaces: String,
}

/// An API token as stored, without its secret (only the secret's SHA-256 is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// A UUIDv7 minted by the store.
    pub id: Uuid,
    pub name: String,
    pub grants: Vec<TokenGrant>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Recorded by [`crate::store::Store::touch_token`], at most as often as callers record it.
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A token to create: what it grants and the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub name: String,
    pub grants: Vec<TokenGrant>,
    pub secret_sha256: [u8; 32],
    pub expires_at: Option<DateTime<Utc>>,
}

//! Rows as stored and their mapping to domain types. Times are microseconds since the Unix
//! epoch, ids UUID text, structured values JSON text: the same on both backends.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::conn::{Row, Value};
use super::{Notification, NotificationKind, Token};
use crate::error::{Error, Result};
use crate::event::{AttrValue, Data, Event, TraceContext};
use crate::listener::{Listener, ListenerKind, ListenerSpec, ListenerStatus};

/// Returns microseconds since the Unix epoch.
pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Returns the time `us` microseconds after the Unix epoch.
pub fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Internal(format!("encoding json: {e}")))
}

pub(crate) fn from_json<'a, T: Deserialize<'a>>(s: &'a str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::Internal(format!("decoding stored json: {e}")))
}

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| Error::Internal(format!("stored id {s:?}: {e}")))
}

/// The part of an event kept as JSON; the columns hold what queries filter on.
#[derive(Debug, Serialize, Deserialize)]
struct EventBody {
    specversion: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    datacontenttype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dataschema: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    extensions: BTreeMap<String, AttrValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Data>,
    #[serde(default, skip_serializing_if = "TraceContext::is_empty")]
    trace: TraceContext,
}

pub(crate) fn event_body(e: &Event) -> Result<String> {
    to_json(&EventBodyRef {
        specversion: &e.specversion,
        time: e.time,
        datacontenttype: e.datacontenttype.as_deref(),
        dataschema: e.dataschema.as_deref(),
        extensions: &e.extensions,
        data: e.data.as_ref(),
        trace: &e.trace,
    })
}

/// [`EventBody`] borrowed from an event, to write it without copying the event's data.
#[derive(Serialize)]
struct EventBodyRef<'a> {
    specversion: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    datacontenttype: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dataschema: Option<&'a str>,
    #[serde(skip_serializing_if = "no_extensions")]
    extensions: &'a BTreeMap<String, AttrValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Data>,
    #[serde(skip_serializing_if = "no_trace")]
    trace: &'a TraceContext,
}

fn no_extensions(e: &&BTreeMap<String, AttrValue>) -> bool {
    e.is_empty()
}

fn no_trace(t: &&TraceContext) -> bool {
    t.is_empty()
}

/// A row type, read from a row that selected its `*_COLUMNS` list (first, in that order): the one
/// row mapping of the store, for the writer's statements and the pool's reads alike.
///
/// Hazard: columns are read by position, so a `*_COLUMNS` list and its `read` change together.
pub(crate) trait StoredRow: Sized {
    fn read(row: &Row) -> Result<Self>;
}

#[derive(Debug)]
pub(crate) struct EventRow {
    pub namespace: String,
    pub seq: i64,
    pub source: String,
    pub id: String,
    /// The `type` column.
    pub event_type: String,
    pub subject: Option<String>,
    pub received_us: i64,
    pub body: String,
}

pub(crate) const EVENT_COLUMNS: &str = "namespace, seq, source, id, type, subject, received_us, body";

impl StoredRow for EventRow {
    fn read(row: &Row) -> Result<Self> {
        Ok(Self {
            namespace: row.get(0)?,
            seq: row.get(1)?,
            source: row.get(2)?,
            id: row.get(3)?,
            event_type: row.get(4)?,
            subject: row.get(5)?,
            received_us: row.get(6)?,
            body: row.get(7)?,
        })
    }
}

impl EventRow {
    pub fn into_event(self) -> Result<Event> {
        let body: EventBody = from_json(&self.body)?;
        Ok(Event {
            namespace: self.namespace,
            sequence: self.seq as u64,
            id: self.id,
            source: self.source,
            specversion: body.specversion,
            event_type: self.event_type,
            subject: self.subject,
            time: body.time,
            datacontenttype: body.datacontenttype,
            dataschema: body.dataschema,
            extensions: body.extensions,
            data: body.data,
            received_at: from_micros(self.received_us),
            trace: body.trace,
        })
    }
}

#[derive(Debug)]
pub(crate) struct ListenerRow {
    pub id: String,
    pub namespace: String,
    pub ord: i64,
    pub spec: String,
    pub status: StoredStatus,
    pub fire_id: Option<String>,
    pub finished_us: Option<i64>,
    pub created_us: i64,
    pub trace: String,
    pub request_id: Option<String>,
}

pub(crate) const LISTENER_COLUMNS: &str =
    "id, namespace, ord, spec, status, fire_id, finished_us, created_us, trace, request_id";

/// The `status` column of a listener row: [`ListenerStatus`] without its data, plus the
/// tombstone of a deleted listener (kept until retention purges it, so that other processes
/// see the deletion when they sync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoredStatus {
    Active,
    Fired,
    TimedOut,
    Deleted,
}

impl StoredStatus {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Fired => "fired",
            Self::TimedOut => "timed_out",
            Self::Deleted => "deleted",
        }
    }
}

impl FromStr for StoredStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        [Self::Active, Self::Fired, Self::TimedOut, Self::Deleted]
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| Error::Internal(format!("unknown listener status {s:?}")))
    }
}

impl From<StoredStatus> for Value {
    fn from(status: StoredStatus) -> Self {
        Self::from(status.as_str())
    }
}

/// The statuses as SQL text spells them inline (`status = 'active'`): the partial index
/// `listeners_by_deadline` is usable only so.
pub(crate) const STATUS_ACTIVE: &str = StoredStatus::Active.as_str();
pub(crate) const STATUS_FIRED: &str = StoredStatus::Fired.as_str();
pub(crate) const STATUS_TIMED_OUT: &str = StoredStatus::TimedOut.as_str();
pub(crate) const STATUS_DELETED: &str = StoredStatus::Deleted.as_str();

pub(crate) fn kind_str(kind: ListenerKind) -> &'static str {
    match kind {
        ListenerKind::Start => "start",
        ListenerKind::Wait => "wait",
    }
}

pub(crate) fn status_columns(status: &ListenerStatus) -> (StoredStatus, Option<String>, Option<i64>) {
    match status {
        ListenerStatus::Active => (StoredStatus::Active, None, None),
        ListenerStatus::Fired { fire_id, at } => (StoredStatus::Fired, Some(fire_id.to_string()), Some(micros(*at))),
        ListenerStatus::TimedOut { fire_id, at } => {
            (StoredStatus::TimedOut, Some(fire_id.to_string()), Some(micros(*at)))
        }
    }
}

impl StoredRow for ListenerRow {
    fn read(row: &Row) -> Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            namespace: row.get(1)?,
            ord: row.get(2)?,
            spec: row.get(3)?,
            status: row.get::<String>(4)?.parse()?,
            fire_id: row.get(5)?,
            finished_us: row.get(6)?,
            created_us: row.get(7)?,
            trace: row.get(8)?,
            request_id: row.get(9)?,
        })
    }
}

impl ListenerRow {
    pub fn into_listener(self) -> Result<Listener> {
        let spec: ListenerSpec = from_json(&self.spec)?;
        let at = || from_micros(self.finished_us.unwrap_or_default());
        let fire_id = || self.fire_id.as_deref().map(parse_uuid).transpose().map(Option::unwrap_or_default);
        let status = match self.status {
            StoredStatus::Active => ListenerStatus::Active,
            StoredStatus::Fired => ListenerStatus::Fired { fire_id: fire_id()?, at: at() },
            StoredStatus::TimedOut => ListenerStatus::TimedOut { fire_id: fire_id()?, at: at() },
            StoredStatus::Deleted => return Err(Error::Internal("a deleted listener is not readable".into())),
        };
        Ok(Listener {
            id: parse_uuid(&self.id)?,
            namespace: self.namespace,
            order: self.ord,
            spec,
            created_at: from_micros(self.created_us),
            trace: from_json(&self.trace)?,
            request_id: self.request_id,
            status,
        })
    }
}

/// The state of a delivery row: a notification of one consumer group that is not acked yet
/// (an ack deletes the row). Stored as its [`Self::as_str`] text.
///
/// Hazard: SQL text spells the states inline (`state <> 'dead'`, through [`fmt::Display`]),
/// never as a bound value, so that the partial index `deliveries_by_available` (`WHERE state <>
/// 'dead'`) stays usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeliveryState {
    /// Claimable once `available_us` has passed: a retry after a nack, a released lease, a
    /// redriven dead letter.
    Ready,
    /// Leased to `consumer` until `available_us`, claimable again after that.
    Leased,
    /// A dead letter: given up after the group's maximum attempts, until it is redriven.
    Dead,
}

impl DeliveryState {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Leased => "leased",
            Self::Dead => "dead",
        }
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ready" => Ok(Self::Ready),
            "leased" => Ok(Self::Leased),
            "dead" => Ok(Self::Dead),
            _ => Err(Error::Internal(format!("unknown delivery state {s:?}"))),
        }
    }
}

impl From<DeliveryState> for Value {
    fn from(state: DeliveryState) -> Self {
        Self::from(state.as_str())
    }
}

/// A consumer group's settings, stored as JSON in its row: kinds and workflow ids sorted and
/// without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GroupSettings {
    pub kinds: Vec<NotificationKind>,
    pub workflow_ids: Vec<String>,
    pub max_attempts: u32,
}

impl GroupSettings {
    /// Returns the settings in their stored form (sorted filters, at least one attempt).
    pub(crate) fn new(mut kinds: Vec<NotificationKind>, mut workflow_ids: Vec<String>, max_attempts: u32) -> Self {
        kinds.sort();
        kinds.dedup();
        workflow_ids.sort();
        workflow_ids.dedup();
        Self { kinds, workflow_ids, max_attempts: max_attempts.max(1) }
    }

    pub(crate) fn matches(&self, kind: NotificationKind, target: &str) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&kind))
            && (self.workflow_ids.is_empty()
                || (kind == NotificationKind::Start && self.workflow_ids.iter().any(|w| w == target)))
    }
}

#[derive(Debug)]
pub(crate) struct NotificationRow {
    pub namespace: String,
    pub seq: i64,
    pub fire_id: String,
    pub kind: String,
    pub listener_id: String,
    pub target: String,
    pub correlation: String,
    pub event_seqs: String,
    pub created_us: i64,
    pub trace: String,
}

pub(crate) const NOTIFICATION_COLUMNS: &str =
    "namespace, seq, fire_id, kind, listener_id, target, correlation, event_seqs, created_us, trace";

impl StoredRow for NotificationRow {
    fn read(row: &Row) -> Result<Self> {
        Ok(Self {
            namespace: row.get(0)?,
            seq: row.get(1)?,
            fire_id: row.get(2)?,
            kind: row.get(3)?,
            listener_id: row.get(4)?,
            target: row.get(5)?,
            correlation: row.get(6)?,
            event_seqs: row.get(7)?,
            created_us: row.get(8)?,
            trace: row.get(9)?,
        })
    }
}

impl NotificationRow {
    /// Maps the row; the events are loaded separately.
    pub fn into_notification(self) -> Result<Notification> {
        Ok(Notification {
            namespace: self.namespace,
            sequence: self.seq as u64,
            fire_id: parse_uuid(&self.fire_id)?,
            kind: self.kind.parse::<NotificationKind>()?,
            listener_id: parse_uuid(&self.listener_id)?,
            target: self.target,
            correlation: from_json(&self.correlation)?,
            event_sequences: from_json(&self.event_seqs)?,
            events: Vec::new(),
            created_at: from_micros(self.created_us),
            trace: from_json(&self.trace)?,
        })
    }
}

/// The columns of a token row, in the order [`token_row`] reads them.
pub(crate) const TOKEN_COLUMNS: &str = "id, name, grants, created_us, expires_us, last_used_us, revoked_us";

/// Maps a row of [`TOKEN_COLUMNS`] to a token.
pub(crate) fn token_row(row: &Row) -> Result<Token> {
    let time = |i| row.get::<Option<i64>>(i).map(|us| us.map(from_micros));
    Ok(Token {
        id: parse_uuid(&row.get::<String>(0)?)?,
        name: row.get(1)?,
        grants: from_json(&row.get::<String>(2)?)?,
        created_at: from_micros(row.get(3)?),
        expires_at: time(4)?,
        last_used_at: time(5)?,
        revoked_at: time(6)?,
    })
}

/// Returns a token secret's SHA-256 as stored: lowercase hex.
pub(crate) fn secret_hash(sha256: &[u8; 32]) -> String {
    sha256.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_states_round_trip() -> Result<()> {
        for (state, text) in
            [(DeliveryState::Ready, "ready"), (DeliveryState::Leased, "leased"), (DeliveryState::Dead, "dead")]
        {
            assert_eq!(state.as_str(), text);
            assert_eq!(state.to_string(), text);
            assert_eq!(text.parse::<DeliveryState>()?, state);
        }
        assert!("acked".parse::<DeliveryState>().is_err());
        Ok(())
    }

    #[test]
    fn stored_statuses_round_trip() -> Result<()> {
        let cases = [
            (StoredStatus::Active, "active"),
            (StoredStatus::Fired, "fired"),
            (StoredStatus::TimedOut, "timed_out"),
            (StoredStatus::Deleted, "deleted"),
        ];
        for (status, text) in cases {
            assert_eq!(status.as_str(), text);
            assert_eq!(text.parse::<StoredStatus>()?, status);
        }
        assert!("paused".parse::<StoredStatus>().is_err());
        Ok(())
    }
}

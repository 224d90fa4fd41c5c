//! Replay and explain over stored events: a page of events read in sequence order (from the
//! read pool), walked through one listener by the pure [`Explainer`], and for a replay in FIRE
//! mode, its fires handed to the writer (one transaction per page, see `writer/replay.rs`).
//!
//! Bounded work per call: a page holds at most [`MAX_PAGE_SIZE`](super::MAX_PAGE_SIZE) events. The walk's state
//! (what an ALL listener collected so far, whether a WAIT listener was consumed) travels in the
//! page token, so the next page goes on exactly where this one stopped; a token holds at most
//! [`MAX_HELD_EVENTS`] collected events, and a range whose walk holds more at a page boundary is
//! refused (FAILED_PRECONDITION) rather than explained wrong.
//!
//! Hazards: the pages are read outside the writer's transactions; events are never changed
//! once stored, but retention may delete the oldest ones between two pages.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::conn::Value;
use super::read::{Binding, page_size};
use super::rows::{EVENT_COLUMNS, EventRow, micros};
use super::sql::{self, list};
use super::writer::Command;
use super::{EventKey, NotificationKind, Page, Store};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::explain::{Explainer, Reason, Walk, WalkState};
use crate::listener::CompiledListener;
use crate::trigger::{Action, ActionKind};

/// At most this many collected events in the walk state a page token carries.
pub const MAX_HELD_EVENTS: usize = 1000;

/// At most this many events of a listener's types in a registration's look-back (walked in the
/// registration's transaction, so bounded).
pub const MAX_LOOK_BACK_EVENTS: usize = 10_000;

/// At most this many earlier events of the listener's types replayed to explain one event.
pub const MAX_EXPLAIN_LOOK_BACK: u32 = 1000;

/// One end of a range of stored events: a sequence, or a receive time. Both ends are inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Sequence(u64),
    Time(DateTime<Utc>),
}

/// Stored events between two positions (both inclusive); an open end is the first or the last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventRange {
    pub from: Option<Position>,
    pub to: Option<Position>,
}

/// Whether a replay only says what would fire, or fires it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayMode {
    DryRun,
    Fire,
}

/// What [`Store::replay`] walks.
#[derive(Debug, Clone)]
pub struct ReplayQuery {
    pub range: EventRange,
    pub mode: ReplayMode,
    pub page_size: u32,
    pub page_token: Option<String>,
}

/// One firing a replay found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayedFire {
    pub fire_id: Uuid,
    pub kind: NotificationKind,
    pub target: String,
    pub correlation: Vec<(String, String)>,
    pub event_sequences: Vec<u64>,
    /// FIRE mode: the notification this call created; `None` when the fire id had fired before
    /// (or in a dry run).
    pub notification_sequence: Option<u64>,
}

/// One page of a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayPage {
    pub fires: Vec<ReplayedFire>,
    /// Events of the listener's types this page evaluated.
    pub events_evaluated: u64,
    /// The sequence of the last event this page read (0 for none).
    pub last_sequence: u64,
    pub next_page_token: Option<String>,
}

/// What [`Store::explain`] explains.
#[derive(Debug, Clone)]
pub enum ExplainTarget {
    /// One event, with the state that the listener's earlier events (at most [`MAX_EXPLAIN_LOOK_BACK`],
    /// received since its registration) built.
    Event(EventKey),
    /// Every event of the range, walked from an empty state at its start.
    Range(EventRange),
}

/// One event and why it did or did not contribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Explained {
    pub event: Event,
    pub reason: Reason,
}

/// Where a walk stopped: the last sequence read and the simulated state.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    after: u64,
    state: WalkState,
}

/// A page token: the cursor, bound to the call that issued it.
fn token(binding: Binding, cursor: &Cursor) -> Result<String> {
    if cursor.state.held() > MAX_HELD_EVENTS {
        return Err(Error::FailedPrecondition(format!(
            "the walk holds more than {MAX_HELD_EVENTS} collected events at a page boundary; narrow the range"
        )));
    }
    let json = serde_json::to_vec(cursor).map_err(|e| Error::Internal(format!("encoding a cursor: {e}")))?;
    Ok(format!("{}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json), binding.token(0)))
}

fn parse_token(binding: Binding, token: Option<&str>) -> Result<Cursor> {
    let Some(token) = token.filter(|t| !t.is_empty()) else { return Ok(Cursor::default()) };
    let refused = || Error::invalid("page_token", "is not a token this server issued for this call");
    let (body, bound) = token.split_once('.').ok_or_else(refused)?;
    if binding.parse(Some(bound)).is_err() {
        return Err(refused());
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).map_err(|_| refused())?;
    serde_json::from_slice(&json).map_err(|_| refused())
}

fn range_binding(call: &str, namespace: &str, listener: Uuid, range: &EventRange) -> Binding {
    let position = |p: Option<Position>| match p {
        None => (None, None),
        Some(Position::Sequence(s)) => (Some(s as i64), None),
        Some(Position::Time(t)) => (None, Some(micros(t))),
    };
    let ((fs, ft), (ts, tt)) = (position(range.from), position(range.to));
    Binding::new(call, namespace)
        .with_str(Some(&listener.to_string()))
        .with_int(fs)
        .with_int(ft)
        .with_int(ts)
        .with_int(tt)
}

fn notification_kind(kind: &ActionKind) -> (NotificationKind, String) {
    match kind {
        ActionKind::Start { workflow_id } => (NotificationKind::Start, workflow_id.clone()),
        ActionKind::Wake { instance_id } => (NotificationKind::Wake, instance_id.clone()),
        ActionKind::Timeout { instance_id } => (NotificationKind::Timeout, instance_id.clone()),
    }
}

impl Store {
    /// Walks the stored events of a range through a listener's spec from an empty state, in
    /// sequence order, one page per call, and returns what fired; in FIRE mode, fires what had
    /// not fired before (see the module docs). `NotFound` for an unknown or deleted listener.
    pub async fn replay(&self, namespace: &str, listener_id: Uuid, query: ReplayQuery) -> Result<ReplayPage> {
        let listener = CompiledListener::compile(self.get_listener(namespace, listener_id).await?)?;
        let mode = match query.mode {
            ReplayMode::DryRun => "dry_run",
            ReplayMode::Fire => "fire",
        };
        let binding = range_binding(mode, namespace, listener_id, &query.range);
        let cursor = parse_token(binding, query.page_token.as_deref())?;
        let types = listener.spec().types.clone();
        let size = page_size(query.page_size);
        let mut events = self.range_page(namespace, &query.range, cursor.after, Some(&types), size + 1).await?;
        let more = events.len() as i64 > size;
        events.truncate(size as usize);
        let mut walk = Explainer::resume(listener, Walk::Replay, cursor.state);
        let actions: Vec<Action> = events.iter().filter_map(|e| walk.step(e).fired).collect();
        let created = match query.mode {
            ReplayMode::Fire if !actions.is_empty() => {
                let fires = actions.clone();
                let ns = namespace.to_owned();
                self.call(|reply| Command::Replay { namespace: ns, listener_id, fires, reply }).await?
            }
            _ => vec![None; actions.len()],
        };
        let fires = actions
            .into_iter()
            .zip(created)
            .map(|(a, notification_sequence)| {
                let (kind, target) = notification_kind(&a.kind);
                ReplayedFire {
                    fire_id: a.fire_id,
                    kind,
                    target,
                    correlation: a.correlation,
                    event_sequences: a.events.iter().map(|e| e.sequence).collect(),
                    notification_sequence,
                }
            })
            .collect();
        let last_sequence = events.last().map_or(cursor.after, |e| e.sequence);
        let next_page_token =
            if more { Some(token(binding, &Cursor { after: last_sequence, state: walk.state() })?) } else { None };
        Ok(ReplayPage { fires, events_evaluated: events.len() as u64, last_sequence, next_page_token })
    }

    /// Says for each event of the target why it did or did not contribute to the listener (see
    /// [`ExplainTarget`]); a range is paged like a replay. `NotFound` for an unknown listener or
    /// event.
    pub async fn explain(
        &self,
        namespace: &str,
        listener_id: Uuid,
        target: ExplainTarget,
        page_size_requested: u32,
        page_token: Option<&str>,
    ) -> Result<Page<Explained>> {
        let listener = CompiledListener::compile(self.get_listener(namespace, listener_id).await?)?;
        let range = match target {
            ExplainTarget::Event(key) => {
                let event = self.get_event(namespace, key).await?;
                let items = vec![self.explain_one(namespace, listener, event).await?];
                return Ok(Page { items, next_page_token: None });
            }
            ExplainTarget::Range(range) => range,
        };
        let binding = range_binding("explain", namespace, listener_id, &range);
        let cursor = parse_token(binding, page_token)?;
        let size = page_size(page_size_requested);
        let mut events = self.range_page(namespace, &range, cursor.after, None, size + 1).await?;
        let more = events.len() as i64 > size;
        events.truncate(size as usize);
        let mut walk = Explainer::resume(listener, Walk::Explain, cursor.state);
        let last = events.last().map_or(cursor.after, |e| e.sequence);
        let explained = events.into_iter().map(|event| Explained { reason: walk.step(&event).reason, event }).collect();
        let next = if more { Some(token(binding, &Cursor { after: last, state: walk.state() })?) } else { None };
        Ok(Page { items: explained, next_page_token: next })
    }

    /// Explains one event after walking the listener's earlier events since its registration.
    async fn explain_one(&self, namespace: &str, listener: CompiledListener, event: Event) -> Result<Explained> {
        let types = listener.spec().types.clone();
        let since = EventRange { from: Some(Position::Time(listener.listener.created_at)), to: None };
        let before = event.sequence.saturating_sub(1);
        let (newest, binds) = range_sql(&since, before, Some(&types), MAX_EXPLAIN_LOOK_BACK.into(), true);
        let sql = format!("SELECT {EVENT_COLUMNS} FROM ({newest}) AS earlier ORDER BY seq");
        let earlier = self.events_where(sql, namespace, binds).await?;
        let mut walk = Explainer::new(listener, Walk::Explain);
        for e in &earlier {
            walk.step(e);
        }
        Ok(Explained { reason: walk.step(&event).reason, event })
    }

    /// Reads up to `limit` events of the range after sequence `after`, in sequence order, only
    /// of `types` when given.
    async fn range_page(
        &self,
        namespace: &str,
        range: &EventRange,
        after: u64,
        types: Option<&[String]>,
        limit: i64,
    ) -> Result<Vec<Event>> {
        let (sql, binds) = range_sql(range, after, types, limit, false);
        self.events_where(sql, namespace, binds).await
    }

    async fn events_where(&self, sql: String, namespace: &str, binds: Vec<Value>) -> Result<Vec<Event>> {
        let mut all = vec![Value::from(namespace)];
        all.extend(binds);
        let rows: Vec<EventRow> = self.fetch(sql, all).await?;
        rows.into_iter().map(EventRow::into_event).collect()
    }
}

/// The query of a page of a range (`$1` is the namespace): after `after` ascending, or with
/// `backwards` up to `after` descending (the newest `limit`).
pub(crate) fn range_sql(
    range: &EventRange,
    after: u64,
    types: Option<&[String]>,
    limit: i64,
    backwards: bool,
) -> (String, Vec<Value>) {
    // SQLite seeks on one lower bound of `seq` only (and may pick the weaker), so going
    // forwards the range's start and the page's position make one bound.
    let after = match (backwards, range.from) {
        (false, Some(Position::Sequence(s))) => after.max(s.saturating_sub(1)),
        _ => after,
    };
    let mut binds = vec![Value::from(after as i64)];
    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE namespace = $1");
    // A time is checked on each row, and bounds the scan through the first sequence received
    // at or after it (there is no index on times; see `sql::first_seq_at`).
    let time = |from: bool, t: DateTime<Utc>, binds: &mut Vec<Value>| {
        // Up to `t` inclusive: before the first sequence received after it.
        binds.push(Value::from(if from { micros(t) } else { micros(t) + 1 }));
        let p = format!("${}", binds.len() + 1);
        let first = format!("COALESCE(({}), 0)", sql::first_seq_at_with("events", "received_us", "$1", &p));
        (first, p)
    };
    match (backwards, range.from) {
        (true, _) => sql.push_str(" AND seq <= $2"),
        (false, Some(Position::Time(t))) => {
            let (first, p) = time(true, t, &mut binds);
            sql.push_str(&format!(
                " AND seq > CASE WHEN $2 >= {first} - 1 THEN $2 ELSE {first} - 1 END AND received_us >= {p}"
            ));
        }
        (false, _) => sql.push_str(" AND seq > $2"),
    }
    match (backwards, range.from) {
        (true, Some(Position::Sequence(s))) => {
            binds.push(Value::from(s as i64));
            sql.push_str(&format!(" AND seq >= ${}", binds.len() + 1));
        }
        (true, Some(Position::Time(t))) => {
            let (first, p) = time(true, t, &mut binds);
            sql.push_str(&format!(" AND seq >= {first} AND received_us >= {p}"));
        }
        _ => {}
    }
    match range.to {
        Some(Position::Sequence(s)) => {
            binds.push(Value::from(s as i64));
            sql.push_str(&format!(" AND seq <= ${}", binds.len() + 1));
        }
        Some(Position::Time(t)) => {
            let (first, p) = time(false, t, &mut binds);
            sql.push_str(&format!(" AND seq < {first} AND received_us < {p}"));
        }
        None => {}
    }
    if let Some(types) = types {
        sql.push_str(&format!(" AND type IN ({})", list(types.len(), binds.len() + 2)));
        binds.extend(types.iter().map(|t| Value::from(t.as_str())));
    }
    let order = if backwards { "DESC" } else { "ASC" };
    sql.push_str(&format!(" ORDER BY seq {order} LIMIT {}", limit.max(1)));
    (sql, binds)
}

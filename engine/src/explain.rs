//! Explain and replay: walks events in sequence order through one listener, with the trigger's
//! own evaluation, and says for each event why it did or did not contribute ([`Reason`]).
//!
//! An [`Explainer`] holds the listener and a simulation of its state: an [`Engine`] with only
//! that listener in it, started empty (or from a [`WalkState`] carried over from an earlier
//! page). Each [`Explainer::step`] checks the event the way the engine does (namespace, type,
//! filter sets with their clauses and conditions, correlation, deadline), then lets the engine
//! evaluate it at its receive time, so "collected for key, still waiting for" and "fired as"
//! are exactly what the engine decides from that state. The step also returns the action the
//! simulation fired, which is what a replay fires.
//!
//! Two walks ([`Walk`]): [`Walk::Explain`] also says what the listener's life made of the
//! event (received before it was registered, after it finished); [`Walk::Replay`] evaluates the
//! spec alone, as if the listener had always listened.
//!
//! Hazard: the simulation starts from the state it is given, not from what the listener holds
//! live; a walk that starts in the middle of a correlation's events explains them without the
//! earlier ones. Pure: no IO, no clock (events carry their receive time).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::condition::Bindings;
use crate::event::{Event, EventRef};
use crate::listener::{CompiledListener, Condition, FilterFailure, ListenerStatus, SetFailure};
use crate::trigger::{Action, ActionKind, CorrelationKey, Engine};

/// Why an event did or did not contribute to a listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// The event is in another namespace than the listener.
    NamespaceMismatch { listener: String, event: String },
    /// The event's type is not one of the listener's types.
    TypeNotListed { event_type: String },
    /// The event was received before the listener was registered (listeners never look back).
    BeforeCreation { created_at: DateTime<Utc> },
    /// The WAIT listener had already fired or timed out when the event was received.
    Consumed { status: ListenerStatus },
    /// No filter set of the event's type passed it: why each failed, in registration order.
    Filtered { failures: Vec<FilterFailure> },
    /// The event lacks a `correlate_by` attribute (the first one missing).
    CorrelationMissing { attribute: String },
    /// The event was received at or after the WAIT listener's deadline: it timed the listener out.
    AfterDeadline { deadline: DateTime<Utc> },
    /// The ALL listener already held an event of this type for the key (policy FIRST, or the
    /// same event again): this one was not collected.
    AlreadyCollected { key: Vec<(String, String)>, kept_sequence: u64 },
    /// Collected for the key; the listener still waits for these types.
    Collected { key: Vec<(String, String)>, waiting_for: Vec<String> },
    /// The event completed the listener, which fired.
    Fired { fire_id: Uuid, key: Vec<(String, String)>, event_sequences: Vec<u64> },
}

impl Reason {
    /// Returns whether the event contributed: collected, or fired.
    pub fn contributed(&self) -> bool {
        matches!(self, Self::Collected { .. } | Self::Fired { .. })
    }
}

/// Formats a correlation key as `{orderid: 42, region: eu}`.
fn key_text(key: &[(String, String)]) -> String {
    let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{{}}}", parts.join(", "))
}

impl fmt::Display for SetFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Clause { attribute, pattern, value: Some(value) } => {
                write!(f, "clause `{attribute}`: pattern `{pattern}` vs value `{value}`")
            }
            Self::Clause { attribute, pattern, value: None } => {
                write!(f, "clause `{attribute}`: pattern `{pattern}` vs no such attribute")
            }
            Self::ConditionFalse { condition } => write!(f, "condition `{condition}` is false"),
            Self::ConditionError { condition, error } => write!(f, "condition `{condition}` errored: {error}"),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NamespaceMismatch { listener, event } => {
                write!(f, "namespace mismatch: the listener is in {listener:?}, the event in {event:?}")
            }
            Self::TypeNotListed { event_type } => write!(f, "type {event_type:?} is not one of the listener's types"),
            Self::BeforeCreation { created_at } => {
                write!(f, "outside the listener's lifetime: received before it was registered at {created_at}")
            }
            Self::Consumed { status: ListenerStatus::Fired { fire_id, at } } => {
                write!(f, "listener already consumed: fired as {fire_id} at {at}")
            }
            Self::Consumed { status: ListenerStatus::TimedOut { at, .. } } => {
                write!(f, "listener already consumed: timed out at {at}")
            }
            Self::Consumed { status: ListenerStatus::Active } => write!(f, "listener already consumed"),
            Self::Filtered { failures } => {
                let parts: Vec<String> =
                    failures.iter().map(|x| format!("filter set {} failed on {}", x.set, x.failure)).collect();
                f.write_str(&parts.join("; "))
            }
            Self::CorrelationMissing { attribute } => write!(f, "correlation attribute `{attribute}` missing"),
            Self::AfterDeadline { deadline } => {
                write!(
                    f,
                    "outside the listener's lifetime: received at or after its deadline {deadline}, which timed it out"
                )
            }
            Self::AlreadyCollected { key, kept_sequence } => write!(
                f,
                "not collected for key `{}`: it already holds event {kept_sequence} of this type",
                key_text(key)
            ),
            Self::Collected { key, waiting_for } => write!(
                f,
                "collected for key `{}`, still waiting for {}",
                key_text(key),
                waiting_for.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
            ),
            Self::Fired { fire_id, .. } => write!(f, "fired as fire id {fire_id}"),
        }
    }
}

/// Which walk an [`Explainer`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// What happened live: events received before the listener was registered, or after it
    /// finished (its stored status), did not contribute.
    Explain,
    /// The spec alone, as if the listener had listened from the first event of the walk.
    Replay,
}

/// The simulated state of a walk, to carry from one page to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkState {
    /// The partial state per correlation key, in key order.
    pub partials: Vec<(CorrelationKey, Vec<EventRef>)>,
    /// Set once the simulated WAIT listener fired or timed out.
    pub consumed: Option<ListenerStatus>,
}

impl WalkState {
    /// Returns how many collected events the state holds.
    pub fn held(&self) -> usize {
        self.partials.iter().map(|(_, p)| p.len()).sum()
    }
}

/// One event's explanation, and what the simulation fired for it (a TIMEOUT aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub reason: Reason,
    pub fired: Option<Action>,
}

/// Walks events through one listener; see the module docs.
#[derive(Debug)]
pub struct Explainer {
    listener: CompiledListener,
    walk: Walk,
    engine: Engine,
    consumed: Option<ListenerStatus>,
}

impl Explainer {
    /// Starts a walk from an empty state.
    pub fn new(listener: CompiledListener, walk: Walk) -> Self {
        Self::resume(listener, walk, WalkState::default())
    }

    /// Continues a walk from a state an earlier walk returned ([`Explainer::state`]).
    pub fn resume(listener: CompiledListener, walk: Walk, state: WalkState) -> Self {
        let mut simulated = listener.clone();
        simulated.listener.status = ListenerStatus::Active;
        let mut engine = Engine::new();
        if state.consumed.is_none() {
            engine.insert(simulated, state.partials);
        }
        Self { listener, walk, engine, consumed: state.consumed }
    }

    /// Returns the simulated state, to resume from.
    pub fn state(&self) -> WalkState {
        let mut partials: Vec<(CorrelationKey, Vec<EventRef>)> = self
            .engine
            .partials(self.listener.id())
            .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        partials.sort_by(|a, b| a.0.cmp(&b.0));
        WalkState { partials, consumed: self.consumed.clone() }
    }

    /// Explains one event and advances the simulation past it. Events must come in sequence
    /// order.
    pub fn step(&mut self, event: &Event) -> Step {
        match self.check(event) {
            Err(reason @ Reason::AfterDeadline { .. }) => {
                // The engine times the listener out on it.
                self.finish(event);
                Step { reason, fired: None }
            }
            Err(reason) => Step { reason, fired: None },
            Ok(key) => self.evaluate(event, key),
        }
    }

    /// Lets the engine evaluate the event; returns what it fired, and remembers when it
    /// finished the listener.
    fn finish(&mut self, event: &Event) -> Option<Action> {
        let id = self.listener.id();
        let outcome = self.engine.evaluate(std::slice::from_ref(event), event.received_at);
        if let Some((_, status)) = outcome.finished.into_iter().find(|(f, _)| *f == id) {
            self.consumed = Some(status);
        }
        outcome.actions.into_iter().find(|a| !matches!(a.kind, ActionKind::Timeout { .. }))
    }

    /// The checks that do not depend on the state: `Ok` with the correlation key when the
    /// event reaches the evaluation.
    fn check(&self, event: &Event) -> Result<CorrelationKey, Reason> {
        let l = &self.listener.listener;
        if event.namespace != l.namespace {
            return Err(Reason::NamespaceMismatch { listener: l.namespace.clone(), event: event.namespace.clone() });
        }
        if !l.spec.types.contains(&event.event_type) {
            return Err(Reason::TypeNotListed { event_type: event.event_type.clone() });
        }
        if self.walk == Walk::Explain && event.received_at < l.created_at {
            return Err(Reason::BeforeCreation { created_at: l.created_at });
        }
        if let Some(status) = &self.consumed {
            return Err(Reason::Consumed { status: status.clone() });
        }
        if self.walk == Walk::Explain
            && let ListenerStatus::Fired { at, .. } | ListenerStatus::TimedOut { at, .. } = &l.status
            && event.received_at > *at
        {
            return Err(Reason::Consumed { status: l.status.clone() });
        }
        self.listener.diagnose(event, &Bindings::new(event)).map_err(|failures| Reason::Filtered { failures })?;
        let key = if l.spec.condition == Condition::All {
            self.listener.correlation_key(event).ok_or_else(|| {
                let missing = l.spec.correlate_by.iter().find(|name| event.attribute(name).is_none());
                Reason::CorrelationMissing { attribute: missing.cloned().unwrap_or_default() }
            })?
        } else {
            Vec::new()
        };
        if let Some(deadline) = l.spec.deadline
            && event.received_at >= deadline
        {
            return Err(Reason::AfterDeadline { deadline });
        }
        Ok(key)
    }

    /// Lets the engine evaluate an event that passed the checks, and says what it decided.
    fn evaluate(&mut self, event: &Event, key: CorrelationKey) -> Step {
        let id = self.listener.id();
        let fired = self.finish(event);
        let named: Vec<(String, String)> = self.listener.spec().correlate_by.iter().cloned().zip(key.clone()).collect();
        if let Some(action) = fired {
            let reason = Reason::Fired {
                fire_id: action.fire_id,
                key: named,
                event_sequences: action.events.iter().map(|e| e.sequence).collect(),
            };
            return Step { reason, fired: Some(action) };
        }
        let partial = self.engine.partials(id).and_then(|p| p.get(&key)).cloned().unwrap_or_default();
        let reason = if partial.iter().any(|e| e.sequence == event.sequence) {
            let waiting_for = self
                .listener
                .spec()
                .types
                .iter()
                .filter(|t| !partial.iter().any(|e| e.event_type == **t))
                .cloned()
                .collect();
            Reason::Collected { key: named, waiting_for }
        } else {
            let kept = partial.iter().find(|e| e.event_type == event.event_type || e.id == event.id);
            Reason::AlreadyCollected { key: named, kept_sequence: kept.map_or(0, |e| e.sequence) }
        };
        Step { reason, fired: None }
    }
}

#[cfg(test)]
mod tests;

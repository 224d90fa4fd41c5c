//! Trigger evaluation: which listeners an event completes, and what to do about it.
//!
//! The [`Engine`] holds the active listeners of any number of namespaces, indexed by
//! (namespace, event type), with the partial state of ALL listeners. [`Engine::evaluate`] takes
//! a batch of events and the current time and returns an [`Outcome`]: the actions to take
//! (start a workflow, wake or time out an instance) and the state changes to persist. It does no
//! IO and reads no clock; the same inputs always give the same outcome.
//!
//! Hazard: the engine changes its own state as it evaluates. A caller that persists the outcome
//! and fails to commit must discard the engine (or reload the listeners it touched), or the
//! in-memory state runs ahead of the stored one.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::condition::Bindings;
use crate::event::{Event, EventRef, TraceContext};
use crate::listener::{CompiledListener, Condition, ListenerKind, ListenerStatus, Policy};

/// The values of a listener's `correlate_by` attributes, in that order (empty when
/// uncorrelated).
pub type CorrelationKey = Vec<String>;

/// Events an ALL listener has collected for one correlation key, in collection order.
pub type Partial = Vec<EventRef>;

/// UUID namespace of fire ids (UUIDv5 over the listener and the contributing events).
pub(crate) const FIRE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_3c2e_8b7d_4e59_9c0a_5d2f_1e3b_7a64);

/// What a fired listener asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    Start { workflow_id: String },
    Wake { instance_id: String },
    Timeout { instance_id: String },
}

/// One firing of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// Deterministic: the same listener and contributing events give the same id.
    pub fire_id: Uuid,
    pub namespace: String,
    pub listener_id: Uuid,
    pub kind: ActionKind,
    /// Contributing events in the order they were collected; the last one completed the
    /// listener. Empty for a TIMEOUT.
    pub events: Vec<EventRef>,
    /// `(attribute, value)` for each `correlate_by` attribute.
    pub correlation: Vec<(String, String)>,
    /// The context the action continues: the completing event's, or for a TIMEOUT the
    /// registering call's.
    pub trace: TraceContext,
}

/// The result of an evaluation: actions in order, and the state changes to persist.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub actions: Vec<Action>,
    /// The final partial state of every (listener, key) the evaluation touched; an empty partial
    /// means the key holds nothing any more.
    pub partials: BTreeMap<(Uuid, CorrelationKey), Partial>,
    /// Listeners that finished (WAIT fired or timed out) and left the engine, in order.
    pub finished: Vec<(Uuid, ListenerStatus)>,
    /// Conditions that failed at run time, and so were false (nothing to persist: a number
    /// for the metrics).
    pub condition_errors: u64,
}

impl Outcome {
    /// Returns whether there is nothing to do or persist (condition errors aside).
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.partials.is_empty() && self.finished.is_empty()
    }
}

#[derive(Debug)]
struct Slot {
    listener: CompiledListener,
    partials: HashMap<CorrelationKey, Partial>,
}

/// The listeners of one (namespace, event type).
#[derive(Debug, Default)]
struct TypeIndex {
    /// Listeners every event of the type must be checked against, by creation order.
    scan: BTreeMap<i64, Uuid>,
    /// Listeners whose filters pin an attribute to exact values: attribute -> value -> listeners.
    /// Only those under the event's value can match, so the others cost nothing.
    exact: HashMap<String, HashMap<String, BTreeMap<i64, Uuid>>>,
}

impl TypeIndex {
    fn is_empty(&self) -> bool {
        self.scan.is_empty() && self.exact.is_empty()
    }

    /// Returns the listeners that may match the event, in creation order.
    fn candidates(&self, event: &Event) -> Vec<Uuid> {
        if self.exact.is_empty() {
            return self.scan.values().copied().collect();
        }
        let mut found: Vec<(i64, Uuid)> = self.scan.iter().map(|(o, id)| (*o, *id)).collect();
        for (attr, by_value) in &self.exact {
            if let Some(listeners) = event.attribute(attr).and_then(|v| by_value.get(&*v)) {
                found.extend(listeners.iter().map(|(o, id)| (*o, *id)));
            }
        }
        found.sort_unstable();
        found.dedup();
        found.into_iter().map(|(_, id)| id).collect()
    }
}

/// Active listeners with their state, indexed for matching.
#[derive(Debug, Default)]
pub struct Engine {
    slots: HashMap<Uuid, Slot>,
    /// namespace -> event type -> listeners.
    index: HashMap<String, HashMap<String, TypeIndex>>,
    deadlines: BTreeSet<(DateTime<Utc>, Uuid)>,
}

impl Engine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the number of active listeners.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn contains(&self, id: Uuid) -> bool {
        self.slots.contains_key(&id)
    }

    /// Adds an active listener with its partial state (replacing one with the same id).
    /// A listener that is not active is ignored.
    pub fn insert(
        &mut self,
        listener: CompiledListener,
        partials: impl IntoIterator<Item = (CorrelationKey, Partial)>,
    ) {
        if !listener.listener.status.is_active() {
            return;
        }
        let id = listener.id();
        self.remove(id);
        let l = &listener.listener;
        let by_type = self.index.entry(l.namespace.clone()).or_default();
        for t in &l.spec.types {
            let ti = by_type.entry(t.clone()).or_default();
            match listener.exact_key(t) {
                Some((attr, values)) => {
                    let by_value = ti.exact.entry(attr.to_owned()).or_default();
                    for v in values {
                        by_value.entry(v.to_owned()).or_default().insert(l.order, id);
                    }
                }
                None => {
                    ti.scan.insert(l.order, id);
                }
            }
        }
        if let Some(deadline) = l.spec.deadline {
            self.deadlines.insert((deadline, id));
        }
        let partials = partials.into_iter().filter(|(_, p)| !p.is_empty()).collect();
        self.slots.insert(id, Slot { listener, partials });
    }

    /// Removes a listener; returns whether it was there.
    pub fn remove(&mut self, id: Uuid) -> bool {
        let Some(slot) = self.slots.remove(&id) else {
            return false;
        };
        let l = &slot.listener.listener;
        if let Some(by_type) = self.index.get_mut(&l.namespace) {
            for t in &l.spec.types {
                let Some(ti) = by_type.get_mut(t) else { continue };
                match slot.listener.exact_key(t) {
                    Some((attr, values)) => {
                        if let Some(by_value) = ti.exact.get_mut(attr) {
                            for v in values {
                                if let Some(orders) = by_value.get_mut(v) {
                                    orders.remove(&l.order);
                                    if orders.is_empty() {
                                        by_value.remove(v);
                                    }
                                }
                            }
                            if by_value.is_empty() {
                                ti.exact.remove(attr);
                            }
                        }
                    }
                    None => {
                        ti.scan.remove(&l.order);
                    }
                }
                if ti.is_empty() {
                    by_type.remove(t);
                }
            }
            if by_type.is_empty() {
                self.index.remove(&l.namespace);
            }
        }
        if let Some(deadline) = l.spec.deadline {
            self.deadlines.remove(&(deadline, id));
        }
        true
    }

    /// Returns the partial state of an active ALL listener.
    pub fn partials(&self, id: Uuid) -> Option<&HashMap<CorrelationKey, Partial>> {
        self.slots.get(&id).map(|s| &s.partials)
    }

    /// Evaluates a batch event by event, in order; for each event, the listeners of its
    /// namespace and type in creation order. An event whose (namespace, source, id) occurred
    /// earlier in the batch is skipped.
    pub fn evaluate(&mut self, events: &[Event], now: DateTime<Utc>) -> Outcome {
        let mut out = Outcome::default();
        let mut seen = HashSet::with_capacity(events.len());
        for event in events {
            if !seen.insert((event.namespace.as_str(), event.source.as_str(), event.id.as_str())) {
                continue;
            }
            let Some(ti) = self.index.get(&event.namespace).and_then(|t| t.get(&event.event_type)) else {
                continue;
            };
            let candidates = ti.candidates(event);
            let bindings = Bindings::new(event);
            for id in candidates {
                self.apply(id, event, &bindings, now, &mut out);
            }
        }
        out
    }

    /// Times out every WAIT listener whose deadline is at or before `now`, once: each yields a
    /// TIMEOUT action and leaves the engine.
    pub fn expire(&mut self, now: DateTime<Utc>) -> Outcome {
        self.expire_where(now, |_| true)
    }

    /// Like [`Engine::expire`], for the listeners of one namespace only.
    pub fn expire_namespace(&mut self, namespace: &str, now: DateTime<Utc>) -> Outcome {
        self.expire_where(now, |l| l.namespace == namespace)
    }

    fn expire_where(&mut self, now: DateTime<Utc>, select: impl Fn(&crate::listener::Listener) -> bool) -> Outcome {
        let mut out = Outcome::default();
        let due: Vec<Uuid> = self
            .deadlines
            .iter()
            .take_while(|(d, _)| *d <= now)
            .map(|(_, id)| *id)
            .filter(|id| self.slots.get(id).is_some_and(|s| select(&s.listener.listener)))
            .collect();
        for id in due {
            self.time_out(id, now, &mut out);
        }
        out
    }

    /// Drops collected events whose lifespan has run out at `now`, for every ALL listener,
    /// so that keys that never complete do not hold memory forever.
    pub fn prune(&mut self, now: DateTime<Utc>) -> Outcome {
        self.prune_where(now, |_| true)
    }

    /// Like [`Engine::prune`], for the listeners of one namespace only.
    pub fn prune_namespace(&mut self, namespace: &str, now: DateTime<Utc>) -> Outcome {
        self.prune_where(now, |l| l.namespace == namespace)
    }

    /// Returns the namespaces where [`Engine::prune`] would drop something at `now`.
    pub fn namespaces_to_prune(&self, now: DateTime<Utc>) -> BTreeSet<String> {
        self.slots
            .values()
            .filter(|slot| {
                lifespan(&slot.listener)
                    .is_some_and(|lifespan| slot.partials.values().flatten().any(|e| !alive(e, lifespan, now)))
            })
            .map(|slot| slot.listener.listener.namespace.clone())
            .collect()
    }

    fn prune_where(&mut self, now: DateTime<Utc>, select: impl Fn(&crate::listener::Listener) -> bool) -> Outcome {
        let mut out = Outcome::default();
        for (id, slot) in &mut self.slots {
            if !select(&slot.listener.listener) {
                continue;
            }
            let Some(lifespan) = lifespan(&slot.listener) else { continue };
            slot.partials.retain(|key, partial| {
                let before = partial.len();
                partial.retain(|e| alive(e, lifespan, now));
                if partial.len() != before {
                    out.partials.insert((*id, key.clone()), partial.clone());
                }
                !partial.is_empty()
            });
        }
        out
    }

    fn apply(&mut self, id: Uuid, event: &Event, bindings: &Bindings<'_>, now: DateTime<Utc>, out: &mut Outcome) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        if !slot.listener.passes(event, bindings, &mut out.condition_errors) {
            return;
        }
        let key = match slot.listener.spec().condition {
            Condition::One | Condition::Any => Vec::new(),
            Condition::All => match slot.listener.correlation_key(event) {
                Some(key) => key,
                None => return,
            },
        };
        // An event that would match, but arrived at or after the deadline, times the listener
        // out instead of waking it, even before the sweeper gets to it.
        if let Some(deadline) = slot.listener.spec().deadline
            && event.received_at >= deadline
        {
            self.time_out(id, now, out);
            return;
        }
        let (key, events) = match slot.listener.spec().condition {
            Condition::One | Condition::Any => (key, vec![event.to_ref()]),
            Condition::All => match collect(slot, key.clone(), event, now, out) {
                Some(events) => (key, events),
                None => return,
            },
        };
        self.fire(id, key, events, now, out);
    }

    fn fire(&mut self, id: Uuid, key: CorrelationKey, events: Vec<EventRef>, now: DateTime<Utc>, out: &mut Outcome) {
        let Some(slot) = self.slots.get(&id) else { return };
        let l = &slot.listener.listener;
        let correlation = l.spec.correlate_by.iter().cloned().zip(key).collect();
        let mut name = format!("{}/fire", l.id);
        for e in &events {
            name.push('/');
            name.push_str(&e.source);
            name.push('\0');
            name.push_str(&e.id);
        }
        let fire_id = Uuid::new_v5(&FIRE_ID_NAMESPACE, name.as_bytes());
        let trace = events.last().map(|e| e.trace.clone()).unwrap_or_default();
        let kind = match l.spec.kind {
            ListenerKind::Start => ActionKind::Start { workflow_id: l.spec.target.clone() },
            ListenerKind::Wait => ActionKind::Wake { instance_id: l.spec.target.clone() },
        };
        out.actions.push(Action {
            fire_id,
            namespace: l.namespace.clone(),
            listener_id: id,
            kind,
            events,
            correlation,
            trace,
        });
        if l.spec.kind == ListenerKind::Wait {
            self.finish(id, ListenerStatus::Fired { fire_id, at: now }, out);
        }
    }

    fn time_out(&mut self, id: Uuid, now: DateTime<Utc>, out: &mut Outcome) {
        let Some(slot) = self.slots.get(&id) else { return };
        let l = &slot.listener.listener;
        let fire_id = Uuid::new_v5(&FIRE_ID_NAMESPACE, format!("{}/timeout", l.id).as_bytes());
        out.actions.push(Action {
            fire_id,
            namespace: l.namespace.clone(),
            listener_id: id,
            kind: ActionKind::Timeout { instance_id: l.spec.target.clone() },
            events: Vec::new(),
            correlation: Vec::new(),
            trace: l.trace.clone(),
        });
        self.finish(id, ListenerStatus::TimedOut { fire_id, at: now }, out);
    }

    /// Takes a finished listener out of the engine, clearing its partial state.
    fn finish(&mut self, id: Uuid, status: ListenerStatus, out: &mut Outcome) {
        if let Some(slot) = self.slots.get(&id) {
            for key in slot.partials.keys() {
                out.partials.insert((id, key.clone()), Vec::new());
            }
        }
        self.remove(id);
        out.finished.push((id, status));
    }
}

/// Collects the event into the listener's partial state for `key`. Returns the completed set
/// (and resets the key) when every type is present.
fn collect(
    slot: &mut Slot,
    key: CorrelationKey,
    event: &Event,
    now: DateTime<Utc>,
    out: &mut Outcome,
) -> Option<Vec<EventRef>> {
    let listener_id = slot.listener.id();
    let lifespan = lifespan(&slot.listener);
    let policy = slot.listener.spec().policy.unwrap_or_default();
    let types = slot.listener.spec().types.len();
    let partial = slot.partials.entry(key.clone()).or_default();
    let mut changed = false;
    if let Some(lifespan) = lifespan {
        let before = partial.len();
        partial.retain(|e| alive(e, lifespan, now));
        changed = partial.len() != before;
    }
    let duplicate = partial.iter().any(|e| e.source == event.source && e.id == event.id);
    let same_type = partial.iter().position(|e| e.event_type == event.event_type);
    let collect = !duplicate
        && match (same_type, policy) {
            (None, _) => true,
            (Some(_), Policy::First) => false,
            (Some(i), Policy::Latest) => {
                partial.remove(i);
                true
            }
        };
    if collect {
        partial.push(event.to_ref());
        changed = true;
    }
    let complete = collect && partial.len() == types;
    let (fired, remaining) = if complete || partial.is_empty() {
        let taken = slot.partials.remove(&key).unwrap_or_default();
        (complete.then_some(taken), Vec::new())
    } else {
        (None, partial.clone())
    };
    if changed {
        out.partials.insert((listener_id, key), remaining);
    }
    fired
}

/// Returns whether a collected event is still alive at `now`. A lifespan that reaches past the
/// last representable time keeps the event forever (rather than overflowing).
fn alive(event: &EventRef, lifespan: chrono::Duration, now: DateTime<Utc>) -> bool {
    event.received_at.checked_add_signed(lifespan).is_none_or(|end| end > now)
}

fn lifespan(listener: &CompiledListener) -> Option<chrono::Duration> {
    listener
        .spec()
        .lifespan
        .filter(|d| !d.is_zero())
        .map(|d| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX))
}

#[cfg(test)]
mod tests;

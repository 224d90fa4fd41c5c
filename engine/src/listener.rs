//! Listeners: what a workflow engine registers to be told when events arrive, their validation
//! and their compiled (ready to match) form.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::condition::{Bindings, FilterCondition};
use crate::error::{Error, FieldViolation, Result};
use crate::event::{Event, TraceContext};

/// At most this many types per listener.
pub const MAX_TYPES: usize = 64;
/// At most this many filter sets per listed type.
pub const MAX_FILTER_SETS_PER_TYPE: usize = 32;
/// At most this many bytes in a workflow or instance id.
pub const MAX_TARGET_BYTES: usize = 256;
/// At most this many attributes in `correlate_by`.
pub const MAX_CORRELATE_BY: usize = 16;

/// Whether a listener starts a workflow (repeatedly) or wakes one instance (once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerKind {
    Start,
    Wait,
}

/// How many of a listener's types must arrive before it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Exactly one type.
    One,
    /// Any one of the types.
    Any,
    /// Every type (collected over time).
    All,
}

/// What an ALL listener does with a later event of a type it already collected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Keep the first event; ignore later ones.
    #[default]
    First,
    /// Replace it with the later event, which counts as collected when it arrived.
    Latest,
}

/// One filter set for one of a listener's types: attribute name -> glob pattern, and an optional
/// CEL condition ([`crate::condition`]). An event passes the set if every clause matches and
/// the condition is true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterSet {
    pub event_type: String,
    pub attributes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

/// What a client asks for when registering a listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerSpec {
    pub kind: ListenerKind,
    /// The workflow id (START) or instance id (WAIT).
    pub target: String,
    pub condition: Condition,
    pub types: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterSet>,
    /// ALL only: collected events older than this are dropped; zero means forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifespan: Option<Duration>,
    /// ALL only: attributes whose values key the partial state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub correlate_by: Vec<String>,
    /// ALL only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// WAIT only: when it passes the listener times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
}

impl ListenerSpec {
    /// Checks every rule and returns all violations at once, with field paths relative to the
    /// spec (`types[1]`, `filters[0].attributes[source]`, `filters[2].condition`).
    pub fn validate(&self) -> Result<()> {
        self.checked().map(drop)
    }

    /// Like [`ListenerSpec::validate`]; returns each filter set's compiled condition.
    fn checked(&self) -> Result<Vec<Option<FilterCondition>>> {
        let mut v = Vec::new();
        if self.target.is_empty() {
            v.push(FieldViolation::new(self.target_field(), "must not be empty"));
        } else if self.target.len() > MAX_TARGET_BYTES {
            v.push(FieldViolation::new(self.target_field(), format!("must be at most {MAX_TARGET_BYTES} bytes")));
        }
        if self.types.is_empty() {
            v.push(FieldViolation::new("types", "must name at least one event type"));
        } else if self.types.len() > MAX_TYPES {
            v.push(FieldViolation::new("types", format!("must name at most {MAX_TYPES} event types")));
        } else if self.condition == Condition::One && self.types.len() != 1 {
            v.push(FieldViolation::new("types", "condition ONE takes exactly one event type"));
        }
        let mut seen = HashSet::new();
        for (i, t) in self.types.iter().enumerate() {
            if t.is_empty() {
                v.push(FieldViolation::new(format!("types[{i}]"), "must not be empty"));
            } else if !seen.insert(t.as_str()) {
                v.push(FieldViolation::new(format!("types[{i}]"), format!("duplicate event type {t:?}")));
            }
        }
        let conditions = self.validate_filters(&mut v);
        if self.condition != Condition::All {
            if self.lifespan.is_some() {
                v.push(FieldViolation::new("lifespan", "only allowed with condition ALL"));
            }
            if !self.correlate_by.is_empty() {
                v.push(FieldViolation::new("correlate_by", "only allowed with condition ALL"));
            }
            if self.policy.is_some() {
                v.push(FieldViolation::new("policy", "only allowed with condition ALL"));
            }
        }
        if self.correlate_by.len() > MAX_CORRELATE_BY {
            v.push(FieldViolation::new("correlate_by", format!("at most {MAX_CORRELATE_BY} attributes")));
        }
        let mut names = HashSet::new();
        for (i, name) in self.correlate_by.iter().enumerate() {
            if name.is_empty() {
                v.push(FieldViolation::new(format!("correlate_by[{i}]"), "must not be empty"));
            } else if !names.insert(name.to_ascii_lowercase()) {
                v.push(FieldViolation::new(format!("correlate_by[{i}]"), format!("duplicate attribute {name:?}")));
            }
        }
        if self.deadline.is_some() && self.kind != ListenerKind::Wait {
            v.push(FieldViolation::new("deadline", "only allowed with kind WAIT"));
        }
        if v.is_empty() { Ok(conditions) } else { Err(Error::InvalidArgument(v)) }
    }

    /// Checks the filter sets; returns their compiled conditions.
    fn validate_filters(&self, v: &mut Vec<FieldViolation>) -> Vec<Option<FilterCondition>> {
        let mut sets_per_type: BTreeMap<&str, usize> = BTreeMap::new();
        let mut conditions = Vec::with_capacity(self.filters.len());
        for (i, set) in self.filters.iter().enumerate() {
            let field = format!("filters[{i}]");
            if !self.types.contains(&set.event_type) {
                v.push(FieldViolation::new(
                    format!("{field}.type"),
                    format!("{:?} is not one of the listener's types", set.event_type),
                ));
            }
            let n = sets_per_type.entry(&set.event_type).or_default();
            *n += 1;
            if *n == MAX_FILTER_SETS_PER_TYPE + 1 {
                v.push(FieldViolation::new(
                    field.clone(),
                    format!("at most {MAX_FILTER_SETS_PER_TYPE} filter sets per type"),
                ));
            }
            if set.attributes.is_empty() && set.condition.is_none() {
                v.push(FieldViolation::new(
                    format!("{field}.attributes"),
                    "a filter set needs at least one clause or a condition",
                ));
            }
            let mut names = HashSet::new();
            for (name, pattern) in &set.attributes {
                let clause = format!("{field}.attributes[{name}]");
                if name.is_empty() {
                    v.push(FieldViolation::new(clause.clone(), "attribute name must not be empty"));
                }
                if !names.insert(name.to_ascii_lowercase()) {
                    v.push(FieldViolation::new(clause.clone(), "attribute named twice (names are case-insensitive)"));
                }
                if let Err(e) = compile_glob(pattern) {
                    v.push(FieldViolation::new(clause, format!("invalid glob pattern: {e}")));
                }
            }
            let condition = set.condition.as_deref().map(FilterCondition::compile).transpose();
            conditions.push(condition.unwrap_or_else(|e| {
                v.push(FieldViolation::new(format!("{field}.condition"), e.to_string()));
                None
            }));
        }
        conditions
    }

    fn target_field(&self) -> &'static str {
        match self.kind {
            ListenerKind::Start => "workflow_id",
            ListenerKind::Wait => "instance_id",
        }
    }
}

/// Why a listener no longer listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ListenerStatus {
    Active,
    /// A WAIT listener that woke its instance.
    Fired {
        fire_id: Uuid,
        at: DateTime<Utc>,
    },
    /// A WAIT listener whose deadline passed first.
    TimedOut {
        fire_id: Uuid,
        at: DateTime<Utc>,
    },
}

impl ListenerStatus {
    pub fn is_active(&self) -> bool {
        matches!(self, Self::Active)
    }
}

/// A registered listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub id: Uuid,
    pub namespace: String,
    /// Creation order within the store: listeners are evaluated in this order.
    pub order: i64,
    pub spec: ListenerSpec,
    pub created_at: DateTime<Utc>,
    /// The registering call's trace context; a TIMEOUT continues it.
    pub trace: TraceContext,
    /// The idempotency key it was registered with, if any.
    pub request_id: Option<String>,
    pub status: ListenerStatus,
}

/// A listener with its patterns compiled, ready to match events.
#[derive(Debug, Clone)]
pub struct CompiledListener {
    pub listener: Listener,
    /// Filter sets per type, in the order of `listener.spec.types`.
    filters: Vec<Vec<CompiledFilterSet>>,
}

#[derive(Debug, Clone)]
struct CompiledFilterSet {
    /// The set's index in `spec.filters` (what explanations name).
    index: usize,
    clauses: Vec<(Attribute, Pattern)>,
    /// Compiled once, with the listener; checked after the clauses matched.
    condition: Option<FilterCondition>,
}

impl CompiledFilterSet {
    fn exact_value(&self, attr: &Attribute) -> Option<&str> {
        self.clauses.iter().find_map(|(a, p)| match p {
            Pattern::Exact(v) if a.key() == attr.key() => Some(v.as_str()),
            _ => None,
        })
    }
}

/// An attribute name resolved once, when the listener is compiled.
#[derive(Debug, Clone)]
enum Attribute {
    Context(&'static str),
    Extension(String),
}

impl Attribute {
    fn new(name: &str) -> Self {
        match crate::event::CONTEXT_ATTRIBUTES.iter().find(|c| c.eq_ignore_ascii_case(name)) {
            Some(c) => Self::Context(c),
            None => Self::Extension(name.to_ascii_lowercase()),
        }
    }

    /// Returns the canonical name: the context attribute's, or the lower-cased extension name.
    fn key(&self) -> &str {
        match self {
            Self::Context(name) => name,
            Self::Extension(name) => name,
        }
    }

    fn value<'e>(&self, event: &'e Event) -> Option<std::borrow::Cow<'e, str>> {
        match self {
            Self::Context(name) => event.attribute(name),
            Self::Extension(name) => match event.extensions.get(name) {
                Some(v) => Some(v.canonical()),
                None => event.attribute(name),
            },
        }
    }
}

/// A glob, or a plain string when the pattern has no glob syntax (compared directly: faster,
/// same result).
#[derive(Debug, Clone)]
enum Pattern {
    Exact(String),
    Glob(GlobMatcher),
}

impl Pattern {
    fn new(pattern: &str) -> Result<Self, globset::Error> {
        if pattern.contains(['*', '?', '[', ']', '{', '}', '\\']) {
            compile_glob(pattern).map(Self::Glob)
        } else {
            Ok(Self::Exact(pattern.to_owned()))
        }
    }

    fn is_match(&self, value: &str) -> bool {
        match self {
            Self::Exact(s) => s == value,
            Self::Glob(g) => g.is_match(value),
        }
    }

    /// Returns the pattern as registered.
    fn text(&self) -> &str {
        match self {
            Self::Exact(s) => s,
            Self::Glob(g) => g.glob().glob(),
        }
    }
}

impl CompiledListener {
    /// Validates the listener's spec and compiles its patterns.
    pub fn compile(listener: Listener) -> Result<Self> {
        let conditions = listener.spec.checked()?;
        let mut filters = vec![Vec::new(); listener.spec.types.len()];
        for (index, (set, condition)) in listener.spec.filters.iter().zip(conditions).enumerate() {
            let Some(i) = listener.spec.types.iter().position(|t| *t == set.event_type) else {
                continue;
            };
            let mut clauses = Vec::with_capacity(set.attributes.len());
            for (name, pattern) in &set.attributes {
                let pattern = Pattern::new(pattern)
                    .map_err(|e| Error::Internal(format!("validated pattern failed to compile: {e}")))?;
                clauses.push((Attribute::new(name), pattern));
            }
            filters[i].push(CompiledFilterSet { index, clauses, condition });
        }
        Ok(Self { listener, filters })
    }

    pub fn id(&self) -> Uuid {
        self.listener.id
    }

    pub fn spec(&self) -> &ListenerSpec {
        &self.listener.spec
    }

    /// Returns whether the event passes the filters of its type: true when the type has no
    /// filter set or any set matches. The caller has checked that the type is listed.
    ///
    /// Conditions run last: only when no set without one matches, and only on sets whose
    /// clauses matched, in order, until one is true. A condition that fails at run time is
    /// false and adds one to `errors`.
    pub fn passes(&self, event: &Event, bindings: &Bindings<'_>, errors: &mut u64) -> bool {
        let Some(i) = self.listener.spec.types.iter().position(|t| *t == event.event_type) else {
            return false;
        };
        let sets = &self.filters[i];
        let clauses_match = |set: &CompiledFilterSet| {
            set.clauses.iter().all(|(name, pattern)| name.value(event).is_some_and(|v| pattern.is_match(&v)))
        };
        if sets.is_empty() || sets.iter().any(|set| set.condition.is_none() && clauses_match(set)) {
            return true;
        }
        sets.iter().any(|set| {
            let Some(condition) = &set.condition else { return false };
            clauses_match(set)
                && condition.eval(bindings).unwrap_or_else(|_| {
                    *errors += 1;
                    false
                })
        })
    }

    /// Says why the event does not pass the filters of its type, as [`CompiledListener::passes`]
    /// decides: `Ok` when it passes, else the failure of every filter set of the type, in
    /// registration order. The caller has checked that the type is listed.
    pub fn diagnose(&self, event: &Event, bindings: &Bindings<'_>) -> Result<(), Vec<FilterFailure>> {
        let Some(i) = self.listener.spec.types.iter().position(|t| *t == event.event_type) else {
            return Ok(());
        };
        let mut failures = Vec::new();
        for set in &self.filters[i] {
            match self.set_failure(set, event, bindings) {
                None => return Ok(()),
                Some(failure) => failures.push(FilterFailure { set: set.index, failure }),
            }
        }
        if failures.is_empty() { Ok(()) } else { Err(failures) }
    }

    /// Returns why one filter set fails the event: its first clause that does not match, else
    /// its condition; `None` when the set passes.
    fn set_failure(&self, set: &CompiledFilterSet, event: &Event, bindings: &Bindings<'_>) -> Option<SetFailure> {
        for (name, pattern) in &set.clauses {
            let value = name.value(event);
            if !value.as_deref().is_some_and(|v| pattern.is_match(v)) {
                return Some(SetFailure::Clause {
                    attribute: name.key().to_owned(),
                    pattern: pattern.text().to_owned(),
                    value: value.map(|v| v.into_owned()),
                });
            }
        }
        let condition = set.condition.as_ref()?;
        let text = self.listener.spec.filters.get(set.index).and_then(|f| f.condition.clone()).unwrap_or_default();
        match condition.eval(bindings) {
            Ok(true) => None,
            Ok(false) => Some(SetFailure::ConditionFalse { condition: text }),
            Err(error) => Some(SetFailure::ConditionError { condition: text, error }),
        }
    }

    /// Returns, for one of the listener's types, an attribute that every filter set of that type
    /// pins to an exact value, with those values: an event of the type can only pass if its
    /// attribute has one of them. `None` when the type has no filter set or no such attribute
    /// (then every event of the type must be checked).
    pub fn exact_key(&self, event_type: &str) -> Option<(&str, Vec<&str>)> {
        let i = self.listener.spec.types.iter().position(|t| t == event_type)?;
        let sets = &self.filters[i];
        let first = sets.first()?;
        first.clauses.iter().find_map(|(attr, pattern)| {
            let Pattern::Exact(_) = pattern else { return None };
            let values: Option<Vec<&str>> = sets.iter().map(|set| set.exact_value(attr)).collect();
            values.map(|v| (attr.key(), v))
        })
    }

    /// Returns the correlation values of the event, or `None` if it lacks one of the
    /// attributes (and so does not match). Uncorrelated listeners get an empty key.
    pub fn correlation_key(&self, event: &Event) -> Option<Vec<String>> {
        self.listener.spec.correlate_by.iter().map(|name| event.attribute(name).map(|v| v.into_owned())).collect()
    }
}

/// Why one filter set (`filters[set]` of the spec) did not pass an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterFailure {
    pub set: usize,
    pub failure: SetFailure,
}

/// What failed in a filter set: a clause, or the condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "failed", rename_all = "snake_case")]
pub enum SetFailure {
    /// The attribute's value does not match the pattern; `value` is `None` when the event
    /// lacks the attribute.
    Clause { attribute: String, pattern: String, value: Option<String> },
    /// The clauses matched and the CEL condition was false.
    ConditionFalse { condition: String },
    /// The clauses matched and the CEL condition failed at run time (so was false).
    ConditionError { condition: String, error: String },
}

/// Compiles a pattern with globset's semantics: `*` crosses `/`, case-sensitive.
fn compile_glob(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    Ok(Glob::new(pattern)?.compile_matcher())
}

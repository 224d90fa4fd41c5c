//! Listener requests and the rules of a ListenerSpec (`listener.proto`). The engine checks the
//! rules of its own model ([`ListenerSpec::validate`]); this adds those of the API (byte and
//! count limits, attribute-name syntax) and normalises names: filter attribute names and
//! `correlate_by` lower-cased, `policy` FIRST for ALL listeners registered without one.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use eventbus_client::pb;
use eventbus_engine::store::{ListenerQuery, ListenerSelector, Position};
use eventbus_engine::{Condition, FilterSet, ListenerKind, ListenerSpec, Policy};
use uuid::Uuid;

use super::{
    Combine, FromProto, Violations, all, at_most, duration, ensure, namespace, opt, page_size, required, timestamp,
    uuid,
};
use crate::config::Limits;
use crate::limits::{
    MAX_ATTRIBUTE_NAME_BYTES, MAX_CLAUSES, MAX_EVENT_TYPE_BYTES, MAX_LIFESPAN, MAX_PATTERN_BYTES, MAX_REQUEST_ID_BYTES,
    MAX_TARGET_BYTES,
};

/// A checked RegisterListener.
#[derive(Debug)]
pub struct Register {
    pub namespace: String,
    pub spec: ListenerSpec,
    pub request_id: Option<String>,
    pub look_back: Option<Position>,
}

impl FromProto<pb::RegisterListenerRequest> for Register {
    fn from_proto(req: pb::RegisterListenerRequest, _: &Limits) -> Result<Self, Violations> {
        let spec = match req.listener {
            Some(s) => spec(s).map_err(|v| v.prefixed("listener")),
            None => Err(Violations::invalid("listener", "is required")),
        };
        let (namespace, spec, request_id, look_back) = (
            namespace(req.namespace),
            spec,
            at_most("request_id", req.request_id, MAX_REQUEST_ID_BYTES),
            super::replay::position("look_back", req.look_back),
        )
            .combine()?;
        Ok(Self { namespace, spec, request_id: opt(request_id), look_back })
    }
}

/// Checks and converts a listener spec; field paths are relative to the spec.
fn spec(s: pb::ListenerSpec) -> Result<ListenerSpec, Violations> {
    let kind = match pb::ListenerKind::try_from(s.kind) {
        Ok(pb::ListenerKind::Start) => Ok(ListenerKind::Start),
        Ok(pb::ListenerKind::Wait) => Ok(ListenerKind::Wait),
        _ => Err(Violations::invalid("kind", "must be START or WAIT")),
    };
    let condition = match pb::ListenerCondition::try_from(s.condition) {
        Ok(pb::ListenerCondition::One) => Ok(Condition::One),
        Ok(pb::ListenerCondition::Any) => Ok(Condition::Any),
        Ok(pb::ListenerCondition::All) => Ok(Condition::All),
        _ => Err(Violations::invalid("condition", "must be ONE, ANY or ALL")),
    };
    let target = match &kind {
        Ok(ListenerKind::Start) => {
            ensure(s.instance_id.is_empty(), "instance_id", || "only allowed with kind WAIT".into())
                .map(|()| s.workflow_id)
        }
        Ok(ListenerKind::Wait) => {
            ensure(s.workflow_id.is_empty(), "workflow_id", || "only allowed with kind START".into())
                .map(|()| s.instance_id)
        }
        Err(_) => Ok(String::new()),
    };
    let policy = match (pb::ConsumptionPolicy::try_from(s.policy), &condition) {
        (Ok(pb::ConsumptionPolicy::Unspecified), Ok(Condition::All)) => Ok(Some(Policy::First)),
        (Ok(pb::ConsumptionPolicy::Unspecified), _) => Ok(None),
        (Ok(pb::ConsumptionPolicy::First), _) => Ok(Some(Policy::First)),
        (Ok(pb::ConsumptionPolicy::Latest), _) => Ok(Some(Policy::Latest)),
        (Err(_), _) => Err(Violations::invalid("policy", "must be FIRST or LATEST")),
    };
    let types =
        all(s.types.into_iter().enumerate().map(|(i, t)| at_most(&format!("types[{i}]"), t, MAX_EVENT_TYPE_BYTES)));
    let filters = all(s
        .filters
        .into_iter()
        .enumerate()
        .map(|(i, f)| filter_set(f).map_err(|v| v.prefixed(&format!("filters[{i}]")))));
    let correlate_by = all(s
        .correlate_by
        .into_iter()
        .enumerate()
        .map(|(i, name)| attribute_name(&format!("correlate_by[{i}]"), &name)));
    let lifespan = s.lifespan.map(|d| lifespan(&d)).transpose();
    let deadline = s.deadline.map(|t| timestamp("deadline", &t)).transpose();
    let (kind, condition, target, policy, types, filters, correlate_by, lifespan, deadline) =
        (kind, condition, target, policy, types, filters, correlate_by, lifespan, deadline).combine()?;
    let spec = ListenerSpec { kind, target, condition, types, filters, lifespan, correlate_by, policy, deadline };
    spec.validate().map_err(|e| match e {
        eventbus_engine::Error::InvalidArgument(v) => Violations::from(v),
        other => Violations::invalid("", other.to_string()),
    })?;
    Ok(spec)
}

fn lifespan(d: &prost_types::Duration) -> Result<Duration, Violations> {
    let d = duration("lifespan", d)?;
    ensure(d <= MAX_LIFESPAN, "lifespan", || format!("must be at most {} days", MAX_LIFESPAN.as_secs() / 86_400))?;
    Ok(d)
}

/// Checks a filter set: at most 32 clauses, names lower-cased and not repeated ignoring case,
/// patterns 1 to 1024 bytes (their glob syntax is the engine's check, as are the condition and
/// the set's having a clause or a condition). An empty condition is none.
fn filter_set(f: pb::EventFilter) -> Result<FilterSet, Violations> {
    let count = ensure(f.attributes.len() <= MAX_CLAUSES, "attributes", || format!("at most {MAX_CLAUSES} clauses"));
    let ((), attributes) = (count, clauses(f.attributes)).combine()?;
    Ok(FilterSet { event_type: f.r#type, attributes, condition: opt(f.condition) })
}

fn clauses(map: HashMap<String, String>) -> Result<BTreeMap<String, String>, Violations> {
    // Sorted first, so that which of two names differing in case is reported does not depend on
    // the map's random order.
    let sorted: BTreeMap<String, String> = map.into_iter().collect();
    let mut out = BTreeMap::new();
    let checked = all(sorted.into_iter().map(|(name, pattern)| {
        let field = format!("attributes[{name}]");
        let (lower, pattern) = (attribute_name(&field, &name), pattern_ok(&field, pattern)).combine()?;
        ensure(!out.contains_key(&lower), &field, || "attribute named twice (names are case-insensitive)".into())?;
        out.insert(lower, pattern);
        Ok(())
    }));
    checked.map(|_| out)
}

/// Checks an attribute name (case-insensitive, `[a-z0-9]` once lower-cased, 1 to 64 bytes) and
/// returns it lower-cased.
fn attribute_name(field: &str, name: &str) -> Result<String, Violations> {
    let lower = name.to_ascii_lowercase();
    let ok = (1..=MAX_ATTRIBUTE_NAME_BYTES).contains(&lower.len())
        && lower.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    ensure(ok, field, || {
        format!("attribute names are 1 to {MAX_ATTRIBUTE_NAME_BYTES} ASCII letters and digits (case-insensitive)")
    })?;
    Ok(lower)
}

fn pattern_ok(field: &str, pattern: String) -> Result<String, Violations> {
    let ok = (1..=MAX_PATTERN_BYTES).contains(&pattern.len());
    ensure(ok, field, || format!("patterns are 1 to {MAX_PATTERN_BYTES} bytes"))?;
    Ok(pattern)
}

/// A checked GetListener or DeleteListener.
#[derive(Debug)]
pub struct ListenerId {
    pub namespace: String,
    pub id: Uuid,
}

/// A checked GetListener.
#[derive(Debug)]
pub struct GetListener {
    pub namespace: String,
    pub id: Uuid,
    pub partial_state: bool,
}

impl FromProto<pb::GetListenerRequest> for GetListener {
    fn from_proto(req: pb::GetListenerRequest, _: &Limits) -> Result<Self, Violations> {
        let (namespace, id) = (namespace(req.namespace), uuid("id", &req.id)).combine()?;
        Ok(Self { namespace, id, partial_state: req.include_partial_state })
    }
}

impl FromProto<pb::DeleteListenerRequest> for ListenerId {
    fn from_proto(req: pb::DeleteListenerRequest, _: &Limits) -> Result<Self, Violations> {
        let (namespace, id) = (namespace(req.namespace), uuid("id", &req.id)).combine()?;
        Ok(Self { namespace, id })
    }
}

/// A checked ListListeners.
#[derive(Debug)]
pub struct ListListeners {
    pub namespace: String,
    pub query: ListenerQuery,
}

impl FromProto<pb::ListListenersRequest> for ListListeners {
    fn from_proto(req: pb::ListListenersRequest, _: &Limits) -> Result<Self, Violations> {
        let kind = match pb::ListenerKind::try_from(req.kind) {
            Ok(pb::ListenerKind::Unspecified) => Ok(None),
            Ok(pb::ListenerKind::Start) => Ok(Some(ListenerKind::Start)),
            Ok(pb::ListenerKind::Wait) => Ok(Some(ListenerKind::Wait)),
            Err(_) => Err(Violations::invalid("kind", "unknown kind")),
        };
        let (namespace, kind, page_size) = (namespace(req.namespace), kind, page_size(req.page_size)).combine()?;
        let query = ListenerQuery {
            kind,
            workflow_id: opt(req.workflow_id),
            instance_id: opt(req.instance_id),
            include_finished: req.include_finished,
            page_size,
            page_token: opt(req.page_token),
        };
        Ok(Self { namespace, query })
    }
}

/// A checked DeleteListeners.
#[derive(Debug)]
pub struct DeleteListeners {
    pub namespace: String,
    pub selector: ListenerSelector,
}

impl FromProto<pb::DeleteListenersRequest> for DeleteListeners {
    fn from_proto(req: pb::DeleteListenersRequest, _: &Limits) -> Result<Self, Violations> {
        use pb::delete_listeners_request::Selector;
        let selector = match req.selector {
            Some(Selector::WorkflowId(w)) => {
                required("workflow_id", w, MAX_TARGET_BYTES).map(ListenerSelector::Workflow)
            }
            Some(Selector::InstanceId(i)) => {
                required("instance_id", i, MAX_TARGET_BYTES).map(ListenerSelector::Instance)
            }
            None => Err(Violations::invalid("selector", "set workflow_id or instance_id")),
        };
        let (namespace, selector) = (namespace(req.namespace), selector).combine()?;
        Ok(Self { namespace, selector })
    }
}

#[cfg(test)]
#[path = "listeners/tests.rs"]
mod tests;

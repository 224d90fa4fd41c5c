//! Conversions from the engine's types to the wire types (`eventbus_client::pb`): what the
//! server answers. What clients send is checked and converted by [`crate::request`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use eventbus_client::pb;
use eventbus_client::pb::cloud_event::CloudEventAttributeValue;
use eventbus_client::pb::cloud_event::cloud_event_attribute_value::Attr;
use eventbus_engine::store::{
    ConsumerGroup, DeadLetter, Delivery, NamespaceInfo, NamespacePurge, Notification, NotificationKind, PartialState,
    Token, TokenGrant,
};
use eventbus_engine::{
    AttrValue, Condition, Data, Event, Listener, ListenerKind, ListenerSpec, ListenerStatus, Policy,
};

use crate::security::permissions::Role;
mod replay;

pub use replay::{explained_to, replayed_fire_to};

pub fn time_to(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

pub fn duration_to(d: Duration) -> prost_types::Duration {
    prost_types::Duration { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

fn attr(a: Attr) -> CloudEventAttributeValue {
    CloudEventAttributeValue { attr: Some(a) }
}

/// Returns the wire form of a stored event.
pub fn event_to(e: Event) -> pb::CloudEvent {
    let mut attributes = std::collections::HashMap::new();
    if let Some(s) = e.subject {
        attributes.insert("subject".to_owned(), attr(Attr::CeString(s)));
    }
    if let Some(t) = e.time {
        attributes.insert("time".to_owned(), attr(Attr::CeTimestamp(time_to(t))));
    }
    if let Some(s) = e.datacontenttype {
        attributes.insert("datacontenttype".to_owned(), attr(Attr::CeString(s)));
    }
    if let Some(s) = e.dataschema {
        attributes.insert("dataschema".to_owned(), attr(Attr::CeUri(s)));
    }
    for (name, value) in e.extensions {
        let a = match value {
            AttrValue::Boolean(b) => Attr::CeBoolean(b),
            AttrValue::Integer(n) => Attr::CeInteger(n),
            AttrValue::String(s) => Attr::CeString(s),
            AttrValue::Bytes(b) => Attr::CeBytes(b),
            AttrValue::Uri(s) => Attr::CeUri(s),
            AttrValue::UriRef(s) => Attr::CeUriRef(s),
            AttrValue::Timestamp(t) => Attr::CeTimestamp(time_to(t)),
        };
        attributes.insert(name, attr(a));
    }
    pb::CloudEvent {
        id: e.id,
        source: e.source,
        spec_version: e.specversion,
        r#type: e.event_type,
        attributes,
        data: e.data.map(|d| match d {
            Data::Binary(b) => pb::cloud_event::Data::BinaryData(b),
            Data::Text(t) => pb::cloud_event::Data::TextData(t),
            Data::Proto { type_url, value } => pb::cloud_event::Data::ProtoData(prost_types::Any { type_url, value }),
        }),
    }
}

pub fn stored_event_to(e: Event) -> pb::StoredEvent {
    pb::StoredEvent {
        sequence: e.sequence,
        receive_time: Some(time_to(e.received_at)),
        traceparent: e.trace.traceparent.clone(),
        tracestate: e.trace.tracestate.clone(),
        event: Some(event_to(e)),
    }
}

pub fn spec_to(s: ListenerSpec) -> pb::ListenerSpec {
    let (workflow_id, instance_id, kind) = match s.kind {
        ListenerKind::Start => (s.target, String::new(), pb::ListenerKind::Start),
        ListenerKind::Wait => (String::new(), s.target, pb::ListenerKind::Wait),
    };
    pb::ListenerSpec {
        kind: kind as i32,
        workflow_id,
        instance_id,
        condition: match s.condition {
            Condition::One => pb::ListenerCondition::One,
            Condition::Any => pb::ListenerCondition::Any,
            Condition::All => pb::ListenerCondition::All,
        } as i32,
        types: s.types,
        filters: s
            .filters
            .into_iter()
            .map(|f| pb::EventFilter {
                r#type: f.event_type,
                attributes: f.attributes.into_iter().collect(),
                condition: f.condition.unwrap_or_default(),
            })
            .collect(),
        lifespan: s.lifespan.map(duration_to),
        correlate_by: s.correlate_by,
        // Listeners stored before FIRST was stored for ALL listeners registered without a policy
        // behave as FIRST, and say so.
        policy: match s.policy {
            None if s.condition == Condition::All => pb::ConsumptionPolicy::First,
            None => pb::ConsumptionPolicy::Unspecified,
            Some(Policy::First) => pb::ConsumptionPolicy::First,
            Some(Policy::Latest) => pb::ConsumptionPolicy::Latest,
        } as i32,
        deadline: s.deadline.map(time_to),
    }
}

pub fn listener_to(l: Listener) -> pb::Listener {
    let (status, fire_id, finish) = match l.status {
        ListenerStatus::Active => (pb::ListenerStatus::Active, String::new(), None),
        ListenerStatus::Fired { fire_id, at } => (pb::ListenerStatus::Fired, fire_id.to_string(), Some(time_to(at))),
        ListenerStatus::TimedOut { fire_id, at } => {
            (pb::ListenerStatus::TimedOut, fire_id.to_string(), Some(time_to(at)))
        }
    };
    pb::Listener {
        id: l.id.to_string(),
        namespace: l.namespace,
        spec: Some(spec_to(l.spec)),
        status: status as i32,
        fire_id,
        create_time: Some(time_to(l.created_at)),
        finish_time: finish,
        request_id: l.request_id.unwrap_or_default(),
    }
}

fn kind_to(kind: NotificationKind) -> pb::NotificationKind {
    match kind {
        NotificationKind::Start => pb::NotificationKind::Start,
        NotificationKind::Wake => pb::NotificationKind::Wake,
        NotificationKind::Timeout => pb::NotificationKind::Timeout,
    }
}

pub fn notification_to(n: Notification, group: &str, attempt: u32) -> pb::Notification {
    let kind = kind_to(n.kind);
    let (workflow_id, instance_id) = match n.kind {
        NotificationKind::Start => (n.target, String::new()),
        _ => (String::new(), n.target),
    };
    pb::Notification {
        fire_id: n.fire_id.to_string(),
        sequence: n.sequence,
        kind: kind as i32,
        listener_id: n.listener_id.to_string(),
        workflow_id,
        instance_id,
        correlation: n.correlation.into_iter().collect(),
        events: n.events.into_iter().map(event_to).collect(),
        event_sequences: n.event_sequences,
        attempt,
        create_time: Some(time_to(n.created_at)),
        traceparent: n.trace.traceparent,
        tracestate: n.trace.tracestate,
        consumer_group: group.to_owned(),
    }
}

pub fn delivery_to(d: Delivery) -> pb::Notification {
    notification_to(d.notification, &d.group, d.attempt)
}

pub fn dead_letter_to(d: DeadLetter, group: &str) -> pb::DeadLetter {
    pb::DeadLetter {
        notification: Some(notification_to(d.notification, group, d.attempt)),
        last_error: d.last_error,
        dead_time: Some(time_to(d.dead_at)),
    }
}

pub fn namespace_to(n: NamespaceInfo) -> pb::Namespace {
    pb::Namespace {
        name: n.name,
        event_count: n.events,
        active_listener_count: n.active_listeners,
        consumer_group_count: n.consumer_groups,
        last_event_sequence: n.last_event_sequence,
        last_notification_sequence: n.last_notification_sequence,
    }
}

pub fn namespace_purge_to(p: NamespacePurge) -> pb::DeleteNamespaceResponse {
    pb::DeleteNamespaceResponse {
        deleted_event_count: p.events,
        deleted_listener_count: p.listeners,
        deleted_partial_state_count: p.partials,
        deleted_notification_count: p.notifications,
        deleted_consumer_group_count: p.groups,
        deleted_delivery_count: p.deliveries,
    }
}

/// Returns the wire form of a consumer group; the age of its oldest pending notification is
/// counted to `now`.
pub fn group_to(g: ConsumerGroup, now: DateTime<Utc>) -> pb::ConsumerGroup {
    let age = g.oldest_pending.map(|t| duration_to((now - t).to_std().unwrap_or_default()));
    pb::ConsumerGroup {
        namespace: g.namespace,
        name: g.name,
        kinds: g.kinds.into_iter().map(|k| kind_to(k) as i32).collect(),
        workflow_ids: g.workflow_ids,
        max_attempts: g.max_attempts,
        read_sequence: g.read_sequence,
        pending_count: g.pending,
        leased_count: g.leased,
        dead_count: g.dead,
        oldest_pending_age: age,
        connected_stream_count: g.connected,
        create_time: Some(time_to(g.created_at)),
    }
}

pub fn partial_state_to(p: PartialState) -> pb::PartialState {
    pb::PartialState {
        correlation: p.correlation.into_iter().collect(),
        events: p
            .events
            .into_iter()
            .map(|e| pb::CollectedEvent {
                r#type: e.event_type,
                source: e.source,
                id: e.id,
                sequence: e.sequence,
                receive_time: Some(time_to(e.received_at)),
                expire_time: e.expires_at.map(time_to),
            })
            .collect(),
        missing_types: p.missing_types,
    }
}

/// Returns the wire form of a stored token (it holds no secret). A stored role this server does
/// not know is ROLE_UNSPECIFIED.
pub fn token_to(t: Token) -> pb::Token {
    let grant = |g: TokenGrant| pb::Grant {
        role: g.role.parse::<Role>().map_or(pb::Role::Unspecified, role_to) as i32,
        namespaces: g.namespaces,
    };
    pb::Token {
        id: t.id.to_string(),
        name: t.name,
        grants: t.grants.into_iter().map(grant).collect(),
        create_time: Some(time_to(t.created_at)),
        expire_time: t.expires_at.map(time_to),
        last_use_time: t.last_used_at.map(time_to),
        revoke_time: t.revoked_at.map(time_to),
    }
}

pub fn role_to(role: Role) -> pb::Role {
    match role {
        Role::Publisher => pb::Role::Publisher,
        Role::Reader => pb::Role::Reader,
        Role::Listener => pb::Role::Listener,
        Role::Subscriber => pb::Role::Subscriber,
        Role::Operator => pb::Role::Operator,
        Role::Admin => pb::Role::Admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_listeners_stored_without_a_policy_report_first() {
        let spec = |condition, policy| ListenerSpec {
            kind: ListenerKind::Start,
            target: "wf".into(),
            condition,
            types: vec!["a".into(), "b".into()],
            filters: vec![],
            lifespan: None,
            correlate_by: vec![],
            policy,
            deadline: None,
        };
        let cases = [
            (Condition::All, None, pb::ConsumptionPolicy::First),
            (Condition::All, Some(Policy::Latest), pb::ConsumptionPolicy::Latest),
            (Condition::Any, None, pb::ConsumptionPolicy::Unspecified),
        ];
        for (condition, policy, want) in cases {
            assert_eq!(spec_to(spec(condition, policy)).policy(), want, "{condition:?} {policy:?}");
        }
    }
}

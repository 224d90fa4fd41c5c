//! Explanations and replayed fires, engine -> wire.

use eventbus_client::pb;
use eventbus_client::pb::event_explanation as x;
use eventbus_engine::store::{Explained, ReplayedFire};
use eventbus_engine::{FilterFailure, ListenerStatus, Reason, SetFailure};

use super::{kind_to, time_to};

/// Returns the wire form of one event's explanation.
pub fn explained_to(e: Explained) -> pb::EventExplanation {
    let message = e.reason.to_string();
    let contributed = e.reason.contributed();
    pb::EventExplanation {
        sequence: e.event.sequence,
        r#type: e.event.event_type,
        source: e.event.source,
        id: e.event.id,
        receive_time: Some(time_to(e.event.received_at)),
        contributed,
        message,
        reason: Some(reason_to(e.reason)),
    }
}

fn reason_to(reason: Reason) -> x::Reason {
    match reason {
        Reason::NamespaceMismatch { listener, event } => {
            x::Reason::NamespaceMismatch(x::NamespaceMismatch { listener_namespace: listener, event_namespace: event })
        }
        Reason::TypeNotListed { event_type } => x::Reason::TypeNotListed(x::TypeNotListed { r#type: event_type }),
        Reason::BeforeCreation { created_at } => {
            x::Reason::BeforeCreation(x::BeforeCreation { create_time: Some(time_to(created_at)) })
        }
        Reason::Consumed { status } => x::Reason::Consumed(consumed_to(status)),
        Reason::Filtered { failures } => {
            x::Reason::Filtered(x::Filtered { failures: failures.into_iter().map(failure_to).collect() })
        }
        Reason::CorrelationMissing { attribute } => x::Reason::CorrelationMissing(x::CorrelationMissing { attribute }),
        Reason::AfterDeadline { deadline } => {
            x::Reason::AfterDeadline(x::AfterDeadline { deadline: Some(time_to(deadline)) })
        }
        Reason::AlreadyCollected { key, kept_sequence } => {
            x::Reason::AlreadyCollected(x::AlreadyCollected { correlation: key.into_iter().collect(), kept_sequence })
        }
        Reason::Collected { key, waiting_for } => {
            x::Reason::Collected(x::Collected { correlation: key.into_iter().collect(), waiting_for })
        }
        Reason::Fired { fire_id, key, event_sequences } => x::Reason::Fired(x::Fired {
            fire_id: fire_id.to_string(),
            correlation: key.into_iter().collect(),
            event_sequences,
        }),
    }
}

fn consumed_to(status: ListenerStatus) -> x::Consumed {
    let (status, fire_id, at) = match status {
        ListenerStatus::Active => (pb::ListenerStatus::Active, String::new(), None),
        ListenerStatus::Fired { fire_id, at } => (pb::ListenerStatus::Fired, fire_id.to_string(), Some(time_to(at))),
        ListenerStatus::TimedOut { fire_id, at } => {
            (pb::ListenerStatus::TimedOut, fire_id.to_string(), Some(time_to(at)))
        }
    };
    x::Consumed { status: status.into(), fire_id, finish_time: at }
}

fn failure_to(f: FilterFailure) -> x::FilterSetFailure {
    use x::filter_set_failure::Failure;
    let failure = match f.failure {
        SetFailure::Clause { attribute, pattern, value } => {
            Failure::Clause(x::ClauseMismatch { attribute, pattern, value })
        }
        SetFailure::ConditionFalse { condition } => Failure::ConditionFalse(condition),
        SetFailure::ConditionError { condition, error } => {
            Failure::ConditionError(x::ConditionError { condition, error })
        }
    };
    x::FilterSetFailure { filter_index: f.set as u32, failure: Some(failure) }
}

/// Returns the wire form of a fire a replay found.
pub fn replayed_fire_to(f: ReplayedFire) -> pb::ReplayedFire {
    pb::ReplayedFire {
        fire_id: f.fire_id.to_string(),
        kind: kind_to(f.kind).into(),
        target: f.target,
        correlation: f.correlation.into_iter().collect(),
        event_sequences: f.event_sequences,
        created: f.notification_sequence.is_some(),
        notification_sequence: f.notification_sequence.unwrap_or_default(),
    }
}
